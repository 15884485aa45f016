"""filters: stored sync filter definitions (JSON text), numbered per server."""

from __future__ import annotations

import apsw


def insert(conn: apsw.Connection, user_id: str, definition: str) -> int:
    row = conn.execute("INSERT INTO filters (user_id, definition) VALUES (?, ?) RETURNING id",
                       (user_id, definition)).fetchone()
    assert row is not None
    return int(row[0])


def get(conn: apsw.Connection, user_id: str, filter_id: int) -> str | None:
    row = conn.execute("SELECT definition FROM filters WHERE id = ? AND user_id = ?",
                       (filter_id, user_id)).fetchone()
    return None if row is None else str(row[0])
