"""Room versions 1-12 as data: each flag is one behaviour that changed between versions.

Code asks a flag (`rv.knocking`), never compares version strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EventIdFormat(Enum):
    V1 = "v1"  # "$random:server", carried in the event (room versions 1-2)
    V3 = "v3"  # "$" + reference hash, standard unpadded base64 (room version 3)
    V4 = "v4"  # "$" + reference hash, URL-safe unpadded base64 (room versions 4+)


class RedactionRules(Enum):
    V1 = "v1"  # keeps m.room.aliases content
    V6 = "v6"  # drops the m.room.aliases special case
    V8 = "v8"  # keeps join_rules.allow
    V9 = "v9"  # keeps member.join_authorised_via_users_server
    V11 = "v11"  # create keeps all, PL keeps invite, redaction keeps redacts; fewer top-level keys


class StateResAlgorithm(Enum):
    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    redaction: RedactionRules
    # v5: signing keys must be valid at the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-5: the m.room.aliases auth rule special case.
    special_case_aliases_auth: bool
    # v1-2: the m.room.redaction auth rule (redact level, or same event-ID domain); from v3 the
    # redaction checks happen when the redaction is applied, not in the auth rules.
    redaction_auth_rule: bool
    # v6: canonical JSON is strict (no floats, integers within +-(2**53 - 1)).
    strict_canonical_json: bool
    # v6: power_levels.notifications is checked when power levels change.
    limit_notifications_power_levels: bool
    # v7: the knock membership.
    knocking: bool
    # v8: the restricted join rule and join_authorised_via_users_server.
    restricted_join: bool
    # v10: the knock_restricted join rule.
    knock_restricted: bool
    # v10: power levels must be integers (not strings of integers).
    integer_power_levels: bool
    # v11: m.room.create has no `creator`; the creator is the sender.
    implicit_room_creator: bool
    # v11: m.room.redaction carries `redacts` in its content (top-level kept for old clients).
    redacts_in_content: bool
    # v12: room ID is "!" + the create event's reference hash; create has no room_id and is not
    # in auth_events; creators (sender + additional_creators) have infinite power.
    room_id_is_create_hash: bool


def _v(identifier: str, **changes: object) -> RoomVersion:
    base: dict[str, object] = {
        "identifier": identifier,
        "event_id_format": EventIdFormat.V4,
        "state_res": StateResAlgorithm.V2,
        "redaction": RedactionRules.V1,
        "enforce_key_validity": False,
        "special_case_aliases_auth": True,
        "redaction_auth_rule": False,
        "strict_canonical_json": False,
        "limit_notifications_power_levels": False,
        "knocking": False,
        "restricted_join": False,
        "knock_restricted": False,
        "integer_power_levels": False,
        "implicit_room_creator": False,
        "redacts_in_content": False,
        "room_id_is_create_hash": False,
    }
    base.update(changes)
    return RoomVersion(**base)  # type: ignore[arg-type]


_V6 = {"enforce_key_validity": True, "special_case_aliases_auth": False,
       "strict_canonical_json": True, "limit_notifications_power_levels": True,
       "redaction": RedactionRules.V6}
_V10 = {**_V6, "knocking": True, "restricted_join": True, "knock_restricted": True,
        "integer_power_levels": True, "redaction": RedactionRules.V9}
_V11 = {**_V10, "redaction": RedactionRules.V11, "implicit_room_creator": True,
        "redacts_in_content": True}

ROOM_VERSIONS: dict[str, RoomVersion] = {
    rv.identifier: rv
    for rv in (
        _v("1", event_id_format=EventIdFormat.V1, state_res=StateResAlgorithm.V1,
           redaction_auth_rule=True),
        _v("2", event_id_format=EventIdFormat.V1, redaction_auth_rule=True),
        _v("3", event_id_format=EventIdFormat.V3),
        _v("4"),
        _v("5", enforce_key_validity=True),
        _v("6", **_V6),
        _v("7", **{**_V6, "knocking": True}),
        _v("8", **{**_V6, "knocking": True, "restricted_join": True,
                   "redaction": RedactionRules.V8}),
        _v("9", **{**_V6, "knocking": True, "restricted_join": True,
                   "redaction": RedactionRules.V9}),
        _v("10", **_V10),
        _v("11", **_V11),
        _v("12", **{**_V11, "room_id_is_create_hash": True, "state_res": StateResAlgorithm.V2_1}),
    )
}

# Versions this server creates rooms in (older ones are understood, for federation).
CREATABLE_VERSIONS = ("10", "11", "12")
DEFAULT_ROOM_VERSION = "12"


def get_room_version(identifier: str) -> RoomVersion | None:
    return ROOM_VERSIONS.get(identifier)
