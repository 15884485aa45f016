"""presence: each user's newest presence, and who shares a joined room with whom."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.stream_ids import last_stream_id


@dataclass(frozen=True)
class PresenceRow:
    stream_id: int
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int | None
    last_sync_ts: int
    currently_active: bool


_COLS = ("p.stream_id, p.user_id, p.state, p.status_msg, p.last_active_ts, p.last_sync_ts,"
         " p.currently_active")


def _row(r: tuple[Any, ...]) -> PresenceRow:
    return PresenceRow(int(r[0]), str(r[1]), str(r[2]), r[3], r[4], int(r[5]), bool(r[6]))


def put(conn: apsw.Connection, user_id: str, state: str, status_msg: str | None,
        last_active_ts: int | None, last_sync_ts: int, currently_active: bool) -> int:
    """Replace the user's row with one at a new position; return the position."""
    conn.execute("DELETE FROM presence WHERE user_id = ?", (user_id,))
    row = conn.execute(
        "INSERT INTO presence (user_id, state, status_msg, last_active_ts, last_sync_ts,"
        " currently_active) VALUES (?, ?, ?, ?, ?, ?) RETURNING stream_id",
        (user_id, state, status_msg, last_active_ts, last_sync_ts, int(currently_active)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def refresh_times(conn: apsw.Connection, times: Iterable[tuple[str, int | None, int]]) -> None:
    """Move (user, last_active_ts, last_sync_ts) forward in place, without a new position."""
    conn.executemany(
        "UPDATE presence SET last_active_ts = max(coalesce(last_active_ts, 0), ?),"
        " last_sync_ts = max(last_sync_ts, ?) WHERE user_id = ?",
        [(active or 0, synced, user_id) for user_id, active, synced in times])


def get(conn: apsw.Connection, user_id: str) -> PresenceRow | None:
    row = conn.execute(f"SELECT {_COLS} FROM presence p WHERE p.user_id = ?",
                       (user_id,)).fetchone()
    return None if row is None else _row(row)


def not_offline(conn: apsw.Connection) -> list[PresenceRow]:
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLS} FROM presence p WHERE p.state != 'offline'")]


_JOINED = "m.type = 'm.room.member' AND m.membership = 'join'"


def visible_changes(conn: apsw.Connection, viewer: str, room_ids: Sequence[str],
                    since: int, upto: int) -> list[PresenceRow]:
    """Rows in (since, upto] of the viewer and of users joined to one of `room_ids`."""
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLS} FROM presence p WHERE p.stream_id > ? AND p.stream_id <= ?"
        " AND (p.user_id = ? OR EXISTS (SELECT 1 FROM current_state m"
        f" WHERE {_JOINED} AND m.state_key = p.user_id"
        " AND m.room_id IN (SELECT value FROM json_each(?))))"
        " ORDER BY p.stream_id",
        (since, upto, viewer, json.dumps(list(room_ids))))]


def visible_current(conn: apsw.Connection, viewer: str, room_ids: Sequence[str],
                    upto: int) -> list[PresenceRow]:
    """Rows up to `upto` of the viewer and of users joined to one of `room_ids` who are not
    offline (for an initial sync, where a missing user reads as offline)."""
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLS} FROM presence p WHERE p.stream_id <= ?"
        " AND (p.user_id = ? OR (p.state != 'offline' AND p.user_id IN ("
        f"  SELECT m.state_key FROM current_state m WHERE {_JOINED}"
        "   AND m.room_id IN (SELECT value FROM json_each(?)))))"
        " ORDER BY p.stream_id",
        (upto, viewer, json.dumps(list(room_ids))))]


def shares_room(conn: apsw.Connection, user_a: str, user_b: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM current_state a JOIN current_state b ON b.room_id = a.room_id"
        " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
        " AND b.type = 'm.room.member' AND b.state_key = ? AND b.membership = 'join' LIMIT 1",
        (user_a, user_b)).fetchone()
    return row is not None


def joined_somewhere(conn: apsw.Connection, user_id: str) -> bool:
    """Whether the user is joined to any room this server is in."""
    row = conn.execute(
        "SELECT 1 FROM current_state WHERE type = 'm.room.member' AND state_key = ?"
        " AND membership = 'join' LIMIT 1", (user_id,)).fetchone()
    return row is not None


def audience(conn: apsw.Connection, user_id: str) -> list[str]:
    """The user and everyone joined to a room the user is joined to."""
    return [r[0] for r in conn.execute(
        f"SELECT m.state_key FROM current_state m WHERE {_JOINED} AND m.room_id IN ("
        "  SELECT room_id FROM current_state WHERE type = 'm.room.member' AND state_key = ?"
        "  AND membership = 'join')"
        " UNION SELECT ?", (user_id, user_id))]


def position(conn: apsw.Connection) -> int:
    return last_stream_id(conn, "presence")
