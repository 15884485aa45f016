"""State resolution: the room state before an event whose prev_events disagree.

Pure functions, no I/O: the caller loads the events. The algorithms live in
`state_res_v1` (room version 1, rooms/v1.md "State resolution") and `state_res_v2` (room
versions 2-11, rooms/fragments/v2-state-res.md; and its v2.1 changes for room version 12,
rooms/v12.md "State resolution"). This module is the public face: `resolve_state` picks the
algorithm by `RoomVersion.state_res`; `auth_chain` and the helpers below are shared by both.

Every event the algorithms look at must be in `events`: the events the state sets name and their
full auth chains. A missing one raises `StateResolutionError` rather than being skipped, since
skipping would make the result depend on what the caller happened to load.

All events given are treated as accepted (not rejected): the spec's "if the auth event is not
rejected" in the iterative auth checks cannot apply, as the API carries no rejection flags.
Signatures are taken as verified (they were checked when each event was received), so the v8+
`join_authorised_via_users_server` signature rule always passes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from trioserver.services.events.auth_events import auth_types_for_event
from trioserver.services.events.auth_numbers import AuthError
from trioserver.services.events.auth_rules import check_event
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.room_versions import RoomVersion, StateResAlgorithm

__all__ = [
    "StateKey",
    "StateMap",
    "StateResolutionError",
    "auth_chain",
    "resolve_state",
]

StateMap = Mapping[StateKey, str]  # (type, state_key) -> event_id


class StateResolutionError(Exception):
    """The states cannot be resolved: an event the algorithm needs is missing from `events`, or
    the auth graph is not a DAG."""


def resolve_state(
    room_version: RoomVersion, state_sets: Sequence[StateMap], events: Mapping[str, Event]
) -> dict[StateKey, str]:
    """Resolve `state_sets` (the states after each of an event's prev_events, or the forward
    extremities) per the room version's algorithm. `events` holds every event named in the
    state sets AND their full auth chains (the caller loads them). Deterministic: neither the
    order of `state_sets` nor that of `events` changes the result."""
    # Imported here: both algorithms import this module's shared helpers.
    from trioserver.services.events.state_res_v1 import resolve as resolve_v1
    from trioserver.services.events.state_res_v2 import resolve as resolve_v2

    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    if room_version.state_res is StateResAlgorithm.V1:
        return resolve_v1(room_version, state_sets, events)
    return resolve_v2(room_version, state_sets, events)


def auth_chain(event_ids: Iterable[str], events: Mapping[str, Event]) -> set[str]:
    """The auth chain of the given events (transitively via auth_events), from `events`.

    As the spec defines it: the events' auth events, theirs, and so on; a given event is in the
    result only if another given event reaches it through auth_events.
    """
    chain: set[str] = set()
    todo = [a for event_id in event_ids for a in get_event(event_id, events).auth_events]
    while todo:
        event_id = todo.pop()
        if event_id in chain:
            continue
        chain.add(event_id)
        todo.extend(get_event(event_id, events).auth_events)
    return chain


# --- shared by state_res_v1 and state_res_v2 ---------------------------------------------------


def get_event(event_id: str, events: Mapping[str, Event]) -> Event:
    event = events.get(event_id)
    if event is None:
        raise StateResolutionError(f"event {event_id} is needed but was not provided")
    return event


def room_create_event(event: Event, events: Mapping[str, Event]) -> Event | None:
    """v12: the room's m.room.create event, named by the room ID (auth_events never list it).
    None before v12, where check_event finds it in the auth state."""
    if not event.room_version.room_id_is_create_hash or event.type == "m.room.create":
        return None
    return get_event("$" + event.room_id[1:], events)


def state_events(
    state: StateMap, keys: Iterable[StateKey], events: Mapping[str, Event]
) -> dict[StateKey, Event]:
    """The events `state` holds for `keys` (keys it lacks are left out)."""
    return {key: get_event(state[key], events) for key in keys if key in state}


def auth_keys(event: Event) -> list[StateKey]:
    """The state keys the auth rules consult for `event` (the auth events selection)."""
    return auth_types_for_event(
        event.type, event.state_key, event.sender, event.content, event.room_version
    )


def _signatures_were_checked(event: Event, server_name: str) -> bool:
    return True


def is_allowed(
    event: Event, auth_state: Mapping[StateKey, Event], events: Mapping[str, Event]
) -> bool:
    """Whether the auth rules allow `event` against `auth_state`."""
    try:
        check_event(
            event,
            auth_state,
            room_create_event(event, events),
            verify_server_signature=_signatures_were_checked,
        )
    except AuthError:
        return False
    return True
