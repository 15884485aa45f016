"""event_relations: which event relates to which (threads, edits, references, reactions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import apsw

MAX_RECURSION = 3  # spec: servers SHOULD traverse at least 3 levels


@dataclass(frozen=True)
class Relation:
    event_id: str
    relates_to: str
    rel_type: str
    sender: str
    type: str
    origin_server_ts: int
    stream_ordering: int


def _relates_to(pdu: Mapping[str, object]) -> tuple[str, str, str | None] | None:
    content = pdu.get("content")
    if not isinstance(content, Mapping):
        return None
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return None
    rel_type, parent, key = relates.get("rel_type"), relates.get("event_id"), relates.get("key")
    if not isinstance(rel_type, str) or not isinstance(parent, str):
        return None
    return rel_type, parent, key if isinstance(key, str) else None


def record(conn: apsw.Connection, stream_ordering: int, event_id: str, room_id: str,
           pdu: Mapping[str, object]) -> None:
    """Index the event's relation, if it has one (called wherever events are inserted)."""
    found = _relates_to(pdu)
    if found is None or pdu.get("state_key") is not None:
        return
    rel_type, parent, key = found
    ts = pdu.get("origin_server_ts")
    conn.execute(
        "INSERT OR IGNORE INTO event_relations (event_id, room_id, relates_to, rel_type, sender,"
        " type, aggregation_key, origin_server_ts, stream_ordering)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event_id, room_id, parent, rel_type, str(pdu.get("sender", "")),
         str(pdu.get("type", "")), key, ts if isinstance(ts, int) else 0, stream_ordering))


_COLS = ("r.event_id, r.relates_to, r.rel_type, r.sender, r.type, r.origin_server_ts,"
         " r.stream_ordering")
_NOT_REDACTED = "NOT EXISTS (SELECT 1 FROM redactions x WHERE x.redacts = r.event_id)"


def _relation(row: Sequence[object]) -> Relation:
    return Relation(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]),
                    int(row[5]), int(row[6]))  # type: ignore[call-overload]


def children(conn: apsw.Connection, room_id: str, parent: str, *, rel_type: str | None,
             event_type: str | None, after: int, before: int, backwards: bool, limit: int,
             recurse: bool) -> list[Relation]:
    """Relations of `parent` (directly, or up to MAX_RECURSION levels deep) with
    after < stream_ordering < before, newest first if `backwards`; redacted ones left out
    (redaction strips `m.relates_to`)."""
    order = "DESC" if backwards else "ASC"
    depth = MAX_RECURSION if recurse else 1
    sql = (
        "WITH RECURSIVE tree(event_id, depth) AS ("
        " SELECT event_id, 1 FROM event_relations WHERE relates_to = ? AND room_id = ?"
        " UNION SELECT c.event_id, t.depth + 1 FROM event_relations c"
        " JOIN tree t ON c.relates_to = t.event_id WHERE t.depth < ? AND c.room_id = ?)"
        f" SELECT DISTINCT {_COLS} FROM tree JOIN event_relations r ON r.event_id = tree.event_id"
        f" WHERE r.stream_ordering > ? AND r.stream_ordering < ? AND {_NOT_REDACTED}"
        " AND (? IS NULL OR r.rel_type = ?) AND (? IS NULL OR r.type = ?)"
        f" ORDER BY r.stream_ordering {order} LIMIT ?")
    rows = conn.execute(sql, (parent, room_id, depth, room_id, after, before, rel_type,
                              rel_type, event_type, event_type, limit))
    return [_relation(r) for r in rows]


def has_annotation(conn: apsw.Connection, parent: str, sender: str, event_type: str,
                   key: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM event_relations r WHERE relates_to = ? AND rel_type = 'm.annotation'"
        f" AND sender = ? AND type = ? AND aggregation_key = ? AND {_NOT_REDACTED} LIMIT 1",
        (parent, sender, event_type, key)).fetchone()
    return row is not None


@dataclass(frozen=True)
class ThreadRow:
    root_id: str
    latest_ordering: int


def threads(conn: apsw.Connection, room_id: str, *, before: int, participant: str | None,
            limit: int) -> list[ThreadRow]:
    """Thread roots of a room (that we hold) by latest activity, newest first, whose latest
    reply is below `before`; with `participant`, only threads that user started or replied
    to."""
    rows = conn.execute(
        "SELECT r.relates_to, max(r.stream_ordering) AS latest FROM event_relations r"
        " JOIN events e ON e.event_id = r.relates_to AND e.room_id = r.room_id"
        f" WHERE r.room_id = ? AND r.rel_type = 'm.thread' AND {_NOT_REDACTED}"
        " GROUP BY r.relates_to HAVING latest < ?"
        " AND (? IS NULL OR max(e.sender = ?) OR max(r.sender = ?))"
        " ORDER BY latest DESC LIMIT ?",
        (room_id, before, participant, participant, participant, limit))
    return [ThreadRow(str(r[0]), int(r[1])) for r in rows]


@dataclass(frozen=True)
class ThreadSummary:
    count: int
    latest_event_id: str
    participated: bool


@dataclass(frozen=True)
class Aggregations:
    threads: dict[str, ThreadSummary]
    edits: dict[str, list[Relation]]  # parent -> its m.replace relations, oldest first
    references: dict[str, list[str]]  # parent -> referencing event IDs, oldest first


def aggregations(conn: apsw.Connection, parents: Sequence[str], user_id: str | None
                 ) -> Aggregations:
    """What bundled aggregations need for `parents`, in three indexed queries."""
    result = Aggregations({}, {}, {})
    if not parents:
        return result
    marks = ",".join("?" * len(parents))
    for parent, count, latest, mine in conn.execute(
            "SELECT r.relates_to, count(*), max(r.stream_ordering), max(r.sender = ?)"
            f" FROM event_relations r WHERE r.relates_to IN ({marks})"
            f" AND r.rel_type = 'm.thread' AND {_NOT_REDACTED} GROUP BY r.relates_to",
            (user_id, *parents)):
        row = conn.execute("SELECT event_id FROM event_relations WHERE relates_to = ? AND"
                           " rel_type = 'm.thread' AND stream_ordering = ?",
                           (parent, latest)).fetchone()
        if row is not None:
            result.threads[str(parent)] = ThreadSummary(int(count), str(row[0]), bool(mine))
    for row in conn.execute(
            f"SELECT {_COLS} FROM event_relations r WHERE r.relates_to IN ({marks})"
            f" AND r.rel_type IN ('m.replace', 'm.reference') AND {_NOT_REDACTED}"
            " ORDER BY r.origin_server_ts, r.event_id", tuple(parents)):
        rel = _relation(row)
        if rel.rel_type == "m.replace":
            result.edits.setdefault(rel.relates_to, []).append(rel)
        else:
            result.references.setdefault(rel.relates_to, []).append(rel.event_id)
    return result
