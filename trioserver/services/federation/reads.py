"""What other servers may read of our rooms: events, state, auth chains, history.

A server may read a room's events only while one of its users is in the room (a joined member
in the current state); everything else is `403 M_FORBIDDEN`, unknown events `404`. Events it
could not have seen are served redacted (as Synapse's filter_events_for_server does): under
history visibility "joined" or "invited" at the event, unless one of its users was joined (or
invited, for "invited") at that point.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trioserver.errors import Codes, MatrixError
from trioserver.services.clock import now_ms
from trioserver.services.events.event import Event
from trioserver.services.events.redaction import redact
from trioserver.services.federation.acl import server_allowed
from trioserver.services.federation.room_servers import RoomServers
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.remote import auth_chain_of
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo

MAX_BACKFILL = 100
MAX_MISSING = 20


class FederationReads:
    def __init__(self, server_name: str, db: Database, cache: RoomCache,
                 servers: RoomServers) -> None:
        self._server_name = server_name
        self._db = db
        self._cache = cache
        self._servers = servers

    async def _check_in_room(self, origin: str, room_id: str) -> None:
        view = await self._cache.room(room_id)
        if view is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        acl_id = view.state.get(("m.room.server_acl", ""))
        if acl_id is not None:
            acl = (await self._cache.events([acl_id])).get(acl_id)
            if not server_allowed(acl.content if acl is not None else None, origin):
                raise MatrixError(403, Codes.FORBIDDEN, f"{origin} is denied by the server ACL")
        if origin not in await self._servers.of(room_id):
            raise MatrixError(403, Codes.FORBIDDEN, f"{origin} is not in the room")

    def _envelope(self, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        return {"origin": self._server_name, "origin_server_ts": now_ms(), "pdus": pdus}

    async def event(self, origin: str, event_id: str) -> dict[str, Any]:
        found = await self._cache.events([event_id])
        if event_id not in found:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event")
        event = found[event_id]
        await self._check_in_room(origin, event.room_id)
        return self._envelope(await self._for_server(origin, [event]))

    async def _for_server(self, origin: str, events: list[Event]) -> list[dict[str, Any]]:
        """The events as PDUs, redacted where `origin` may not see them."""
        stored = await self._db.read(
            lambda c: events_repo.get_events(c, [e.event_id for e in events]))
        groups = {s.state_before for s in stored.values()}
        states = await self._db.read(
            lambda c: {g: events_repo.load_state_group(c, g) for g in groups})
        suffix = f":{origin}"
        out: list[dict[str, Any]] = []
        for event in events:
            s = stored.get(event.event_id)
            state = states.get(s.state_before, {}) if s is not None else {}
            if await self._visible(state, suffix):
                out.append(dict(event.pdu))
            else:
                out.append(redact(dict(event.pdu), event.room_version))
        return out

    async def _visible(self, state: dict[tuple[str, str], str], suffix: str) -> bool:
        hv_id = state.get(("m.room.history_visibility", ""))
        hv = (await self._cache.events([hv_id])).get(hv_id) if hv_id else None
        visibility = hv.content.get("history_visibility") if hv is not None else "shared"
        if visibility not in ("joined", "invited"):
            return True  # world_readable, shared (and unknown values, which count as shared)
        member_ids = [v for (t, k), v in state.items() if t == "m.room.member"
                      and k.endswith(suffix)]
        members = await self._cache.events(member_ids)
        wanted = ("join", "invite") if visibility == "invited" else ("join",)
        return any(m.membership in wanted for m in members.values())

    async def _state_before(self, room_id: str, event_id: str) -> dict[tuple[str, str], str]:
        stored = await self._db.read(lambda c: events_repo.get_events(c, [event_id]))
        if event_id not in stored or stored[event_id].room_id != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event in this room")
        return await self._db.read(
            lambda c: events_repo.load_state_group(c, stored[event_id].state_before))

    async def _with_chains(self, ids: Iterable[str]) -> dict[str, Event]:
        out: dict[str, Event] = {}
        todo = set(ids)
        while todo:
            found = await self._cache.events(todo)
            out.update(found)
            todo = {a for e in found.values() for a in e.auth_events if a not in out}
        return out

    async def state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        await self._check_in_room(origin, room_id)
        state = await self._state_before(room_id, event_id)
        events = await self._with_chains(state.values())
        chain = auth_chain_of(list(state.values()), events)
        return {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(chain)}

    async def state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        await self._check_in_room(origin, room_id)
        state = await self._state_before(room_id, event_id)
        events = await self._with_chains(state.values())
        chain = auth_chain_of(list(state.values()), events)
        return {"pdus": [dict(events[e].pdu) for e in sorted(state.values()) if e in events],
                "auth_chain": [dict(events[e].pdu) for e in sorted(chain) if e in events]}

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        await self._check_in_room(origin, room_id)
        events = await self._with_chains([event_id])
        if event_id not in events or events[event_id].room_id != room_id:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown event in this room")
        chain = auth_chain_of([event_id], events)
        return {"auth_chain": [dict(events[e].pdu) for e in sorted(chain)]}

    async def backfill(self, origin: str, room_id: str, from_ids: list[str], limit: int
                       ) -> dict[str, Any]:
        """Up to `limit` events preceding (and including) `from_ids`, newest first."""
        await self._check_in_room(origin, room_id)
        limit = max(1, min(limit, MAX_BACKFILL))
        picked = await self._walk_back(room_id, from_ids, limit, stop=set())
        picked.sort(key=lambda e: (-e.depth, e.event_id))
        return self._envelope(await self._for_server(origin, picked))

    async def missing_events(self, origin: str, room_id: str, earliest: list[str],
                             latest: list[str], limit: int, min_depth: int) -> dict[str, Any]:
        """Events between `earliest` (excluded) and `latest` (excluded), oldest first."""
        await self._check_in_room(origin, room_id)
        limit = max(1, min(limit, MAX_MISSING))
        start = await self._cache.events(latest)
        prevs = [p for e in start.values() if e.room_id == room_id for p in e.prev_events]
        picked = await self._walk_back(room_id, prevs, limit, stop=set(earliest) | set(latest),
                                       min_depth=min_depth)
        picked.sort(key=lambda e: (e.depth, e.event_id))
        return {"events": await self._for_server(origin, picked)}

    async def _walk_back(self, room_id: str, start: list[str], limit: int, *,
                         stop: set[str], min_depth: int = 0) -> list[Event]:
        seen: set[str] = set()
        frontier = [e for e in start if e not in stop]
        picked: list[Event] = []
        while frontier and len(picked) < limit:
            found = await self._cache.events(frontier)
            nxt: list[str] = []
            for event_id in frontier:
                event = found.get(event_id)
                if event is None or event_id in seen or event.room_id != room_id or \
                        event.depth < min_depth:
                    continue
                seen.add(event_id)
                picked.append(event)
                if len(picked) >= limit:
                    break
                nxt.extend(p for p in event.prev_events if p not in seen and p not in stop)
            frontier = nxt
        return picked
