"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

Sources: rooms/fragments/v2-state-res.md, rooms/v12.md "State resolution". The algorithm:

1. The power events of the full conflicted set, with the events of their auth chains that are
   also in it, sorted by the reverse topological power ordering.
2. The iterative auth checks on those, from the unconflicted state map (v2.1: from an empty
   state map).
3. The remaining events of the full conflicted set, in mainline ordering based on the power
   levels event of the partial state from step 2,
4. checked iteratively on top of that partial state.
5. The unconflicted state map laid over the result.

v2.1 (room version 12) changes exactly two things: the full conflicted set also takes in the
conflicted state subgraph (every event on an auth_events path between two conflicted events),
and step 2 starts from an empty state map, so those events are replayed from their own
auth_events instead of being read from a possibly stale unconflicted state.

Readings of the text (where other servers may differ, see state_res.py for the rest):

- The full auth chain of a state set counts the set's own events, as Synapse does (where the
  algorithm was designed; ruma does not). Read literally ("the union of the auth
  chains for each event in S_i", an auth chain excluding the event it starts from), an
  unconflicted state event that one fork's events cite and another's do not would be in the
  auth difference, so the full conflicted set; a conflicted power levels event then drags its
  sender's unconflicted join into step 1, and the order of two admins' concurrent power levels
  would follow the order they joined in (fixture equal_admins_timestamp_tiebreak).
- Step 1 enlarges with the whole auth chain of each power event intersected with the full
  conflicted set, and "the DAG formed by auth events" orders x after every event of X in x's
  auth chain, not only after its direct auth events (Synapse and ruma walk and order by direct
  auth_events edges inside the full conflicted set; the two only differ when an auth path leaves
  the full conflicted set and comes back).
- m.room.create is not a power event (Synapse and ruma count it as one; it is practically never
  conflicted).
- An event's sender's power level for the ordering is read from its auth_events (and in v12 the
  create event its room ID names) with the auth rules' own rules (power_levels.power_level).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence

from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.power_levels import POWER_LEVELS_KEY, power_level
from trioserver.services.events.room_versions import RoomVersion, StateResAlgorithm
from trioserver.services.events.state_res import (
    StateMap,
    StateResolutionError,
    auth_chain,
    auth_keys,
    get_event,
    is_allowed,
    room_create_event,
    state_events,
)


def resolve(
    room_version: RoomVersion, state_sets: Sequence[StateMap], events: Mapping[str, Event]
) -> dict[StateKey, str]:
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted
    conflicted_ids = {event_id for ids in conflicted.values() for event_id in ids}
    v2_1 = room_version.state_res is StateResAlgorithm.V2_1
    full = conflicted_ids | auth_difference(state_sets, events)
    if v2_1:
        full |= conflicted_subgraph(conflicted_ids, events)
    # Step 1.
    power = {event_id for event_id in full if is_power_event(get_event(event_id, events))}
    selected = set(power)
    for event_id in power:
        selected |= auth_chain([event_id], events) & full
    ordered_power = reverse_topological_power_order(selected, events)
    # Step 2.
    partial = iterative_auth_checks(ordered_power, {} if v2_1 else unconflicted, events)
    # Steps 3 and 4.
    power_levels = partial.get(POWER_LEVELS_KEY)
    remaining = mainline_order(full - selected, power_levels, events)
    resolved = iterative_auth_checks(remaining, partial, events)
    # Step 5.
    resolved.update(unconflicted)
    return resolved


def separate(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """The unconflicted state map, and the conflicted state set by key: a key is unconflicted
    only if every state set has it with the same event."""
    keys = {key for state in state_sets for key in state}
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key in keys:
        values = [state.get(key) for state in state_sets]
        present = {value for value in values if value is not None}
        if len(present) == 1 and None not in values:
            unconflicted[key] = present.pop()
        else:
            conflicted[key] = present
    return unconflicted, conflicted


def auth_difference(state_sets: Sequence[StateMap], events: Mapping[str, Event]) -> set[str]:
    """The union minus the intersection of the state sets' full auth chains, each counting the
    state set's own events (see the module docstring)."""
    chains = [auth_chain(state.values(), events) | set(state.values()) for state in state_sets]
    return set[str]().union(*chains) - chains[0].intersection(*chains[1:])


def conflicted_subgraph(conflicted_ids: set[str], events: Mapping[str, Event]) -> set[str]:
    """v2.1: the events on auth_events paths from one conflicted event to another (endpoints
    included)."""
    # Reachable from a conflicted event by at least one auth_events step...
    below = auth_chain(conflicted_ids, events)
    # ...and reaching a conflicted event (itself included).
    reaches: dict[str, bool] = {}
    entered: set[str] = set()

    def reaches_conflicted(start: str) -> bool:
        # Depth-first, iteratively: an event is decided once its auth events are.
        stack = [start]
        while stack:
            event_id = stack[-1]
            if event_id in reaches:
                stack.pop()
                continue
            if event_id in conflicted_ids:
                reaches[event_id] = True
                stack.pop()
                continue
            auths = get_event(event_id, events).auth_events
            pending = [a for a in auths if a not in reaches]
            if not pending:
                reaches[event_id] = any(reaches[a] for a in auths)
                stack.pop()
            elif event_id in entered:
                raise StateResolutionError(f"the auth events of {event_id} form a cycle")
            else:
                entered.add(event_id)
                stack.extend(pending)
        return reaches[start]

    subgraph = {event_id for event_id in below if reaches_conflicted(event_id)}
    # A conflicted event is an endpoint if another conflicted event is below it.
    starts = {
        event_id
        for event_id in conflicted_ids
        if any(reaches_conflicted(a) for a in get_event(event_id, events).auth_events)
    }
    return subgraph | starts


def is_power_event(event: Event) -> bool:
    """m.room.power_levels, m.room.join_rules, or a leave/ban of someone else."""
    if event.state_key is None:
        return False
    if event.type in ("m.room.power_levels", "m.room.join_rules"):
        return event.state_key == ""
    return (
        event.type == "m.room.member"
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


def sender_power_level(event: Event, events: Mapping[str, Event]) -> int | float:
    """The sender's power level as the event's auth_events give it (inf for a v12 creator)."""
    auth_state: dict[StateKey, Event] = {}
    for auth_id in event.auth_events:
        auth_event = get_event(auth_id, events)
        if auth_event.state_key is not None:
            auth_state[auth_event.state_tuple] = auth_event
    return power_level(event.sender, auth_state, room_create_event(event, events))


def reverse_topological_power_order(ids: set[str], events: Mapping[str, Event]) -> list[str]:
    """Kahn's algorithm over the auth DAG on `ids`, taking at each step the smallest ready event:
    greater sender power level first, then smaller origin_server_ts, then smaller event_id."""
    waiting_on = {event_id: auth_chain([event_id], events) & ids for event_id in ids}
    needed_by: dict[str, list[str]] = {event_id: [] for event_id in ids}
    for event_id, below in waiting_on.items():
        for other in below:
            needed_by[other].append(event_id)

    def key(event_id: str) -> tuple[int | float, int, str]:
        event = get_event(event_id, events)
        return (-sender_power_level(event, events), event.origin_server_ts, event_id)

    ready = [(key(event_id), event_id) for event_id, below in waiting_on.items() if not below]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(event_id)
        for later in needed_by[event_id]:
            waiting_on[later].discard(event_id)
            if not waiting_on[later]:
                heapq.heappush(ready, (key(later), later))
    if len(ordered) != len(ids):
        raise StateResolutionError("the auth events of the power events form a cycle")
    return ordered


def iterative_auth_checks(
    ordered: Iterable[str], initial: StateMap, events: Mapping[str, Event]
) -> dict[StateKey, str]:
    """Apply each event in turn if the auth rules allow it against the state so far; for a key
    the state lacks, the event's own auth event stands in."""
    state = dict(initial)
    for event_id in ordered:
        event = get_event(event_id, events)
        if event.state_key is None:
            continue
        auth_state: dict[StateKey, Event] = {}
        for auth_id in event.auth_events:
            auth_event = get_event(auth_id, events)
            if auth_event.state_key is not None:
                auth_state[auth_event.state_tuple] = auth_event
        auth_state.update(state_events(state, auth_keys(event), events))
        if is_allowed(event, auth_state, events):
            state[event.state_tuple] = event_id
    return state


def _auth_power_levels(event: Event, events: Mapping[str, Event]) -> str | None:
    """The m.room.power_levels event among the event's auth_events."""
    for auth_id in event.auth_events:
        auth_event = get_event(auth_id, events)
        if auth_event.type == "m.room.power_levels" and auth_event.state_key == "":
            return auth_id
    return None


def mainline_order(
    ids: Iterable[str], power_levels: str | None, events: Mapping[str, Event]
) -> list[str]:
    """Sort by mainline position based on `power_levels` (an event whose power levels chain
    meets the mainline further back, or never, comes first), then origin_server_ts, then
    event_id."""
    mainline: dict[str, int] = {}
    current = power_levels
    while current is not None:
        if current in mainline:
            raise StateResolutionError(f"power levels event {current} cites itself")
        mainline[current] = len(mainline)
        current = _auth_power_levels(get_event(current, events), events)

    known: dict[str, float] = {}  # power levels event -> mainline position

    def position(event: Event) -> float:
        walked: list[str] = []
        found: float = math.inf
        current = _auth_power_levels(event, events)
        while current is not None:
            if current in mainline:
                found = mainline[current]
                break
            if current in known:
                found = known[current]
                break
            if current in walked:
                raise StateResolutionError(f"power levels event {current} cites itself")
            walked.append(current)
            current = _auth_power_levels(get_event(current, events), events)
        known.update(dict.fromkeys(walked, found))
        return found

    def key(event_id: str) -> tuple[float, int, str]:
        event = get_event(event_id, events)
        return (-position(event), event.origin_server_ts, event_id)

    return sorted(ids, key=key)
