"""Which state a room config asks for: matching, combining and expanding `required_state`.

MSC4186 "RequiredStateRequest", "Combining room configs", "Changing room configs" and "Lazy
loaded memberships". Pure functions over the model types; the engine calls them with the
(type, state_key) pairs of a room's current state.

Matching rule for one `RequiredState`: a state entry is returned if some `include` pattern
matches it and no `exclude` pattern does. With `lazy_members`, `m.room.member` events are only
matched by patterns that name the state key (`{"type": "m.room.member", "state_key": "@u:x"}`
or `{"state_key": "@u:x"}`); the wildcard patterns (`{}`, `{"type": "m.room.member"}`) leave
members to the lazy rules. This is the MSC's "`include: [{}]` plus `lazy_members`: all state
except the members, which are lazily loaded". The lazily loaded members themselves (timeline
senders and targets, membership changes of a non-limited sync) are chosen by the engine, and
are not filtered by `exclude`.

The union of several configs cannot always be written as one include/exclude pair (config A
excludes every member, config B includes `@u:x`), so `combine` returns a plain `RequiredState`
when that is exact and a `CombinedRequiredState` (which keeps the parts) otherwise. Go through
`matches`/`select`/`newly_matching`, never through `include`/`exclude` directly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

from trioserver.services.sliding_sync.model import RequiredState, RoomConfig, StatePattern

MEMBER = "m.room.member"
StateKey = tuple[str, str]  # (event type, state key)


@dataclass(frozen=True)
class CombinedRequiredState(RequiredState):
    """The union of `parts`: an entry matches if it matches any part.

    `include` is the union of the parts' includes (every pattern some part asked for; useful to
    decide what to load), `exclude` is empty, and `lazy_members` is the combined flag (MSC: some
    part is lazy and no part returns all members). Equal parts give equal values, so a config
    change can be detected with `==`.
    """

    parts: frozenset[RequiredState] = frozenset()


@dataclass(frozen=True)
class _Compiled:
    """A set of patterns indexed for O(1) matching."""

    everything: bool  # {} : any type, any state key
    types: frozenset[str]  # {type}: any state key of these types
    keys: frozenset[str]  # {state_key}: these state keys of any type
    exact: frozenset[StateKey]  # {type, state_key}

    def hit(self, event_type: str, state_key: str) -> bool:
        return (self.everything or event_type in self.types or state_key in self.keys
                or (event_type, state_key) in self.exact)

    def hit_naming_key(self, event_type: str, state_key: str) -> bool:
        """A hit by a pattern that names the state key (what lazy members still honour)."""
        return state_key in self.keys or (event_type, state_key) in self.exact

    def touches_type(self, event_type: str) -> bool:
        """Could some entry of `event_type` match?"""
        return (self.everything or event_type in self.types or bool(self.keys)
                or any(t == event_type for t, _ in self.exact))


@lru_cache(maxsize=4096)
def _compile(patterns: frozenset[StatePattern]) -> _Compiled:
    everything = False
    types: set[str] = set()
    keys: set[str] = set()
    exact: set[StateKey] = set()
    for p in patterns:
        if p.type is None:
            if p.state_key is None:
                everything = True
            else:
                keys.add(p.state_key)
        elif p.state_key is None:
            types.add(p.type)
        else:
            exact.add((p.type, p.state_key))
    return _Compiled(everything, frozenset(types), frozenset(keys), frozenset(exact))


def _parts(rs: RequiredState) -> Collection[RequiredState]:
    return rs.parts if isinstance(rs, CombinedRequiredState) else (rs,)


def _matches_one(rs: RequiredState, event_type: str, state_key: str) -> bool:
    include = _compile(rs.include)
    if rs.lazy_members and event_type == MEMBER:
        hit = include.hit_naming_key(event_type, state_key)
    else:
        hit = include.hit(event_type, state_key)
    return hit and not _compile(rs.exclude).hit(event_type, state_key)


def matches(rs: RequiredState, event_type: str, state_key: str) -> bool:
    """Whether the state entry (event_type, state_key) is asked for (include minus exclude).

    Lazily loaded members are not covered: with `lazy_members`, a member event matches only if
    a pattern names its state key.
    """
    return any(_matches_one(part, event_type, state_key) for part in _parts(rs))


def select(rs: RequiredState, keys: Iterable[StateKey]) -> set[StateKey]:
    """The state keys among `keys` (a room's current state) that `rs` asks for."""
    return {key for key in keys if matches(rs, *key)}


def newly_matching(old: RequiredState, new: RequiredState,
                   keys: Iterable[StateKey]) -> set[StateKey]:
    """State that `new` asks for and `old` did not: what to send when a room's config expands.

    A switch from lazy members to all members makes every member not named by `old` newly
    matching; the engine may leave out members it already sent lazily (the MSC allows not
    resending state the client has seen).
    """
    if old == new:
        return set()
    return {key for key in keys if matches(new, *key) and not matches(old, *key)}


def wants_all_members(rs: RequiredState) -> bool:
    """True iff every `m.room.member` event matches (so lazy loading adds nothing).

    A lazy config never does; an `exclude` that could remove a member (one naming the member
    type, any type, or any state key) makes it False, conservatively.
    """
    for part in _parts(rs):
        if part.lazy_members:
            continue
        include, exclude = _compile(part.include), _compile(part.exclude)
        if (include.everything or MEMBER in include.types) and not exclude.touches_type(MEMBER):
            return True
    return False


def is_empty(rs: RequiredState) -> bool:
    """Asks for no state at all (no include pattern and no lazy members): skip loading state."""
    return all(not part.include and not part.lazy_members for part in _parts(rs))


def types_wanted(rs: RequiredState) -> frozenset[str] | None:
    """The event types any returned state can have (including `m.room.member` when members are
    lazily loaded), or None if some pattern matches any type: to narrow what is read."""
    types: set[str] = set()
    for part in _parts(rs):
        if part.lazy_members:
            types.add(MEMBER)
        for p in part.include:
            if p.type is None:
                return None
            types.add(p.type)
    return frozenset(types)


def combine_required_state(states: Iterable[RequiredState]) -> RequiredState:
    """The union of several `required_state`s (MSC4186 "Combining room configs").

    `matches` on the result is True iff it is True for some input; `lazy_members` is set iff
    some input has it and no input returns all members without it. The result is a plain
    `RequiredState` when one include/exclude pair says exactly that, else a
    `CombinedRequiredState`.
    """
    parts: set[RequiredState] = set()
    for rs in states:
        parts.update(_parts(rs))
    # A part asking for nothing adds nothing to the union.
    parts = {p for p in parts if p.include or p.lazy_members}
    if not parts:
        return RequiredState()
    if len(parts) == 1:
        return next(iter(parts))
    lazy = any(p.lazy_members for p in parts) and not any(wants_all_members(p) for p in parts)
    include = frozenset().union(*(p.include for p in parts))
    # Without exclusions the union of includes is exact: a non-lazy part that does not want all
    # members only names member keys, which lazy matching keeps; and if some part wants all
    # members the flag is off and every member matches anyway. With one shared exclude and one
    # shared lazy flag, (I1 - E) | (I2 - E) == (I1 | I2) - E.
    excludes = {p.exclude for p in parts}
    if excludes == {frozenset()}:
        return RequiredState(include=include, lazy_members=lazy)
    if len(excludes) == 1 and len({p.lazy_members for p in parts}) == 1:
        return RequiredState(include=include, exclude=excludes.pop(), lazy_members=lazy)
    return CombinedRequiredState(include=include, lazy_members=lazy, parts=frozenset(parts))


def combine(configs: Iterable[RoomConfig]) -> RoomConfig:
    """The room config for a room matched by several lists/subscriptions: the largest
    `timeline_limit` and the union of the `required_state`s. ValueError if `configs` is empty.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("combine() needs at least one room config")
    if len(configs) == 1:
        return configs[0]
    return RoomConfig(
        timeline_limit=max(c.timeline_limit for c in configs),
        required_state=combine_required_state(c.required_state for c in configs),
    )
