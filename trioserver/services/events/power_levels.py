"""Power levels for the authorisation rules: parsing per room version, defaults, creators.

Pure functions over a room's state: `auth_state` maps (type, state_key) to events, as in
`auth_rules.check_event`.

Parsing (rooms/v1.md "m.room.power_levels events accept values as strings/floats"):

- v1-9 accept integers and strings of integers: optional surrounding whitespace, one optional
  sign, ASCII digits only ("  +050 " is 50; "5.0", "1e3", "" are not integers).
- v1-5 also accept floats (their canonical JSON is not strict): truncated toward zero; NaN and
  +-Infinity are invalid. From v6 strict canonical JSON forbids floats, so a float is invalid.
- v10+ accept only integers.

JSON booleans are never integers here, although Python's bool is an int.

Defaults (Server-Server API "Definitions", client-server "m.room.power_levels"): users_default 0,
events_default 0, state_default 50, ban/kick/redact 50, invite 0, in every room version. The old
"state_default is 0 when there is no m.room.power_levels event" text was removed from the spec in
v1.7 (matrix-spec#1479); state_default is 50 with or without the event. Without a power levels
event the room creator has 100 and everyone else 0. In v12 the creators (the create event's
sender plus `additional_creators`) have infinite power whatever the power levels say.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from trioserver.identifiers import is_valid_server_name
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.room_versions import RoomVersion

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

# The top-level integer properties, with their defaults.
LEVEL_DEFAULTS: Mapping[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}
# The power level of the creator when the room has no m.room.power_levels event (v1-11).
CREATOR_DEFAULT_LEVEL = 100
# The power level of a v12 room creator.
INFINITE = math.inf

_STRINGY_INTEGER = re.compile(r"[+-]?[0-9]+")
_MAX_USER_ID_BYTES = 255


def parse_level(value: Any, room_version: RoomVersion) -> int | None:
    """The integer a power level value stands for in `room_version`, or None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.integer_power_levels:
        return None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if _STRINGY_INTEGER.fullmatch(text) else None
    if isinstance(value, float) and not room_version.strict_canonical_json:
        return int(value) if math.isfinite(value) else None
    return None


def is_valid_user_id(value: Any) -> bool:
    """The user ID grammar events must accept: "@" localpart ":" server_name, <= 255 bytes.

    The localpart is the historical one (appendices "Historical User IDs"): anything but ":"
    and NUL, possibly empty; events from such users must still be accepted over federation.
    """
    if not isinstance(value, str) or not value.startswith("@"):
        return False
    try:
        if len(value.encode("utf-8")) > _MAX_USER_ID_BYTES:
            return False
    except UnicodeEncodeError:  # lone surrogates
        return False
    localpart, sep, server_name = value[1:].partition(":")
    return bool(sep) and "\x00" not in localpart and is_valid_server_name(server_name)


def server_of(identifier: str) -> str:
    """The domain of a user ID (or v1-2 event ID, v1-11 room ID): what follows the first ':'."""
    return identifier.partition(":")[2]


# --- creators -------------------------------------------------------------------------------


def room_creator(create_event: Event) -> str | None:
    """The creator auth rules refer to: `content.creator` before v11, the sender from v11."""
    if create_event.room_version.implicit_room_creator:
        return create_event.sender
    creator = create_event.content.get("creator")
    return creator if isinstance(creator, str) else None


def privileged_creators(create_event: Event | None) -> frozenset[str]:
    """v12: the users with infinite power (sender + `additional_creators`); empty before v12."""
    if create_event is None or not create_event.room_version.room_id_is_create_hash:
        return frozenset()
    extra = create_event.content.get("additional_creators")
    others = [u for u in extra if isinstance(u, str)] if isinstance(extra, list) else []
    return frozenset([create_event.sender, *others])


# --- reading levels from state ----------------------------------------------------------------


def _pl_event(auth_state: Mapping[StateKey, Event]) -> Event | None:
    return auth_state.get(POWER_LEVELS_KEY)


def _create(auth_state: Mapping[StateKey, Event], create_event: Event | None) -> Event | None:
    return create_event if create_event is not None else auth_state.get(CREATE_KEY)


def named_level(key: str, auth_state: Mapping[StateKey, Event]) -> int:
    """One of LEVEL_DEFAULTS' properties (e.g. "ban") as the current power levels set it."""
    pl = _pl_event(auth_state)
    if pl is None:
        return LEVEL_DEFAULTS[key]
    value = parse_level(pl.content.get(key), pl.room_version)
    return LEVEL_DEFAULTS[key] if value is None else value


def power_level(
    user_id: str, auth_state: Mapping[StateKey, Event], create_event: Event | None = None
) -> int | float:
    """A user's power level: an int, or math.inf for a v12 room creator.

    `create_event` defaults to auth_state's m.room.create (v12 auth events never list it).
    """
    create = _create(auth_state, create_event)
    if user_id in privileged_creators(create):
        return INFINITE
    pl = _pl_event(auth_state)
    if pl is None:
        if create is not None and room_creator(create) == user_id:
            return CREATOR_DEFAULT_LEVEL
        return LEVEL_DEFAULTS["users_default"]
    users = pl.content.get("users")
    if isinstance(users, Mapping) and user_id in users:
        level = parse_level(users[user_id], pl.room_version)
        if level is not None:
            return level
    return named_level("users_default", auth_state)


def required_level(event_type: str, is_state: bool, auth_state: Mapping[StateKey, Event]) -> int:
    """The level needed to send an event of this type: `events[type]`, else the state/events
    default."""
    pl = _pl_event(auth_state)
    if pl is not None:
        events = pl.content.get("events")
        if isinstance(events, Mapping) and event_type in events:
            level = parse_level(events[event_type], pl.room_version)
            if level is not None:
                return level
    return named_level("state_default" if is_state else "events_default", auth_state)


def membership_of(user_id: str, auth_state: Mapping[StateKey, Event]) -> str:
    """A user's current membership; "leave" when the state has no member event for them."""
    member = auth_state.get(("m.room.member", user_id))
    membership = member.membership if member is not None else None
    return membership if membership is not None else "leave"


# --- validating a new m.room.power_levels event ----------------------------------------------


def invalid_named_levels(content: Mapping[str, Any], room_version: RoomVersion) -> str | None:
    """Why a top-level integer property (ban, invite, ...) is invalid, or None."""
    for key in LEVEL_DEFAULTS:
        if key in content and parse_level(content[key], room_version) is None:
            return f"{key} is not an integer: {content[key]!r}"
    return None


def level_map_keys(room_version: RoomVersion) -> tuple[str, ...]:
    """The maps whose entries the rules check: events, plus notifications from v6 (only then
    do the auth rules look at notifications, so only then is it validated)."""
    if room_version.limit_notifications_power_levels:
        return ("events", "notifications")
    return ("events",)


def invalid_level_maps(content: Mapping[str, Any], room_version: RoomVersion) -> str | None:
    """Why `events` / `notifications` is not an object of integers, or None."""
    for key in level_map_keys(room_version):
        if key not in content:
            continue
        value = content[key]
        if not isinstance(value, Mapping):
            return f"{key} is not an object"
        for name, level in value.items():
            if parse_level(level, room_version) is None:
                return f"{key}[{name!r}] is not an integer: {level!r}"
    return None


def invalid_users(content: Mapping[str, Any], room_version: RoomVersion) -> str | None:
    """Why `users` is not an object of user IDs to integers, or None. An absent `users` is fine."""
    if "users" not in content:
        return None
    users = content["users"]
    if not isinstance(users, Mapping):
        return "users is not an object"
    for user_id, level in users.items():
        if not is_valid_user_id(user_id):
            return f"users key {user_id!r} is not a valid user ID"
        if parse_level(level, room_version) is None:
            return f"users[{user_id!r}] is not an integer: {level!r}"
    return None


def _levels(content: Mapping[str, Any], key: str, rv: RoomVersion) -> dict[str, int]:
    """A map property's parsed entries; invalid entries and a non-object map count as absent."""
    value = content.get(key)
    if not isinstance(value, Mapping):
        return {}
    parsed = {name: parse_level(level, rv) for name, level in value.items()}
    return {name: level for name, level in parsed.items() if level is not None}


def named_level_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], rv: RoomVersion
) -> list[tuple[str, int | None, int | None]]:
    """(key, old, new) for each top-level level added, changed or removed.

    Values are compared as they were written (None when absent), not with defaults filled in:
    the rules speak of properties being "added, changed or removed".
    """
    changes = []
    for key in LEVEL_DEFAULTS:
        before = parse_level(old[key], rv) if key in old else None
        after = parse_level(new[key], rv) if key in new else None
        if before != after:
            changes.append((key, before, after))
    return changes


def map_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], key: str, rv: RoomVersion
) -> list[tuple[str, int | None, int | None]]:
    """(entry, old, new) for each entry of the `key` map (events, notifications, users) that
    was added, changed or removed."""
    before, after = _levels(old, key, rv), _levels(new, key, rv)
    return [
        (name, before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]
