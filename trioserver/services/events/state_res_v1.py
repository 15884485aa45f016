"""State resolution for room version 1 (rooms/v1.md "State resolution").

R starts as the union of the states without the conflicting keys (a key is conflicting when
two states name different events for it; a key some states lack is not). Then, in passes:

1. m.room.power_levels, 2. m.room.join_rules, 3. each m.room.member key: the conflicting
   events sorted by ascending depth then descending sha1(event_id); the first is taken, and each
   next one replaces it while the auth rules allow it against R (with the current pick in it);
   the first one they reject ends the pass.
4. Every other key: the event with the highest depth and lowest sha1(event_id) that the auth
   rules allow against R.

Choices where the text is silent (Synapse and Dendrite agree on both):

- Each member key, and each other key, is resolved against R as it stood after the join rules
  (respectively after all the members), not against the picks for other keys of the same pass,
  so the result does not depend on the order the keys are visited in.
- When every event for an "other" key is rejected, the oldest (lowest depth, highest sha1) is
  kept rather than dropping the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.power_levels import JOIN_RULES_KEY, POWER_LEVELS_KEY
from trioserver.services.events.room_versions import RoomVersion
from trioserver.services.events.state_res import (
    StateMap,
    auth_keys,
    get_event,
    is_allowed,
    state_events,
)


def resolve(
    room_version: RoomVersion, state_sets: Sequence[StateMap], events: Mapping[str, Event]
) -> dict[StateKey, str]:
    resolved, conflicted = _separate(state_sets)
    if not conflicted:
        return resolved
    # Passes 1 and 2 build on each other.
    for key in (POWER_LEVELS_KEY, JOIN_RULES_KEY):
        if key in conflicted:
            resolved[key] = _resolve_auth_key(conflicted[key], resolved, events)
    # Pass 3: each member key against R after pass 2.
    before = dict(resolved)
    for key in sorted(conflicted):
        if key[0] == "m.room.member":
            resolved[key] = _resolve_auth_key(conflicted[key], before, events)
    # Pass 4: the rest against R after pass 3.
    before = dict(resolved)
    for key in sorted(conflicted):
        if key not in resolved:
            resolved[key] = _resolve_other_key(conflicted[key], before, events)
    return resolved


def _separate(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """(R without the conflicts, the conflicting event IDs per key)."""
    values: dict[StateKey, set[str]] = {}
    for state in state_sets:
        for key, event_id in state.items():
            values.setdefault(key, set()).add(event_id)
    unconflicted = {key: next(iter(ids)) for key, ids in values.items() if len(ids) == 1}
    conflicted = {key: ids for key, ids in values.items() if len(ids) > 1}
    return unconflicted, conflicted


def _sha1(event: Event) -> str:
    return hashlib.sha1(event.event_id.encode("utf-8")).hexdigest()


def _oldest_first(ids: set[str], events: Mapping[str, Event]) -> list[Event]:
    """Ascending depth, then descending sha1(event_id)."""
    by_sha = sorted((get_event(i, events) for i in ids), key=_sha1, reverse=True)
    return sorted(by_sha, key=lambda event: event.depth)  # stable: keeps the sha1 order


def _allowed_in(event: Event, state: StateMap, events: Mapping[str, Event]) -> bool:
    return is_allowed(event, state_events(state, auth_keys(event), events), events)


def _resolve_auth_key(ids: set[str], state: StateMap, events: Mapping[str, Event]) -> str:
    """Passes 1-3: from the oldest, replace while the auth rules allow it."""
    ordered = _oldest_first(ids, events)
    current = dict(state)
    pick = ordered[0]
    for event in ordered[1:]:
        current[pick.state_tuple] = pick.event_id
        if not _allowed_in(event, current, events):
            break
        pick = event
    return pick.event_id


def _resolve_other_key(ids: set[str], state: StateMap, events: Mapping[str, Event]) -> str:
    """Pass 4: the newest event the auth rules allow, else the oldest."""
    ordered = _oldest_first(ids, events)
    for event in reversed(ordered):
        if _allowed_in(event, state, events):
            return event.event_id
    return ordered[0].event_id
