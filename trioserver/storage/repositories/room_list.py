"""Reads behind the sliding sync room list: activity, bump stamps and a few state event IDs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import apsw

# State shown in every room-list entry (or used to filter the list), by (type, "").
LIST_STATE_TYPES = ("m.room.create", "m.room.encryption", "m.room.name", "m.room.avatar",
                    "m.room.canonical_alias")


def last_positions(conn: apsw.Connection, room_ids: Iterable[str], bump_types: Sequence[str]
                   ) -> dict[str, tuple[int, int]]:
    """room -> (newest event's stream ordering, newest bump-type event's), 0 when none.

    Each figure is an index seek (events_room_stream, events_room_type_stream), so the cost is
    per room, not per event.
    """
    out: dict[str, tuple[int, int]] = {}
    for room_id in room_ids:
        last = conn.execute("SELECT max(stream_ordering) FROM events WHERE room_id = ?",
                            (room_id,)).fetchone()
        bump = 0
        for event_type in bump_types:
            row = conn.execute("SELECT max(stream_ordering) FROM events WHERE room_id = ?"
                               " AND type = ?", (room_id, event_type)).fetchone()
            if row is not None and row[0] is not None and row[0] > bump:
                bump = int(row[0])
        out[room_id] = (int(last[0]) if last is not None and last[0] is not None else 0, bump)
    return out


def list_state_ids(conn: apsw.Connection, room_ids: Iterable[str]
                   ) -> dict[str, dict[str, str]]:
    """room -> {type: event_id} of its current LIST_STATE_TYPES state (empty state key)."""
    marks = ",".join("?" * len(LIST_STATE_TYPES))
    out: dict[str, dict[str, str]] = {}
    for room_id in room_ids:
        rows = conn.execute(
            f"SELECT type, event_id FROM current_state WHERE room_id = ? AND type IN ({marks})"
            " AND state_key = ''", (room_id, *LIST_STATE_TYPES))
        out[room_id] = {str(r[0]): str(r[1]) for r in rows}
    return out


def space_child_ids(conn: apsw.Connection, space_id: str) -> list[tuple[str, str]]:
    """(child room ID, event ID) of the space's current m.space.child state."""
    return [(str(r[0]), str(r[1])) for r in conn.execute(
        "SELECT state_key, event_id FROM current_state WHERE room_id = ?"
        " AND type = 'm.space.child'", (space_id,))]


def member_counts(conn: apsw.Connection, room_id: str) -> tuple[int, int]:
    """(joined, invited) members now."""
    joined = invited = 0
    for membership, n in conn.execute(
            "SELECT membership, count(*) FROM current_state WHERE room_id = ?"
            " AND type = 'm.room.member' AND membership IN ('join', 'invite')"
            " GROUP BY membership", (room_id,)):
        if membership == "join":
            joined = int(n)
        else:
            invited = int(n)
    return joined, invited


def member_event_ids_of(conn: apsw.Connection, room_id: str, user_id: str, before: int
                        ) -> list[str]:
    """IDs of the user's membership events in the room before a position, newest first."""
    return [str(r[0]) for r in conn.execute(
        "SELECT event_id FROM events WHERE state_key = ? AND type = 'm.room.member'"
        " AND room_id = ? AND stream_ordering < ? ORDER BY stream_ordering DESC",
        (user_id, room_id, before))]
