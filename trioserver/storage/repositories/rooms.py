"""rooms, room_aliases, forgotten_rooms, event_reports."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


@dataclass(frozen=True)
class RoomRow:
    room_id: str
    room_version: str
    creator: str
    published: bool


def insert_room(conn: apsw.Connection, room_id: str, version: str, creator: str, now: int,
                published: bool) -> None:
    conn.execute(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts, published)"
        " VALUES (?, ?, ?, ?, ?)", (room_id, version, creator, now, int(published)),
    )


def get_room(conn: apsw.Connection, room_id: str) -> RoomRow | None:
    row = conn.execute(
        "SELECT room_id, room_version, creator, published FROM rooms WHERE room_id = ?",
        (room_id,),
    ).fetchone()
    return None if row is None else RoomRow(row[0], row[1], row[2], bool(row[3]))


def current_state_group(conn: apsw.Connection, room_id: str) -> int | None:
    row = conn.execute("SELECT current_state_group FROM rooms WHERE room_id = ?",
                       (room_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def set_current_state_group(conn: apsw.Connection, room_id: str, group: int | None) -> None:
    conn.execute("UPDATE rooms SET current_state_group = ? WHERE room_id = ?", (group, room_id))


def clear_current_state_group(conn: apsw.Connection, room_id: str) -> None:
    """The current state is the state after the (single) newest event again."""
    conn.execute("UPDATE rooms SET current_state_group = NULL WHERE room_id = ?"
                 " AND current_state_group IS NOT NULL", (room_id,))


def set_published(conn: apsw.Connection, room_id: str, published: bool) -> None:
    conn.execute("UPDATE rooms SET published = ? WHERE room_id = ?", (int(published), room_id))


def published_rooms(conn: apsw.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT room_id FROM rooms WHERE published = 1 ORDER BY created_ts, room_id")]


def insert_alias(conn: apsw.Connection, alias: str, room_id: str, creator: str) -> bool:
    cur = conn.execute(
        "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?, ?, ?)"
        " ON CONFLICT (alias) DO NOTHING RETURNING 1", (alias, room_id, creator),
    )
    return cur.fetchone() is not None


def get_alias(conn: apsw.Connection, alias: str) -> tuple[str, str] | None:
    """(room_id, creator) of an alias."""
    row = conn.execute("SELECT room_id, creator FROM room_aliases WHERE alias = ?",
                       (alias,)).fetchone()
    return None if row is None else (row[0], row[1])


def delete_alias(conn: apsw.Connection, alias: str) -> None:
    conn.execute("DELETE FROM room_aliases WHERE alias = ?", (alias,))


def move_aliases(conn: apsw.Connection, old_room: str, new_room: str) -> None:
    conn.execute("UPDATE room_aliases SET room_id = ? WHERE room_id = ?", (new_room, old_room))


def aliases_of_room(conn: apsw.Connection, room_id: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias", (room_id,))]


def forget(conn: apsw.Connection, user_id: str, room_id: str) -> None:
    conn.execute("INSERT OR IGNORE INTO forgotten_rooms (user_id, room_id) VALUES (?, ?)",
                 (user_id, room_id))


def forgotten(conn: apsw.Connection, user_id: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT room_id FROM forgotten_rooms WHERE user_id = ?", (user_id,))}


def unforget(conn: apsw.Connection, user_id: str, room_id: str) -> None:
    conn.execute("DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?",
                 (user_id, room_id))


def insert_report(conn: apsw.Connection, room_id: str, event_id: str | None, reporter: str,
                  reason: str | None, score: int | None, now: int) -> None:
    conn.execute(
        "INSERT INTO event_reports (room_id, event_id, reporter, reason, score, received_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)", (room_id, event_id, reporter, reason, score, now),
    )
