"""Server-side search (Client-Server API "Server Side Search" module, POST /search).

Only `room_events` is a search category. The index (storage/repositories/search.py) is written
in the transaction that stores each event, so it never lags the timeline; events stored before
it existed are indexed by `run`, a start-up task. Results come only from rooms the user is or
was in, and each candidate passes the history-visibility rules before it is returned.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import apsw
import trio
import trio.lowlevel

from trioserver.errors import Codes, MatrixError
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.reads import EventFilter, RoomReader, make_token
from trioserver.services.rooms.visibility import visible_events
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import search as search_repo

log = logging.getLogger(__name__)

MAX_LIMIT = 100
SCAN_BUDGET = 2000  # candidates examined per request before answering with a next_batch
BACKFILL_BATCH = 500
_WORD = re.compile(r"\w+", re.UNICODE)
_PHRASE = re.compile(r'"([^"]*)"')


@dataclass(frozen=True)
class SearchRequest:
    search_term: str
    keys: list[str]
    event_filter: EventFilter
    rooms: list[str] | None = None
    not_rooms: list[str] = field(default_factory=list)
    order_by: str = "rank"  # or "recent"
    before_limit: int | None = None  # None: no event_context
    after_limit: int = 5
    include_profile: bool = False
    include_state: bool = False
    groupings: list[str] = field(default_factory=list)
    next_batch: str | None = None


def fts_query(term: str) -> tuple[str, list[str]]:
    """The user's term as a safe FTS5 expression, and the words to highlight.

    User input is never FTS5 syntax: "quoted text" is a phrase and every other word a prefix
    match, all of them required; operators and punctuation (AND, *, unbalanced quotes) are
    plain words or dropped.
    """
    parts: list[str] = []
    words: list[str] = []
    for phrase in _PHRASE.findall(term):
        tokens = _WORD.findall(phrase)
        if tokens:
            parts.append('"' + " ".join(tokens) + '"')
            words.extend(tokens)
    for token in _WORD.findall(_PHRASE.sub(" ", term)):
        parts.append(f'"{token}"*')
        words.append(token)
    return " ".join(parts), list(dict.fromkeys(w.lower() for w in words))


def _highlights(words: list[str], texts: list[str]) -> list[str]:
    """The words in the results that the term matched (prefix matches included)."""
    found = set(words)
    for text in texts:
        for token in _WORD.findall(text):
            lowered = token.lower()
            if any(lowered.startswith(w) for w in words):
                found.add(token)
    return sorted(found)


def _parse_batch(token: str | None, order_by: str) -> int | None:
    if token is None:
        return None
    prefix = "r" if order_by == "rank" else "s"
    body = token[1:]
    if not token.startswith(prefix) or not body.lstrip("-").isdigit() or len(token) > 21:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid next_batch")
    return int(body)


class Search:
    def __init__(self, db: Database, cache: RoomCache, reader: RoomReader) -> None:
        self._db = db
        self._cache = cache
        self._reader = reader
        self.backfill_done = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Index events stored before the index existed, a batch per write, then return."""
        task_status.started()
        total = 0
        while (done := await self._db.write(
                lambda c: search_repo.backfill_batch(c, BACKFILL_BATCH))):
            total += done
            await trio.lowlevel.checkpoint()  # let requests' writes in between batches
        if total:
            log.info("search index: indexed %d stored events", total)
        self.backfill_done.set()

    async def search(self, user_id: str, req: SearchRequest) -> dict[str, Any]:
        match, words = fts_query(req.search_term)
        keys = [k for k in req.keys if k in search_repo.KEY_TYPES]
        empty: dict[str, Any] = {"count": 0, "highlights": [], "results": []}
        if not match or not keys:
            return {"search_categories": {"room_events": empty}}
        rooms = await self._db.read(lambda c: search_repo.rooms_ever_joined(c, user_id))
        if req.rooms is not None:
            rooms = [r for r in rooms if r in set(req.rooms)]
        rooms = [r for r in rooms if r not in set(req.not_rooms)]
        flt = req.event_filter
        query = search_repo.Query(match, rooms, keys, flt.senders, flt.not_senders)
        limit = max(1, min(flt.limit, MAX_LIMIT))
        position = _parse_batch(req.next_batch, req.order_by)
        stored, next_position, total = await self._db.read(
            lambda c: self._collect(c, user_id, query, flt, req.order_by, position, limit))
        parsed = await self._cache.events(s.event_id for s, _ in stored)
        events = await self._reader.format([parsed[s.event_id] for s, _ in stored],
                                           user_id=user_id)
        results: list[dict[str, Any]] = []
        for (hit_stored, rank), event in zip(stored, events, strict=True):
            item: dict[str, Any] = {"rank": rank, "result": event}
            if req.before_limit is not None:
                item["context"] = await self._context(user_id, hit_stored, req)
            results.append(item)
        texts = [found[1] for s, _ in stored
                 if (found := search_repo.searchable_text(str(s.pdu.get("type")), s.pdu))]
        out: dict[str, Any] = {"count": total, "highlights": _highlights(words, texts),
                               "results": results}
        if next_position is not None:
            prefix = "r" if req.order_by == "rank" else "s"
            out["next_batch"] = f"{prefix}{next_position}"
        if req.include_state:
            out["state"] = {room: await self._reader.state(user_id, room)
                            for room in dict.fromkeys(s.room_id for s, _ in stored)}
        if req.groupings:
            out["groups"] = _groups(req.groupings, results, out.get("next_batch"))
        return {"search_categories": {"room_events": out}}

    @staticmethod
    def _collect(conn: apsw.Connection, user_id: str, query: search_repo.Query,
                 flt: EventFilter, order_by: str, position: int | None, limit: int
                 ) -> tuple[list[tuple[events_repo.StoredEvent, float]], int | None, int]:
        """Visible matches from `position` on (one read transaction), the position to continue
        from (None: no more) and the count of matches in the user's rooms."""
        total = search_repo.count(conn, query) if position is None else 0
        found: list[tuple[events_repo.StoredEvent, float]] = []
        offset = position or 0
        before = position
        scanned = 0
        while scanned < SCAN_BUDGET:
            batch_size = min(max(limit * 2, 20), SCAN_BUDGET - scanned)
            if order_by == "rank":
                hits = search_repo.search_by_rank(conn, query, offset, batch_size)
            else:
                hits = search_repo.search_by_recent(conn, query, before, batch_size)
            scanned += len(hits)
            stored = events_repo.get_events(conn, [h.event_id for h in hits])
            visible: set[str] = set()
            for room in dict.fromkeys(h.room_id for h in hits):
                in_room = [stored[h.event_id] for h in hits
                           if h.room_id == room and h.event_id in stored]
                visible.update(s.event_id for s in visible_events(conn, user_id, room, in_room))
            for hit in hits:
                offset += 1
                before = hit.stream_ordering
                if hit.event_id in visible and flt.matches_type_and_sender(
                        str(stored[hit.event_id].pdu.get("type")), None):
                    found.append((stored[hit.event_id], hit.rank))
                    if len(found) == limit:
                        return found, offset if order_by == "rank" else before, total
            if len(hits) < batch_size:
                return found, None, total
        return found, offset if order_by == "rank" else before, total

    async def _context(self, user_id: str, stored: events_repo.StoredEvent,
                       req: SearchRequest) -> dict[str, Any]:
        room_id, ordering = stored.room_id, stored.stream_ordering
        floor = make_token(-(2**62))  # a bound: context never fetches history remotely
        before = await self._reader.messages(
            user_id, room_id, from_token=make_token(ordering - 1), to_token=floor,
            backwards=True, event_filter=EventFilter(limit=req.before_limit or 0))
        after = await self._reader.messages(
            user_id, room_id, from_token=make_token(ordering), to_token=None,
            backwards=False, event_filter=EventFilter(limit=req.after_limit))
        context: dict[str, Any] = {
            "events_before": before["chunk"], "events_after": after["chunk"],
            "start": before.get("end", before["start"]), "end": after.get("end", after["start"]),
        }
        if req.include_profile:
            senders = {e["sender"] for e in (*before["chunk"], *after["chunk"])}
            senders.add(str(stored.pdu.get("sender", "")))
            context["profile_info"] = await self._db.read(
                lambda c: _profiles(c, stored.state_after, senders))
        return context


def _profiles(conn: apsw.Connection, state_group: int, senders: set[str]
              ) -> dict[str, dict[str, str]]:
    """Display names and avatars of `senders` from their member events in a state group."""
    member_ids = {s: events_repo.state_group_value(conn, state_group, "m.room.member", s)
                  for s in senders}
    found = events_repo.get_events(conn, [e for e in member_ids.values() if e is not None])
    out: dict[str, dict[str, str]] = {}
    for sender, event_id in member_ids.items():
        content = found[event_id].pdu.get("content") if event_id in found else None
        if isinstance(content, dict):
            out[sender] = {name: content[key] for name, key in
                           (("displayname", "displayname"), ("avatar_url", "avatar_url"))
                           if isinstance(content.get(key), str)}
    return out


def _groups(groupings: list[str], results: list[dict[str, Any]], next_batch: str | None
            ) -> dict[str, Any]:
    """groups: for each grouping key, its values in order of their best result."""
    groups: dict[str, Any] = {}
    for key in groupings:
        by_value: dict[str, dict[str, Any]] = {}
        for item in results:
            value = str(item["result"].get(key, ""))
            group = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
            group["results"].append(item["result"]["event_id"])
        if next_batch is not None:
            for group in by_value.values():
                group["next_batch"] = next_batch
        groups[key] = by_value
    return groups
