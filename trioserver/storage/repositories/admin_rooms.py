"""Rooms as the Synapse-compatible admin API lists them (GET /_synapse/admin/v1/rooms)."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


@dataclass(frozen=True)
class AdminRoomRow:
    room_id: str
    version: str
    creator: str
    created_ts: int
    public: bool
    joined_members: int
    joined_local_members: int
    state_events: int


_ROOM_SELECT = (
    "SELECT r.room_id, r.room_version, r.creator, r.created_ts, r.published,"
    " (SELECT count(*) FROM current_state m WHERE m.room_id = r.room_id"
    "  AND m.type = 'm.room.member' AND m.membership = 'join'),"
    " (SELECT count(*) FROM current_state m WHERE m.room_id = r.room_id"
    "  AND m.type = 'm.room.member' AND m.membership = 'join' AND m.state_key LIKE ?),"
    " (SELECT count(*) FROM current_state s WHERE s.room_id = r.room_id)"
    " FROM rooms r"
)


def _row(r: tuple[object, ...]) -> AdminRoomRow:
    return AdminRoomRow(str(r[0]), str(r[1]), str(r[2]), int(str(r[3])), bool(r[4]),
                        int(str(r[5])), int(str(r[6])), int(str(r[7])))


def list_rooms(conn: apsw.Connection, server_name: str, *, offset: int, limit: int
               ) -> tuple[list[AdminRoomRow], int]:
    """One page of rooms, oldest first, and how many rooms there are."""
    local = f"%:{server_name}"
    rows = conn.execute(f"{_ROOM_SELECT} ORDER BY r.created_ts, r.room_id LIMIT ? OFFSET ?",
                        (local, limit, offset))
    total = conn.execute("SELECT count(*) FROM rooms").fetchone()
    return [_row(r) for r in rows], int(total[0]) if total else 0


def room_exists(conn: apsw.Connection, room_id: str) -> bool:
    return conn.execute("SELECT 1 FROM rooms WHERE room_id = ?", (room_id,)).fetchone() is not None


def joined_members(conn: apsw.Connection, room_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT state_key FROM current_state WHERE room_id = ? AND type = 'm.room.member'"
        " AND membership = 'join' ORDER BY state_key",
        (room_id,),
    )
    return [str(r[0]) for r in rows]
