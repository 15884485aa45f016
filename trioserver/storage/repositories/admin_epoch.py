"""admin_epoch: one counter bumped by every offline admin change, polled by a running server."""

from __future__ import annotations

import apsw


def current(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT epoch FROM admin_epoch WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def bump(conn: apsw.Connection) -> int:
    """Inside the admin command's write: advance the epoch and return the new value."""
    row = conn.execute(
        "INSERT INTO admin_epoch (id, epoch) VALUES (1, 1)"
        " ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1 RETURNING epoch"
    ).fetchone()
    assert row is not None
    return int(row[0])
