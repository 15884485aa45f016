"""appservice_room_list: the rooms each application service published on each of its networks."""

from __future__ import annotations

import apsw


def set_network_published(conn: apsw.Connection, as_id: str, network_id: str, room_id: str,
                          published: bool) -> None:
    if published:
        conn.execute("INSERT OR IGNORE INTO appservice_room_list (as_id, network_id, room_id)"
                     " VALUES (?, ?, ?)", (as_id, network_id, room_id))
    else:
        conn.execute("DELETE FROM appservice_room_list WHERE as_id = ? AND network_id = ?"
                     " AND room_id = ?", (as_id, network_id, room_id))


def network_rooms(conn: apsw.Connection, as_id: str, network_id: str) -> list[str]:
    """The rooms published on one network's list."""
    return [str(r[0]) for r in conn.execute(
        "SELECT room_id FROM appservice_room_list WHERE as_id = ? AND network_id = ?"
        " ORDER BY room_id", (as_id, network_id))]


def all_network_rooms(conn: apsw.Connection) -> list[str]:
    """Every room published on some network's list, each once."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT room_id FROM appservice_room_list ORDER BY room_id")]


def unpublish_everywhere(conn: apsw.Connection, room_id: str) -> None:
    """Take a room off every network's list (an admin deleted it)."""
    conn.execute("DELETE FROM appservice_room_list WHERE room_id = ?", (room_id,))
