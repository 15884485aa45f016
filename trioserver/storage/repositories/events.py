"""events, state groups, current state, forward extremities, redactions, txn ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import apsw
import msgpack

from trioserver.storage.repositories import relations as relations_repo
from trioserver.storage.repositories import search as search_repo

StateMap = dict[tuple[str, str], str]  # (type, state_key) -> event_id

# A new state group is a full snapshot once its delta chain would exceed the state's size
# (but deltas are always allowed up to this length): linear storage, O(state) reads.
MIN_CHAIN_BEFORE_SNAPSHOT = 32


@dataclass(frozen=True)
class StoredEvent:
    stream_ordering: int
    event_id: str
    room_id: str
    pdu: dict[str, object]
    state_before: int
    state_after: int


def encode_pdu(pdu: Mapping[str, object]) -> bytes:
    packed: bytes = msgpack.packb(pdu, use_bin_type=True)
    return packed


def decode_pdu(blob: bytes) -> dict[str, object]:
    value = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    assert isinstance(value, dict)
    return value


# -- state groups ------------------------------------------------------------------------


def create_state_group(
    conn: apsw.Connection,
    room_id: str,
    prev_group: int | None,
    delta: Mapping[tuple[str, str], str],
    state_size: int,
    full_state: Callable[[], Mapping[tuple[str, str], str]],
) -> int:
    """Store a new state group: `delta` on top of `prev_group`, or a full snapshot.

    A snapshot is taken when the delta chain would grow longer than the state itself (with a
    floor of MIN_CHAIN_BEFORE_SNAPSHOT): storage stays linear in the number of state changes and
    reading a group costs O(state size). `full_state` is only called for snapshots.
    """
    chain = 0
    if prev_group is not None:
        row = conn.execute("SELECT chain_length FROM state_groups WHERE id = ?",
                           (prev_group,)).fetchone()
        assert row is not None
        chain = int(row[0]) + 1
        if chain > max(MIN_CHAIN_BEFORE_SNAPSHOT, state_size):
            prev_group, chain = None, 0
    entries = delta if prev_group is not None else full_state()
    row = conn.execute(
        "INSERT INTO state_groups (room_id, prev_group, chain_length, state_size)"
        " VALUES (?, ?, ?, ?) RETURNING id", (room_id, prev_group, chain, state_size),
    ).fetchone()
    assert row is not None
    group = int(row[0])
    conn.executemany(
        "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
        " VALUES (?, ?, ?, ?)", [(group, t, k, e) for (t, k), e in entries.items()],
    )
    return group


# Both chain queries say CROSS JOIN: it makes SQLite walk the (short) chain and seek each
# group's entries by primary key. With a plain JOIN the planner may choose to scan every row of
# state_group_entries instead, which grows with the whole server's history.


def load_state_group(conn: apsw.Connection, group: int) -> StateMap:
    """The full state of a group: its snapshot with every delta of the chain applied."""
    rows = conn.execute(
        """
        WITH RECURSIVE chain(id, prev, lvl) AS (
            SELECT id, prev_group, 0 FROM state_groups WHERE id = ?
            UNION ALL
            SELECT g.id, g.prev_group, c.lvl + 1 FROM state_groups g JOIN chain c ON g.id = c.prev
        )
        SELECT e.type, e.state_key, e.event_id FROM chain c
        CROSS JOIN state_group_entries e ON e.state_group = c.id
        ORDER BY c.lvl DESC
        """,
        (group,),
    )
    state: StateMap = {}
    for event_type, state_key, event_id in rows:
        state[(event_type, state_key)] = event_id  # newer deltas (lower lvl) come last
    return state


def state_group_value(conn: apsw.Connection, group: int, event_type: str, state_key: str
                      ) -> str | None:
    """One entry of a group's state, without loading the rest of it."""
    row = conn.execute(
        """
        WITH RECURSIVE chain(id, prev, lvl) AS (
            SELECT id, prev_group, 0 FROM state_groups WHERE id = ?
            UNION ALL
            SELECT g.id, g.prev_group, c.lvl + 1 FROM state_groups g JOIN chain c ON g.id = c.prev
        )
        SELECT e.event_id FROM chain c CROSS JOIN state_group_entries e
        ON e.state_group = c.id AND e.type = ? AND e.state_key = ?
        ORDER BY c.lvl LIMIT 1
        """,
        (group, event_type, state_key),
    ).fetchone()
    return None if row is None else str(row[0])


# -- events ------------------------------------------------------------------------------


def insert_event(
    conn: apsw.Connection,
    event_id: str,
    room_id: str,
    event_type: str,
    state_key: str | None,
    sender: str,
    depth: int,
    origin_server_ts: int,
    state_before: int,
    state_after: int,
    pdu: Mapping[str, object],
) -> int:
    row = conn.execute(
        "INSERT INTO events (event_id, room_id, type, state_key, sender, depth,"
        " origin_server_ts, state_before, state_after, pdu)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING stream_ordering",
        (event_id, room_id, event_type, state_key, sender, depth, origin_server_ts,
         state_before, state_after, encode_pdu(pdu)),
    ).fetchone()
    assert row is not None
    relations_repo.record(conn, int(row[0]), event_id, room_id, pdu)
    search_repo.index_event(conn, int(row[0]), event_id, room_id, event_type, sender,
                            origin_server_ts, pdu)  # in the same transaction as the event
    return int(row[0])


def insert_backfilled_event(conn: apsw.Connection, stream_ordering: int, event_id: str,
                            room_id: str, event_type: str, state_key: str | None, sender: str,
                            depth: int, origin_server_ts: int, state_group: int,
                            pdu: Mapping[str, object]) -> None:
    """History from another server, at an explicit (negative) position below the room's
    oldest event."""
    conn.execute(
        "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender, depth,"
        " origin_server_ts, state_before, state_after, pdu)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (stream_ordering, event_id, room_id, event_type, state_key, sender, depth,
         origin_server_ts, state_group, state_group, encode_pdu(pdu)))
    relations_repo.record(conn, stream_ordering, event_id, room_id, pdu)
    search_repo.index_event(conn, stream_ordering, event_id, room_id, event_type, sender,
                            origin_server_ts, pdu)


def oldest_event(conn: apsw.Connection, room_id: str) -> StoredEvent | None:
    row = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE room_id = ?"
        " ORDER BY stream_ordering LIMIT 1", (room_id,)).fetchone()
    return None if row is None else _stored(row)


def min_stream_ordering(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT min(stream_ordering) FROM events").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


_EVENT_COLS = "stream_ordering, event_id, room_id, pdu, state_before, state_after"


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(int(row[0]), str(row[1]), str(row[2]), decode_pdu(bytes(row[3])),
                       int(row[4]), int(row[5]))


def get_events(conn: apsw.Connection, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    out: dict[str, StoredEvent] = {}
    for event_id in set(event_ids):
        row = conn.execute(f"SELECT {_EVENT_COLS} FROM events WHERE event_id = ?",
                           (event_id,)).fetchone()
        if row is not None:
            out[event_id] = _stored(row)
    return out


def room_events(
    conn: apsw.Connection, room_id: str, *, after: int | None, before: int | None,
    backwards: bool, limit: int,
) -> list[StoredEvent]:
    """Events of a room with after < stream_ordering < before, newest first if `backwards`."""
    order = "DESC" if backwards else "ASC"
    rows = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE room_id = ? AND stream_ordering > ?"
        f" AND stream_ordering < ? ORDER BY stream_ordering {order} LIMIT ?",
        (room_id, after if after is not None else -(2**62) - 1,
         before if before is not None else 2**62, limit),
    )
    return [_stored(r) for r in rows]


def state_events_of_key(conn: apsw.Connection, room_id: str, event_type: str, state_key: str
                        ) -> list[StoredEvent]:
    """Every event (oldest first) that set one state key, e.g. a user's membership history."""
    rows = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE room_id = ? AND type = ? AND state_key = ?"
        " ORDER BY stream_ordering", (room_id, event_type, state_key))
    return [_stored(r) for r in rows]


def stream_ordering_of(conn: apsw.Connection, event_id: str) -> int | None:
    row = conn.execute("SELECT stream_ordering FROM events WHERE event_id = ?",
                       (event_id,)).fetchone()
    return None if row is None else int(row[0])


def last_event_at_or_before(conn: apsw.Connection, room_id: str, position: int
                            ) -> StoredEvent | None:
    row = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE room_id = ? AND stream_ordering <= ?"
        " ORDER BY stream_ordering DESC LIMIT 1", (room_id, position)).fetchone()
    return None if row is None else _stored(row)


@dataclass(frozen=True)
class MembershipRow:
    room_id: str
    membership: str | None
    event_id: str
    stream_ordering: int


def user_memberships(conn: apsw.Connection, user_id: str) -> list[MembershipRow]:
    """The user's current membership in every room that has one."""
    rows = conn.execute(
        "SELECT c.room_id, c.membership, c.event_id, e.stream_ordering FROM current_state c"
        " JOIN events e ON e.event_id = c.event_id"
        " WHERE c.type = 'm.room.member' AND c.state_key = ?", (user_id,))
    return [MembershipRow(r[0], r[1], r[2], int(r[3])) for r in rows]


def rooms_with_events(conn: apsw.Connection, after: int, upto: int) -> set[str]:
    """Rooms that have events with after < stream_ordering <= upto (a range scan of the PK)."""
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT room_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?",
        (after, upto))}


def membership_changes(conn: apsw.Connection, user_id: str, after: int, upto: int
                       ) -> list[StoredEvent]:
    """The user's membership events with after < stream_ordering <= upto, oldest first."""
    rows = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE type = 'm.room.member' AND state_key = ?"
        " AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering",
        (user_id, after, upto))
    return [_stored(r) for r in rows]


def membership_at(conn: apsw.Connection, room_id: str, user_id: str, position: int
                  ) -> str | None:
    row = conn.execute(
        "SELECT pdu FROM events WHERE room_id = ? AND type = 'm.room.member' AND state_key = ?"
        " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
        (room_id, user_id, position)).fetchone()
    if row is None:
        return None
    content = decode_pdu(bytes(row[0])).get("content")
    value = content.get("membership") if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


def max_stream_ordering(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT max(stream_ordering) FROM events").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def event_closest_to_ts(conn: apsw.Connection, room_id: str, ts: int, forwards: bool
                        ) -> tuple[str, int] | None:
    if forwards:
        sql = ("SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND"
               " origin_server_ts >= ? ORDER BY origin_server_ts, stream_ordering LIMIT 1")
    else:
        sql = ("SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND"
               " origin_server_ts <= ? ORDER BY origin_server_ts DESC, stream_ordering DESC"
               " LIMIT 1")
    row = conn.execute(sql, (room_id, ts)).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


# -- outliers --------------------------------------------------------------------------------


def insert_outlier(conn: apsw.Connection, event_id: str, room_id: str,
                   pdu: Mapping[str, object]) -> None:
    conn.execute("INSERT OR IGNORE INTO outlier_events (event_id, room_id, pdu) VALUES (?, ?, ?)",
                 (event_id, room_id, encode_pdu(pdu)))


def get_outliers(conn: apsw.Connection, event_ids: Iterable[str]
                 ) -> dict[str, tuple[str, dict[str, object]]]:
    """event_id -> (room_id, pdu) of the outliers among `event_ids`."""
    out: dict[str, tuple[str, dict[str, object]]] = {}
    for event_id in event_ids:
        row = conn.execute("SELECT room_id, pdu FROM outlier_events WHERE event_id = ?",
                           (event_id,)).fetchone()
        if row is not None:
            out[event_id] = (str(row[0]), decode_pdu(row[1]))
    return out


def insert_soft_failed(conn: apsw.Connection, event_id: str, room_id: str,
                       pdu: Mapping[str, object], state_before: int, state_after: int) -> None:
    """A soft-failed event: its PDU as an outlier, its state groups for events built on it."""
    insert_outlier(conn, event_id, room_id, pdu)
    conn.execute("INSERT OR IGNORE INTO soft_failed_events (event_id, room_id, state_before,"
                 " state_after) VALUES (?, ?, ?, ?)", (event_id, room_id, state_before,
                                                      state_after))


def get_soft_failed(conn: apsw.Connection, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    """The soft-failed events among `event_ids`, as StoredEvents with no stream position (0):
    they are in no timeline."""
    out: dict[str, StoredEvent] = {}
    for event_id in event_ids:
        row = conn.execute(
            "SELECT s.room_id, s.state_before, s.state_after, o.pdu FROM soft_failed_events s"
            " JOIN outlier_events o ON o.event_id = s.event_id WHERE s.event_id = ?",
            (event_id,)).fetchone()
        if row is not None:
            out[event_id] = StoredEvent(0, event_id, str(row[0]), decode_pdu(row[3]),
                                        int(row[1]), int(row[2]))
    return out


# -- current state and extremities ---------------------------------------------------------


def set_current_state(conn: apsw.Connection, room_id: str, event_type: str, state_key: str,
                      event_id: str, membership: str | None) -> None:
    conn.execute(
        "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key)"
        " DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
        (room_id, event_type, state_key, event_id, membership),
    )


def delete_current_state(conn: apsw.Connection, room_id: str, event_type: str,
                         state_key: str) -> None:
    conn.execute("DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
                 (room_id, event_type, state_key))


def current_state_ids(conn: apsw.Connection, room_id: str) -> StateMap:
    return {(t, k): e for t, k, e in conn.execute(
        "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?", (room_id,))}


def rooms_with_membership(conn: apsw.Connection, user_id: str, membership: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT room_id FROM current_state WHERE type = 'm.room.member' AND state_key = ?"
        " AND membership = ? ORDER BY room_id", (user_id, membership))]


def members(conn: apsw.Connection, room_id: str) -> list[tuple[str, str, str]]:
    """(user_id, membership, event_id) of every member event in the current state."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT state_key, membership, event_id FROM current_state WHERE room_id = ? AND"
        " type = 'm.room.member' ORDER BY state_key", (room_id,))]


def users_sharing_rooms(conn: apsw.Connection, user_id: str) -> set[str]:
    """Everyone joined to at least one room the user is joined to (the user included)."""
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT b.state_key FROM current_state a JOIN current_state b"
        " ON b.room_id = a.room_id AND b.type = 'm.room.member' AND b.membership = 'join'"
        " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'",
        (user_id,))}


def set_forward_extremities(conn: apsw.Connection, room_id: str, event_ids: list[str]) -> None:
    conn.execute("DELETE FROM forward_extremities WHERE room_id = ?", (room_id,))
    conn.executemany("INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)",
                     [(room_id, e) for e in event_ids])


def forward_extremities(conn: apsw.Connection, room_id: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT event_id FROM forward_extremities WHERE room_id = ?", (room_id,))]


# -- redactions and transaction ids ---------------------------------------------------------


def add_redaction(conn: apsw.Connection, redacts: str, redaction_id: str) -> None:
    conn.execute("INSERT OR IGNORE INTO redactions (redacts, redaction_id) VALUES (?, ?)",
                 (redacts, redaction_id))
    search_repo.unindex_event(conn, redacts)  # a redacted event's text is gone


def redactions_of(conn: apsw.Connection, event_ids: Iterable[str]) -> dict[str, str]:
    """event_id -> one accepted redaction of it."""
    out: dict[str, str] = {}
    for event_id in set(event_ids):
        row = conn.execute("SELECT redaction_id FROM redactions WHERE redacts = ? LIMIT 1",
                           (event_id,)).fetchone()
        if row is not None:
            out[event_id] = str(row[0])
    return out


def get_txn_event(conn: apsw.Connection, user_id: str, device_id: str, scope: str,
                  txn_id: str) -> str | None:
    row = conn.execute(
        "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND scope = ?"
        " AND txn_id = ?", (user_id, device_id, scope, txn_id)).fetchone()
    return None if row is None else str(row[0])


def set_txn_event(conn: apsw.Connection, user_id: str, device_id: str, scope: str, txn_id: str,
                  event_id: str) -> None:
    conn.execute("INSERT INTO event_txn_ids (user_id, device_id, scope, txn_id, event_id)"
                 " VALUES (?, ?, ?, ?, ?)", (user_id, device_id, scope, txn_id, event_id))


def txn_ids_for_device(conn: apsw.Connection, user_id: str, device_id: str,
                       event_ids: Iterable[str]) -> dict[str, str]:
    """event_id -> txn_id for the events in `event_ids` this device sent."""
    out: dict[str, str] = {}
    for event_id in set(event_ids):
        row = conn.execute(
            "SELECT txn_id FROM event_txn_ids WHERE event_id = ? AND user_id = ? AND"
            " device_id = ?", (event_id, user_id, device_id)).fetchone()
        if row is not None:
            out[event_id] = str(row[0])
    return out
