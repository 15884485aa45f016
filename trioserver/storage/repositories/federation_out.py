"""Outbound federation bookkeeping: what each destination has acknowledged."""

from __future__ import annotations

import apsw

from trioserver.storage.repositories.events import _EVENT_COLS, StoredEvent, _stored


def mark_acked(conn: apsw.Connection, destination: str, stream_ordering: int) -> None:
    conn.execute(
        "INSERT INTO federation_destinations (destination, last_acked) VALUES (?, ?)"
        " ON CONFLICT (destination) DO UPDATE SET last_acked ="
        " max(last_acked, excluded.last_acked)", (destination, stream_ordering))


def destinations(conn: apsw.Connection) -> list[tuple[str, int]]:
    return [(str(r[0]), int(r[1])) for r in conn.execute(
        "SELECT destination, last_acked FROM federation_destinations")]


def unacked_events(conn: apsw.Connection, destination: str, after: int, our_server: str,
                   limit: int) -> list[StoredEvent]:
    """Our own events after `after`, in rooms where `destination` has a joined member (or the
    event is a membership change of one of its users), oldest first."""
    rows = conn.execute(
        f"SELECT {_EVENT_COLS} FROM events WHERE stream_ordering > ? AND sender LIKE ?"
        " AND (room_id IN (SELECT room_id FROM current_state WHERE type = 'm.room.member'"
        "      AND membership = 'join' AND state_key LIKE ?)"
        "   OR (type = 'm.room.member' AND state_key LIKE ?))"
        " ORDER BY stream_ordering LIMIT ?",
        (after, f"%:{our_server}", f"%:{destination}", f"%:{destination}", limit))
    return [_stored(r) for r in rows]
