"""Relations and threads (spec "Relationships", "Threading", "Reactions"): /relations,
/threads, and refusing duplicate annotations.

Pagination tokens are room positions ("t12", as /messages): `from` is exclusive, so the
`next_batch` of a page is the position of its last row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.errors import MatrixError, not_found
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.reads import MAX_LIMIT, RoomReader, make_token, parse_token
from trioserver.services.rooms.visibility import Visibility
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import relations as relations_repo

TOP = 2**62
BOTTOM = -(2**62) - 1


@dataclass(frozen=True)
class RelationsQuery:
    rel_type: str | None = None
    event_type: str | None = None
    from_token: str | None = None
    to_token: str | None = None
    limit: int = 50
    backwards: bool = True
    recurse: bool | None = None  # None: the client did not ask (no recursion_depth answered)


class Relations:
    def __init__(self, db: Database, cache: RoomCache, reader: RoomReader) -> None:
        self._db = db
        self._cache = cache
        self._reader = reader
        self._visibility = Visibility(db)

    async def _require_visible(self, user_id: str, room_id: str, event_id: str) -> None:
        stored = await self._db.read(lambda c: events_repo.get_events(c, [event_id]))
        s = stored.get(event_id)
        if s is None or s.room_id != room_id or \
                not await self._visibility.filter(user_id, room_id, [s]):
            raise not_found("Event not found")

    async def _visible(self, user_id: str, room_id: str, event_ids: list[str]) -> list[str]:
        """The IDs (order kept) of the events the user may see."""
        stored = await self._db.read(lambda c: events_repo.get_events(c, event_ids))
        ordered = [stored[e] for e in event_ids if e in stored]
        return [s.event_id for s in await self._visibility.filter(user_id, room_id, ordered)]

    async def relations(self, user_id: str, room_id: str, event_id: str,
                        query: RelationsQuery) -> dict[str, Any]:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
        await self._require_visible(user_id, room_id, event_id)
        limit = max(1, min(query.limit, MAX_LIMIT))
        start = parse_token(query.from_token) if query.from_token is not None else None
        bound = parse_token(query.to_token) if query.to_token is not None else None
        if query.backwards:
            after = bound if bound is not None else BOTTOM
            before = start if start is not None else TOP
        else:
            after = start if start is not None else BOTTOM
            before = bound if bound is not None else TOP

        def txn(conn: apsw.Connection) -> list[relations_repo.Relation]:
            return relations_repo.children(
                conn, room_id, event_id, rel_type=query.rel_type, event_type=query.event_type,
                after=after, before=before, backwards=query.backwards, limit=limit,
                recurse=bool(query.recurse))

        rows = await self._db.read(txn)
        visible = await self._visible(user_id, room_id, [r.event_id for r in rows])
        events = await self._cache.events(visible)
        out: dict[str, Any] = {
            "chunk": await self._reader.format([events[e] for e in visible if e in events],
                                               user_id=user_id)}
        if len(rows) == limit:
            out["next_batch"] = make_token(rows[-1].stream_ordering)
        if query.from_token is not None:
            out["prev_batch"] = query.from_token
        if query.recurse is not None:
            out["recursion_depth"] = relations_repo.MAX_RECURSION if query.recurse else 1
        return out

    async def threads(self, user_id: str, room_id: str, *, participated: bool,
                      from_token: str | None, limit: int) -> dict[str, Any]:
        """GET /_matrix/client/v1/rooms/{roomId}/threads: roots by latest activity."""
        view = await self._cache.room(room_id)
        if view is None:
            raise not_found("Unknown room")
        await self._reader.require_history_access(view, user_id)
        limit = max(1, min(limit, MAX_LIMIT))
        before = parse_token(from_token) if from_token is not None else TOP

        def txn(conn: apsw.Connection) -> list[relations_repo.ThreadRow]:
            return relations_repo.threads(conn, room_id, before=before,
                                          participant=user_id if participated else None,
                                          limit=limit)

        rows = await self._db.read(txn)
        visible = await self._visible(user_id, room_id, [r.root_id for r in rows])
        events = await self._cache.events(visible)
        out: dict[str, Any] = {
            "chunk": await self._reader.format([events[e] for e in visible if e in events],
                                               user_id=user_id)}
        if len(rows) == limit:
            out["next_batch"] = make_token(rows[-1].latest_ordering)
        return out

    async def check_annotation(self, sender: str, event_type: str,
                               content: Mapping[str, Any]) -> None:
        """As Synapse: one reaction per sender, parent, type and key."""
        relates = content.get("m.relates_to")
        if not isinstance(relates, Mapping) or relates.get("rel_type") != "m.annotation":
            return
        parent, key = relates.get("event_id"), relates.get("key")
        if not isinstance(parent, str) or not isinstance(key, str):
            return
        if await self._db.read(lambda c: relations_repo.has_annotation(
                c, parent, sender, event_type, key)):
            raise MatrixError(400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice")
