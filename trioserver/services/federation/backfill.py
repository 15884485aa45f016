"""Fetching a room's older history from the other servers in it (`/backfill`).

A room joined over federation starts, here, at our join. When a client paginates back past the
oldest event we hold and that event's prev_events are unknown, we ask the other servers for the
events before it. Each one must pass the PDU checks and the auth rules against its own auth
events; accepted ones are stored below position 0 (oldest lowest), so /messages reads them as
ordinary history and /sync never sees them as new. Their state is taken to be the state before
our oldest event (we do not fetch the state at each historical event).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

import apsw

from trioserver.services.events import auth_rules
from trioserver.services.events.auth_events import check_auth_events
from trioserver.services.events.auth_numbers import AuthError
from trioserver.services.events.event import Event
from trioserver.services.events.room_versions import RoomVersion
from trioserver.services.federation.joins import FederationRequests
from trioserver.services.federation.pdus import PduError, VerifyKeys, check_pdu
from trioserver.services.federation.room_servers import RoomServers
from trioserver.services.rooms.cache import RoomCache
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo

log = logging.getLogger(__name__)

BATCH = 50
RETRY_AFTER_S = 30.0  # after a fruitless attempt, do not ask again for a while


class Backfiller:
    def __init__(self, server_name: str, db: Database, cache: RoomCache, servers: RoomServers,
                 client: FederationRequests, keys: VerifyKeys) -> None:
        self._server_name = server_name
        self._db = db
        self._cache = cache
        self._servers = servers
        self._client = client
        self._keys = keys
        self._quiet_until: dict[str, float] = {}

    async def backfill(self, room_id: str) -> int:
        """Fetch history older than what we hold; the number of events added."""
        if time.monotonic() < self._quiet_until.get(room_id, 0.0):
            return 0
        view = await self._cache.room(room_id)
        oldest = await self._db.read(lambda c: events_repo.oldest_event(c, room_id))
        if view is None or oldest is None:
            return 0
        raw_prevs = oldest.pdu.get("prev_events")
        prevs = [p for p in raw_prevs if isinstance(p, str)] if isinstance(raw_prevs, list) \
            else []
        known = await self._db.read(lambda c: events_repo.get_events(c, prevs))
        if not prevs or all(p in known for p in prevs):
            return 0  # the room's beginning, or nothing missing
        added = 0
        for server in sorted(await self._servers.of(room_id)):
            if server == self._server_name:
                continue
            try:
                response = await self._client.get_json(
                    server, f"/_matrix/federation/v1/backfill/{quote(room_id, safe='')}",
                    query={"v": [oldest.event_id], "limit": str(BATCH)})
            except Exception as e:  # an unreachable server: try the next one
                log.info("backfill of %s from %s failed: %s", room_id, server, e)
                continue
            pdus = response.get("pdus") if isinstance(response, dict) else None
            if isinstance(pdus, list):
                added = await self._store(view.room_version, room_id, oldest, pdus)
                break
        if not added:
            self._quiet_until[room_id] = time.monotonic() + RETRY_AFTER_S
        return added

    async def _store(self, version: RoomVersion, room_id: str,
                     oldest: events_repo.StoredEvent, pdus: list[object]) -> int:
        checked: dict[str, Event] = {}
        for pdu in pdus:
            try:
                event = await check_pdu(pdu, version, self._keys)
            except PduError as e:
                log.info("backfilled event refused: %s", e)
                continue
            if event.room_id == room_id:
                checked[event.event_id] = event
        known = await self._db.read(lambda c: events_repo.get_events(c, list(checked)))
        view = await self._cache.room(room_id)
        assert view is not None
        create = (await self._cache.events([view.create_event_id])).get(view.create_event_id)
        accepted: list[Event] = []
        for event in sorted(checked.values(), key=lambda e: (e.depth, e.event_id)):
            if event.event_id in known:
                continue
            auth = await self._cache.events(event.auth_events)
            pending = {e.event_id: e for e in accepted}
            try:
                auth_state = check_auth_events(
                    event, [*auth.values(), *(pending[a] for a in event.auth_events
                                              if a in pending)], create_event=create)
                auth_rules.check_event(event, auth_state, create)
            except (AuthError, ValueError) as e:
                log.info("backfilled event %s rejected: %s", event.event_id, e)
                continue
            accepted.append(event)
        if not accepted:
            return 0
        newest_first = sorted(accepted, key=lambda e: (-e.depth, e.event_id))

        def write(conn: apsw.Connection) -> None:
            position = min(events_repo.min_stream_ordering(conn), 0)
            for event in newest_first:
                position -= 1
                events_repo.insert_backfilled_event(
                    conn, position, event.event_id, room_id, event.type, event.state_key,
                    event.sender, event.depth, event.origin_server_ts, oldest.state_before,
                    dict(event.pdu))
                if event.redacts is not None:
                    events_repo.add_redaction(conn, event.redacts, event.event_id)

        await self._db.write(write)
        for event in accepted:
            self._cache.put_event(event)
        return len(accepted)
