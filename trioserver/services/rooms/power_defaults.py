"""Initial state of a new room: power levels and the presets of POST /createRoom."""

from __future__ import annotations

from typing import Any

from trioserver.services.events.power_levels import LEVEL_DEFAULTS
from trioserver.services.events.room_versions import RoomVersion

PRESETS: dict[str, dict[str, str]] = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared",
                     "guest_access": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared",
                             "guest_access": "can_join"},
    "public_chat": {"join_rule": "public", "history_visibility": "shared",
                    "guest_access": "forbidden"},
}


def default_power_levels(version: RoomVersion, creator: str, preset: str,
                         invitees: list[str]) -> dict[str, Any]:
    """The spec's default m.room.power_levels for a new room (createRoom step 3)."""
    users: dict[str, int] = {}
    if not version.room_id_is_create_hash:
        # Before v12 the creator is listed; from v12 creators have infinite power implicitly.
        users[creator] = 100
        if preset == "trusted_private_chat":
            for user in invitees:
                users[user] = 100
    return {
        "users": users,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            # v12: tombstones must need more than state_default (only creators can upgrade).
            "m.room.tombstone": 150 if version.room_id_is_create_hash else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        **LEVEL_DEFAULTS,
        "notifications": {"room": 50},
    }
