"""Whole-database copies and lock probes for the backup and restore commands.

`copy_database` uses SQLite's online backup API while other processes keep writing. The source
connection holds one read transaction for the whole copy: in WAL mode that pins a snapshot
without blocking the writer, and it stops the backup from restarting every time another
connection commits (which, stepping a few pages at a time, it otherwise would for ever).
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw

from trioserver.storage.repositories import maintenance

PAGES_PER_STEP = 4096


class SnapshotError(Exception):
    """The copy could not be made or failed its check."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_database(source: Path, dest: Path, *, pages_per_step: int = PAGES_PER_STEP) -> None:
    """Copy the live database `source` into the new file `dest` (mode 0600), then check it.

    The copy is one consistent snapshot, stored as a single self-contained file (rollback
    journal mode, no -wal beside it), fsynced. Blocking.
    """
    dest.touch(mode=0o600, exist_ok=False)
    src = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        src.set_busy_timeout(10_000)
        dst = apsw.Connection(str(dest))
        try:
            maintenance.prepare_scratch_copy(dst)
            maintenance.begin_snapshot(src)
            try:
                with dst.backup("main", src, "main") as backup:
                    while not backup.step(pages_per_step):
                        pass
            finally:
                maintenance.end_snapshot(src)
            maintenance.finish_copy(dst)
            problems = maintenance.quick_check(dst)
            if problems != ["ok"]:
                raise SnapshotError(f"the copy failed its integrity check: {problems[:5]}")
        finally:
            dst.close()
    except apsw.Error as e:
        raise SnapshotError(f"cannot copy {source}: {e}") from e
    finally:
        src.close()
    _fsync(dest)


def database_in_use(path: Path) -> bool:
    """Whether another connection (a running server, a CLI command) has the database open.

    A WAL-mode connection keeps a shared lock on the database file for as long as it is open,
    even when idle; taking an exclusive lock with `locking_mode = EXCLUSIVE` and no busy timeout
    therefore fails while any other process holds it.
    """
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.set_busy_timeout(0)
        return not maintenance.try_exclusive_lock(conn)
    finally:
        conn.close()
