"""The auth events selection algorithm (server-server API "Auth events selection") and the
auth rule about an event's `auth_events` list (rule 2; v12: rule 3)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import Any

from trioserver.services.events.auth_numbers import AuthError, rule_numbers
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.hashing import room_id_from_create_event_id
from trioserver.services.events.power_levels import CREATE_KEY, JOIN_RULES_KEY, POWER_LEVELS_KEY
from trioserver.services.events.room_versions import RoomVersion

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"
AUTHORISER = "join_authorised_via_users_server"


def auth_types_for_event(
    event_type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
    room_version: RoomVersion,
) -> list[StateKey]:
    """The state keys whose current events form an event's `auth_events` (server-server API
    "Auth events selection"), in order, without duplicates. Empty for m.room.create."""
    if event_type == CREATE:
        return []
    keys: list[StateKey] = []
    if not room_version.room_id_is_create_hash:  # v12: the create event MUST NOT be selected
        keys.append(CREATE_KEY)
    keys += [POWER_LEVELS_KEY, (MEMBER, sender)]
    if event_type == MEMBER:
        membership = content.get("membership")
        if state_key is not None:
            keys.append((MEMBER, state_key))
        if membership in ("join", "invite", "knock"):
            keys.append(JOIN_RULES_KEY)
        if membership == "invite":
            token = get_path(content, "third_party_invite", "signed", "token")
            if isinstance(token, str):
                keys.append((THIRD_PARTY_INVITE, token))
        if membership == "join" and room_version.restricted_join:
            authoriser = content.get(AUTHORISER)
            if isinstance(authoriser, str):
                keys.append((MEMBER, authoriser))
    return list(dict.fromkeys(keys))


def get_path(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def check_room_is_create(event: Event, create: Event | None) -> None:
    """Rule 2 (v12): the room ID must be the ID of the (accepted) create event, with "!"."""
    if create is None:
        raise AuthError("2", "no m.room.create event for the room")
    if create.type != CREATE or room_id_from_create_event_id(create.event_id) != event.room_id:
        raise AuthError("2", f"room ID {event.room_id} is not {create.event_id} with '!'")


def check_auth_events(
    event: Event,
    auth_events: Iterable[Event],
    *,
    rejected: Container[str] = frozenset(),
    create_event: Event | None = None,
) -> dict[StateKey, Event]:
    """Rule 2 (v12: 3) on a received event's auth events; returns them as `check_event`'s
    auth_state.

    `auth_events` must include every event `event.auth_events` names (else ValueError: fetching
    them is the caller's job); others are ignored. `rejected` holds the IDs of events that were
    rejected by the checks on receipt of a PDU (rule 2.3). The m.room.create event is decided by
    rule 1 alone: it gets {}. In v12 the create event is never an auth event; given as
    `create_event`, rule 2 (room ID = its ID) is checked first, as the rules are ordered; pass it
    to `check_event` too.
    """
    if event.type == CREATE:
        return {}
    if event.room_version.room_id_is_create_hash and create_event is not None:
        check_room_is_create(event, create_event)
    n = rule_numbers(event.room_version)
    rule = n.auth_events
    by_id = {auth_event.event_id: auth_event for auth_event in auth_events}
    entries: list[Event] = []
    for event_id in event.auth_events:
        if event_id not in by_id:
            raise ValueError(f"auth event {event_id} of {event.event_id} was not provided")
        entries.append(by_id[event_id])
    # Rule 2.1 (v12 3.1): duplicate entries for a (type, state_key) pair.
    seen: set[tuple[str, str | None]] = set()
    for entry in entries:
        key = (entry.type, entry.state_key)
        if key in seen:
            raise AuthError(f"{rule}.1", f"duplicate auth events for {key}")
        seen.add(key)
    # Rule 2.2 (v12 3.2): entries the auth events selection would not pick.
    expected = set(
        auth_types_for_event(
            event.type, event.state_key, event.sender, event.content, event.room_version
        )
    )
    for entry in entries:
        if entry.state_key is None or (entry.type, entry.state_key) not in expected:
            raise AuthError(
                f"{rule}.2", f"auth event {entry.event_id} ({entry.type}) is not expected"
            )
    # Rule 2.3 (v12 3.3): entries that were themselves rejected.
    for entry in entries:
        if entry.event_id in rejected:
            raise AuthError(f"{rule}.3", f"auth event {entry.event_id} was rejected")
    # Rule 2.4 (v1-11): no m.room.create among the entries. (v12 has no such item.)
    if not event.room_version.room_id_is_create_hash and not any(
        entry.type == CREATE and entry.state_key == "" for entry in entries
    ):
        raise AuthError(f"{rule}.4", "no m.room.create event among the auth events")
    # Rule 2.5 (v12 3.4): entries from another room.
    for entry in entries:
        if entry.room_id != event.room_id:
            raise AuthError(
                f"{rule}.{n.room_mismatch}", f"auth event {entry.event_id} is in another room"
            )
    return {entry.state_tuple: entry for entry in entries}
