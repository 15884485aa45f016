"""Whole-database statements for the backup and restore tools: checks, counts, locking modes."""

from __future__ import annotations

import apsw

# Tables whose row counts a backup reports (a summary for people, not a checksum).
COUNTED_TABLES = ("users", "devices", "rooms", "events", "media", "media_thumbnails")


def quick_check(conn: apsw.Connection) -> list[str]:
    """`PRAGMA quick_check`: ["ok"] for a sound file, else the first problems found."""
    return [str(r[0]) for r in conn.execute("PRAGMA quick_check(20)")]


def table_counts(conn: apsw.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in COUNTED_TABLES:  # names are constants, never input
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def begin_snapshot(conn: apsw.Connection) -> None:
    """Open a read transaction and pin its snapshot (WAL: writers carry on beside it)."""
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()


def end_snapshot(conn: apsw.Connection) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT")


def prepare_scratch_copy(conn: apsw.Connection) -> None:
    """A fresh file about to be overwritten by a backup: no journal, no syncs (fsynced after)."""
    conn.execute("PRAGMA journal_mode = OFF").fetchall()
    conn.execute("PRAGMA synchronous = OFF")


def finish_copy(conn: apsw.Connection) -> None:
    """Make a finished copy a self-contained rollback-journal file (the source was WAL)."""
    conn.execute("PRAGMA journal_mode = DELETE").fetchall()


def try_exclusive_lock(conn: apsw.Connection) -> bool:
    """Try to take (and release) an exclusive lock at once; False if someone holds the file."""
    conn.execute("PRAGMA locking_mode = EXCLUSIVE").fetchall()
    try:
        conn.execute("BEGIN EXCLUSIVE")
    except apsw.BusyError:
        return False
    conn.execute("ROLLBACK")
    return True
