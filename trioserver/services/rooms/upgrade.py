"""Room upgrades (Client-Server API, "Room Upgrades": server behaviour)."""

from __future__ import annotations

import contextlib
import secrets
import string
from typing import Any

import apsw

from trioserver.errors import MatrixError, forbidden
from trioserver.services.events import auth_rules
from trioserver.services.events.event import Event
from trioserver.services.events.power_levels import LEVEL_DEFAULTS
from trioserver.services.events.room_versions import CREATABLE_VERSIONS, get_room_version
from trioserver.services.rooms.appender import Appender, Draft
from trioserver.services.rooms.cache import RoomView
from trioserver.services.rooms.service import Rooms, check_room_id, check_user_id
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import rooms as rooms_repo

TRANSFERABLE = ("m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar",
                "m.room.topic", "m.room.guest_access", "m.room.history_visibility",
                "m.room.join_rules")


class Upgrader:
    def __init__(self, server_name: str, db: Database, rooms: Rooms, appender: Appender) -> None:
        self._server_name = server_name
        self._db = db
        self._rooms = rooms
        self._appender = appender

    async def upgrade(self, requester: Requester, room_id: str, new_version: str,
                      additional_creators: list[str]) -> str:
        version = get_room_version(new_version)
        if version is None or new_version not in CREATABLE_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION",
                              f"Unsupported room version {new_version[:32]!r}")
        view = await self._rooms.view(check_room_id(room_id))
        keys = [("m.room.create", ""), ("m.room.power_levels", ""),
                ("m.room.member", requester.user_id), ("m.room.canonical_alias", ""),
                *((t, "") for t in TRANSFERABLE)]
        old = await self._appender.state_events(view, keys)
        create = old.get(("m.room.create", ""))
        if auth_rules.membership_of(requester.user_id, old) != "join":
            raise forbidden("You are not in this room")
        level = auth_rules.power_level(requester.user_id, old, create)
        if level < auth_rules.required_level("m.room.tombstone", True, old):
            raise forbidden("You need permission to send m.room.tombstone to upgrade this room")

        creators = list(dict.fromkeys(check_user_id(u) for u in additional_creators))
        create_content: dict[str, Any] = {"room_version": new_version,
                                          "predecessor": {"room_id": room_id}}
        if not version.room_id_is_create_hash:
            # Before v12 the predecessor names the last event of the old room.
            create_content["predecessor"]["event_id"] = view.extremities[-1]
            if not version.implicit_room_creator:
                create_content["creator"] = requester.user_id
        elif creators:
            create_content["additional_creators"] = creators
        if create is not None and isinstance(create.content.get("type"), str):
            create_content["type"] = create.content["type"]
        new_room_id = None
        if not version.room_id_is_create_hash:
            new_room_id = "!" + "".join(secrets.choice(string.ascii_letters)
                                        for _ in range(18)) + ":" + self._server_name

        power = dict(old[("m.room.power_levels", "")].content) if (
            "m.room.power_levels", "") in old else {}
        users: dict[str, Any] = dict(power.get("users", {}) or {})
        new_creators = {requester.user_id, *creators}
        if version.room_id_is_create_hash:
            # v12 creators have infinite power and must not be listed.
            users = {u: lv for u, lv in users.items() if u not in new_creators}
        else:
            users[requester.user_id] = max(100, _int(users.get(requester.user_id)))
        power["users"] = users
        if version.integer_power_levels:
            power = _integer_levels(power)

        drafts = [Draft("m.room.member", requester.user_id,
                        await self._rooms.member_content(requester.user_id, "join"),
                        state_key=requester.user_id),
                  Draft("m.room.power_levels", requester.user_id, power, state_key="")]
        for event_type in TRANSFERABLE:
            event = old.get((event_type, ""))
            if event is not None and event.content:
                drafts.append(Draft(event_type, requester.user_id, dict(event.content),
                                    state_key=""))
        published = await self._db.read(lambda c: _published(c, room_id))
        new_room_id, _ = await self._appender.create_room(
            Draft("m.room.create", requester.user_id, create_content, state_key=""), version,
            new_room_id, drafts, published=published)

        await self._carry_members(requester, view, old, new_room_id)
        # Aliases move to the new room, and the canonical alias with them.
        await self._db.write(lambda c: _move_aliases(c, room_id, new_room_id, published))
        canonical = old.get(("m.room.canonical_alias", ""))
        if canonical is not None and canonical.content:
            await self._appender.append(new_room_id, Draft(
                "m.room.canonical_alias", requester.user_id, dict(canonical.content),
                state_key=""))
        await self._appender.append(room_id, Draft(
            "m.room.tombstone", requester.user_id,
            {"body": "This room has been replaced", "replacement_room": new_room_id},
            state_key=""))
        await self._restrict_old_room(requester, room_id)
        return new_room_id

    async def _carry_members(self, requester: Requester, view: RoomView,
                             old: dict[tuple[str, str], Event], new_room_id: str) -> None:
        """Bans carry over; in rooms one cannot join freely, members are invited across."""
        member_keys = [k for k in view.state if k[0] == "m.room.member"]
        members = await self._appender.state_events(view, member_keys)
        join_rules = old.get(("m.room.join_rules", ""))
        open_room = join_rules is not None and join_rules.content.get("join_rule") == "public"
        for (_, user_id), event in sorted(members.items()):
            if user_id == requester.user_id:
                continue
            if event.membership == "ban":
                content: dict[str, Any] = {"membership": "ban"}
            elif event.membership == "join" and not open_room:
                content = await self._rooms.member_content(user_id, "invite")
            else:
                continue
            # A member we may not invite or ban (power levels) is left to join by themselves.
            with contextlib.suppress(MatrixError):
                await self._appender.append(new_room_id, Draft(
                    "m.room.member", requester.user_id, content, state_key=user_id))

    async def _restrict_old_room(self, requester: Requester, room_id: str) -> None:
        """Stop new messages and invites in the old room, if we are allowed to."""
        view = await self._rooms.view(room_id)
        old = await self._appender.state_events(view, [("m.room.power_levels", "")])
        pl = old.get(("m.room.power_levels", ""))
        content = dict(pl.content) if pl is not None else {}
        restricted = max(50, _int(content.get("users_default")) + 1)
        content["events_default"] = restricted
        content["invite"] = restricted
        # Not permitted to change power levels? The tombstone still marks the room as replaced.
        with contextlib.suppress(MatrixError):
            await self._appender.append(room_id, Draft(
                "m.room.power_levels", requester.user_id, content, state_key=""))

def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _integer_levels(power: dict[str, Any]) -> dict[str, Any]:
    """Upgrading from a version with string levels ("50") to v10+: make them integers."""
    out: dict[str, Any] = {}
    for key, value in power.items():
        if isinstance(value, dict):
            out[key] = {k: _int(v) for k, v in value.items()}
        elif key in LEVEL_DEFAULTS:
            out[key] = _int(value)
        else:
            out[key] = value
    return out


def _published(conn: apsw.Connection, room_id: str) -> bool:
    row = rooms_repo.get_room(conn, room_id)
    return row is not None and row.published


def _move_aliases(conn: apsw.Connection, old: str, new: str, published: bool) -> None:
    rooms_repo.move_aliases(conn, old, new)
    if published:
        rooms_repo.set_published(conn, old, False)
