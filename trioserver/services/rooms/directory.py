"""The published room directory, room summaries and content reports."""

from __future__ import annotations

import base64
from typing import Any

from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.services.clock import now_ms
from trioserver.services.events import auth_rules
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import appservice_networks as networks_repo
from trioserver.storage.repositories import rooms as rooms_repo

MAX_PUBLIC_ROOMS_LIMIT = 500


class Directory:
    def __init__(self, db: Database, cache: RoomCache) -> None:
        self._db = db
        self._cache = cache

    async def _room(self, room_id: str) -> RoomView:
        view = await self._cache.room(room_id)
        if view is None:
            raise not_found("Unknown room")
        return view

    async def summary(self, view: RoomView) -> dict[str, Any]:
        """PublishedRoomsChunk / room summary fields from the current state."""
        wanted = {
            ("m.room.name", ""), ("m.room.topic", ""), ("m.room.avatar", ""),
            ("m.room.canonical_alias", ""), ("m.room.join_rules", ""),
            ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
            ("m.room.create", ""), ("m.room.encryption", ""),
        }
        ids = {k: view.state[k] for k in wanted if k in view.state}
        events = await self._cache.events(ids.values())

        def content(key: tuple[str, str], field: str) -> Any:
            event = events.get(ids.get(key, ""))
            return event.content.get(field) if event is not None else None

        member_ids = [e for (t, _), e in view.state.items() if t == "m.room.member"]
        members = await self._cache.events(member_ids)
        joined = sum(1 for m in members.values() if m.membership == "join")
        out: dict[str, Any] = {
            "room_id": view.room_id,
            "num_joined_members": joined,
            "world_readable": content(("m.room.history_visibility", ""),
                                      "history_visibility") == "world_readable",
            "guest_can_join": content(("m.room.guest_access", ""), "guest_access") == "can_join",
            "join_rule": content(("m.room.join_rules", ""), "join_rule") or "invite",
            "room_version": view.room_version.identifier,
        }
        for key, field, name in ((("m.room.name", ""), "name", "name"),
                                 (("m.room.topic", ""), "topic", "topic"),
                                 (("m.room.avatar", ""), "url", "avatar_url"),
                                 (("m.room.canonical_alias", ""), "alias", "canonical_alias"),
                                 (("m.room.create", ""), "type", "room_type")):
            value = content(key, field)
            if isinstance(value, str):
                out[name] = value
        algorithm = content(("m.room.encryption", ""), "algorithm")
        if isinstance(algorithm, str):
            out["encryption"] = algorithm
        return out

    async def get_visibility(self, room_id: str) -> str:
        await self._room(room_id)
        row = await self._db.read(lambda c: rooms_repo.get_room(c, room_id))
        return "public" if row is not None and row.published else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        if visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        view = await self._room(room_id)
        state_keys = [("m.room.create", ""), ("m.room.power_levels", ""),
                      ("m.room.member", requester.user_id)]
        ids = [view.state[k] for k in state_keys if k in view.state]
        found = await self._cache.events(ids)
        state = {k: found[view.state[k]] for k in state_keys if k in view.state}
        if auth_rules.membership_of(requester.user_id, state) != "join":
            raise forbidden("You are not in this room")
        level = auth_rules.power_level(requester.user_id, state, state.get(("m.room.create", "")))
        # Publishing is a room-admin action: the level needed to change the canonical alias.
        if level < auth_rules.required_level("m.room.canonical_alias", True, state):
            raise forbidden("You need a higher power level to publish this room")
        await self._db.write(lambda c: rooms_repo.set_published(c, room_id, visibility == "public"))

    async def set_network_published(self, as_id: str, network_id: str, room_id: str,
                                    published: bool) -> None:
        """Publish or unpublish a known room on an appservice's network list. The server's own
        list (the room's published flag) is left alone, as Synapse does: the two are separate."""
        await self._room(room_id)
        await self._db.write(lambda c: networks_repo.set_network_published(
            c, as_id, network_id, room_id, published))

    async def _listed_room_ids(self, network: tuple[str, str] | None,
                               all_networks: bool) -> list[str]:
        if all_networks:
            def both(c: Any) -> list[str]:
                local = rooms_repo.published_rooms(c)
                seen = set(local)
                return local + [r for r in networks_repo.all_network_rooms(c) if r not in seen]
            return await self._db.read(both)
        if network is not None:
            as_id, network_id = network
            return await self._db.read(
                lambda c: networks_repo.network_rooms(c, as_id, network_id))
        return await self._db.read(rooms_repo.published_rooms)

    async def public_rooms(self, limit: int | None, since: str | None,
                           search: str | None, *, network: tuple[str, str] | None = None,
                           all_networks: bool = False) -> dict[str, Any]:
        """The published rooms: the server's own list; with `network` ((appservice ID, network
        ID), from a third_party_instance_id) only that network's list; with `all_networks`
        both, as `include_all_networks` asks (it wins over a third_party_instance_id)."""
        room_ids = await self._listed_room_ids(network, all_networks)
        chunks = []
        for room_id in room_ids:
            view = await self._cache.room(room_id)
            if view is None:
                continue
            chunk = await self.summary(view)
            if chunk["join_rule"] not in ("public", "knock", "knock_restricted"):
                continue
            if search:
                haystack = " ".join(str(chunk.get(k, "")) for k in
                                    ("name", "topic", "canonical_alias")).lower()
                if search.lower() not in haystack:
                    continue
            chunk.pop("room_version", None)
            chunk.pop("encryption", None)
            chunks.append(chunk)
        chunks.sort(key=lambda c: (-c["num_joined_members"], c["room_id"]))
        offset = _decode_since(since)
        limit = MAX_PUBLIC_ROOMS_LIMIT if limit is None else max(0, min(limit,
                                                                      MAX_PUBLIC_ROOMS_LIMIT))
        page = chunks[offset:offset + limit]
        out: dict[str, Any] = {"chunk": page, "total_room_count_estimate": len(chunks)}
        if offset + limit < len(chunks):
            out["next_batch"] = _encode_since(offset + limit)
        if offset > 0:
            out["prev_batch"] = _encode_since(max(0, offset - limit))
        return out

    async def report(self, requester: Requester, room_id: str, event_id: str | None,
                     reason: str | None, score: int | None) -> None:
        await self._room(room_id)
        await self._db.write(lambda c: rooms_repo.insert_report(
            c, room_id, event_id, requester.user_id, reason, score, now_ms()))


def parse_instance_id(instance_id: str) -> tuple[str, str]:
    """(appservice ID, network ID) of a protocol instance's `instance_id`, "as_id|network_id"
    (the form Synapse uses, so IDs stay the same for clients moving between servers)."""
    as_id, sep, network_id = instance_id.partition("|")
    if not sep or not as_id or not network_id or "|" in network_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid third_party_instance_id")
    return as_id, network_id


def network_selection(instance_id: str | None, all_networks: bool
                      ) -> tuple[tuple[str, str] | None, bool]:
    """/publicRooms' `network` and `all_networks` from its third_party_instance_id and
    include_all_networks: the latter wins (the spec allows the former only without it;
    Synapse ignores it then)."""
    if all_networks or instance_id is None:
        return None, all_networks
    return parse_instance_id(instance_id), False


def _encode_since(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def _decode_since(since: str | None) -> int:
    if not since:
        return 0
    try:
        raw = base64.urlsafe_b64decode(since + "=" * (-len(since) % 4)).decode()
        if raw.startswith("o") and raw[1:].isdigit():
            return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise MatrixError(400, Codes.INVALID_PARAM, "Invalid since token")
