"""The newest position of a stream whose rows carry an AUTOINCREMENT `stream_id`."""

from __future__ import annotations

import apsw


def last_stream_id(conn: apsw.Connection, table: str) -> int:
    """The highest stream_id ever assigned in `table` (0 if none), deleted rows included.

    Taken from sqlite_sequence rather than max(stream_id): rows are replaced and deleted, and a
    position already handed to a client must never be reused.
    """
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row is not None else 0
