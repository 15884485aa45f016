"""event_search, event_search_fts: the full-text index of message bodies, names and topics."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import msgpack

# The event type whose content field each search key indexes.
KEY_TYPES = {"content.body": "m.room.message", "content.name": "m.room.name",
             "content.topic": "m.room.topic"}
_TYPE_KEYS = {t: (k, k.removeprefix("content.")) for k, t in KEY_TYPES.items()}
MAX_TEXT = 65_536


@dataclass(frozen=True)
class Hit:
    stream_ordering: int
    event_id: str
    room_id: str
    rank: float  # higher is better (negated bm25)


@dataclass(frozen=True)
class Query:
    """What to match: an FTS5 expression built by the service (never the user's raw text)."""

    match: str
    rooms: Sequence[str]
    keys: Sequence[str]
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()


def searchable_text(event_type: str, pdu: Mapping[str, object]) -> tuple[str, str] | None:
    """(key, text) of an event the index holds, or None. Encrypted events have no plaintext
    body (m.room.encrypted is not an indexed type), and non-string fields are skipped."""
    found = _TYPE_KEYS.get(event_type)
    content = pdu.get("content")
    if found is None or not isinstance(content, dict):
        return None
    # Messages are not state; names and topics only count as the room's state.
    if pdu.get("state_key") != (None if event_type == "m.room.message" else ""):
        return None
    text = content.get(found[1])
    if not isinstance(text, str) or not text.strip():
        return None
    return found[0], text[:MAX_TEXT]


def index_event(conn: apsw.Connection, stream_ordering: int, event_id: str, room_id: str,
                event_type: str, sender: str, origin_server_ts: int,
                pdu: Mapping[str, object]) -> None:
    """Index one event if it has searchable text (called inside the write storing it)."""
    found = searchable_text(event_type, pdu)
    if found is None:
        return
    conn.execute(
        "INSERT OR IGNORE INTO event_search (stream_ordering, event_id, room_id, sender, type,"
        " key, origin_server_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (stream_ordering, event_id, room_id, sender, event_type, found[0], origin_server_ts))
    if conn.changes() == 1:  # not already indexed (by the backfill or an earlier write)
        conn.execute("INSERT INTO event_search_fts (rowid, text) VALUES (?, ?)",
                     (stream_ordering, found[1]))


def unindex_event(conn: apsw.Connection, event_id: str) -> None:
    """A redacted event leaves the index."""
    row = conn.execute("DELETE FROM event_search WHERE event_id = ? RETURNING stream_ordering",
                       (event_id,)).fetchone()
    if row is not None:
        conn.execute("DELETE FROM event_search_fts WHERE rowid = ?", (row[0],))


# -- backfill of events stored before the index existed ----------------------------------


def backfill_position(conn: apsw.Connection) -> int | None:
    row = conn.execute("SELECT upto FROM search_backfill WHERE id = 1").fetchone()
    return None if row is None else int(row[0])


def backfill_batch(conn: apsw.Connection, limit: int) -> int:
    """Index up to `limit` stored events at or below the backfill position, newest first,
    and move the position past them. Returns how many were examined (0: done)."""
    upto = backfill_position(conn)
    if upto is None:
        return 0
    rows: list[Any] = conn.execute(
        "SELECT stream_ordering, event_id, room_id, type, sender, origin_server_ts, pdu"
        " FROM events WHERE stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT ?",
        (upto, limit)).fetchall()
    for ordering, event_id, room_id, event_type, sender, ts, blob in rows:
        if event_type in _TYPE_KEYS:
            pdu = msgpack.unpackb(bytes(blob), raw=False, strict_map_key=False)
            index_event(conn, int(ordering), str(event_id), str(room_id), str(event_type),
                        str(sender), int(ts), pdu)
    if len(rows) < limit:
        conn.execute("DELETE FROM search_backfill WHERE id = 1")
    else:
        conn.execute("UPDATE search_backfill SET upto = ? WHERE id = 1",
                     (int(rows[-1][0]) - 1,))
    return len(rows)


# -- queries ---------------------------------------------------------------------------------


def _where(query: Query) -> tuple[str, list[object]]:
    clauses = ["event_search_fts MATCH ?",
               "s.room_id IN (SELECT value FROM json_each(?))",
               "s.key IN (SELECT value FROM json_each(?))"]
    params: list[object] = [query.match, json.dumps(list(query.rooms)),
                            json.dumps(list(query.keys))]
    if query.senders is not None:
        clauses.append("s.sender IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(query.senders)))
    if query.not_senders:
        clauses.append("s.sender NOT IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(query.not_senders)))
    return " AND ".join(clauses), params


_FROM = "event_search_fts JOIN event_search s ON s.stream_ordering = event_search_fts.rowid"


def search_by_rank(conn: apsw.Connection, query: Query, offset: int, limit: int
                   ) -> list[Hit]:
    """Matches, best first (bm25; ties newest first), skipping `offset`."""
    where, params = _where(query)
    rows: list[Any] = conn.execute(
        f"SELECT s.stream_ordering, s.event_id, s.room_id, bm25(event_search_fts) AS r"
        f" FROM {_FROM} WHERE {where} ORDER BY r, s.stream_ordering DESC LIMIT ? OFFSET ?",
        (*params, limit, offset)).fetchall()
    return [Hit(int(o), str(e), str(r), -float(b)) for o, e, r, b in rows]


def search_by_recent(conn: apsw.Connection, query: Query, before: int | None, limit: int
                     ) -> list[Hit]:
    """Matches newest first, below stream ordering `before`."""
    where, params = _where(query)
    if before is not None:
        where += " AND s.stream_ordering < ?"
        params.append(before)
    rows: list[Any] = conn.execute(
        f"SELECT s.stream_ordering, s.event_id, s.room_id, bm25(event_search_fts)"
        f" FROM {_FROM} WHERE {where} ORDER BY s.stream_ordering DESC LIMIT ?",
        (*params, limit)).fetchall()
    return [Hit(int(o), str(e), str(r), -float(b)) for o, e, r, b in rows]


def count(conn: apsw.Connection, query: Query) -> int:
    where, params = _where(query)
    row = conn.execute(f"SELECT count(*) FROM {_FROM} WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def rooms_ever_joined(conn: apsw.Connection, user_id: str) -> list[str]:
    """Rooms the user is or was a member of (current membership join, leave or ban)."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT room_id FROM current_state WHERE type = 'm.room.member'"
        " AND state_key = ? AND membership IN ('join', 'leave', 'ban')", (user_id,))]
