"""SQLite through apsw: one serialized writer with group commit, a pool of readers.

Writes are plain functions `fn(conn) -> T`. The writer task takes every write that is waiting,
runs each inside its own SAVEPOINT of one `BEGIN IMMEDIATE` transaction and commits once (group
commit): one fsync for many writes, while a write that raises is rolled back alone and its
exception is re-raised to its caller. Reads run on pooled reader connections, each read in its own
transaction so it sees one consistent snapshot (WAL lets readers run beside the writer).

apsw connections must not be used by two threads at once: the writer is only touched by the writer
task (one thread at a time) and each reader connection is checked out by one thread at a time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import apsw
import trio

from trioserver.storage.migrations import Migration, load_migrations, migrate

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BATCH = 128


class DatabaseError(Exception):
    """The database cannot be opened or failed its integrity check."""


@dataclass(eq=False)
class _Job(Generic[T]):
    fn: Callable[[apsw.Connection], T]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


def _connect(path: Path, *, readonly: bool, synchronous: str) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY if readonly else (
        apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    )
    conn = apsw.Connection(str(path), flags=flags)
    conn.set_busy_timeout(10_000)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    return conn


class Database:
    """The durable store. Open with `Database.open(...)`; start `run()` in a nursery to write."""

    def __init__(self, path: Path, writer: apsw.Connection, readers: list[apsw.Connection]) -> None:
        self.path = path
        self._writer = writer
        self._readers = readers
        self._read_limiter = trio.CapacityLimiter(len(readers))
        self._send, self._recv = trio.open_memory_channel[_Job[Any]](math.inf)
        self._running = False
        self.commits = 0
        self.writes = 0
        # Told the duration (seconds) and size of every group commit, for metrics.
        self.on_commit: Callable[[float, int], None] | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        readers: int = 4,
        synchronous: str = "full",
        migrations: list[Migration] | None = None,
        check: bool = True,
    ) -> Database:
        """Open (creating if needed), migrate and check the database. Blocking: call at start-up."""
        # The database holds password and token hashes: keep it private to this user.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        try:
            writer = _connect(path, readonly=False, synchronous=synchronous)
            applied = migrate(writer, migrations or load_migrations())
            if applied:
                log.info("applied schema migrations: %s", ", ".join(applied))
            if check:
                problems = [r[0] for r in writer.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise DatabaseError(f"{path} failed its integrity check: {problems[:5]}")
                fk = writer.execute("PRAGMA foreign_key_check").fetchall()
                if fk:
                    raise DatabaseError(f"{path} has {len(fk)} foreign key violations")
            pool = [_connect(path, readonly=True, synchronous=synchronous) for _ in range(readers)]
        except apsw.Error as e:
            raise DatabaseError(f"cannot open database {path}: {e}") from e
        return cls(path, writer, pool)

    def close(self) -> None:
        for conn in self._readers:
            conn.close()
        self._writer.execute("PRAGMA optimize")
        self._writer.close()

    # -- writes ---------------------------------------------------------------------------

    async def write(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Run `fn` in a write transaction (group-committed) and return its result.

        A write that has been queued runs to completion even if the caller is cancelled, so a
        caller never leaves half-written data behind.
        """
        if not self._running:
            raise DatabaseError("the database writer is not running")
        job: _Job[T] = _Job(fn)
        self._send.send_nowait(job)
        with trio.CancelScope(shield=True):
            await job.done.wait()
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def write_sync(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Blocking write for offline tools (the CLI) when no writer task runs."""
        if self._running:
            raise RuntimeError("write_sync is only for offline use")
        job: _Job[T] = _Job(fn)
        self._commit([job])
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task: drains queued writes in batches, one transaction per batch."""
        self._running = True
        task_status.started()
        try:
            async for job in self._recv:
                batch: list[_Job[Any]] = [job]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                started = time.perf_counter()
                try:
                    # Not abandoned on cancel: a batch that started always finishes.
                    await trio.to_thread.run_sync(self._commit, batch)
                finally:
                    if self.on_commit is not None:
                        self.on_commit(time.perf_counter() - started, len(batch))
                    for j in batch:
                        j.done.set()
        finally:
            self._running = False
            # Nobody will run what is still queued: fail it rather than leave callers waiting.
            while True:
                try:
                    job = self._recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                job.error = DatabaseError("the database writer has stopped")
                job.done.set()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def queued_writes(self) -> int:
        """Writes waiting for the writer (not counting the batch being committed)."""
        return self._recv.statistics().current_buffer_used

    def file_bytes(self) -> int:
        """Size on disk of the database and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    async def healthy(self) -> bool:
        """The writer runs and a reader connection answers."""
        if not self._running:
            return False
        try:
            await self.read(lambda conn: conn.execute("SELECT 1").fetchall())
        except apsw.Error:
            return False
        return True

    def _commit(self, batch: list[_Job[Any]]) -> None:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except Exception as e:  # the caller gets it; the other jobs still commit
                    conn.execute("ROLLBACK TO job")
                    job.error = e
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
            self.commits += 1
            self.writes += len(batch)
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                if job.error is None:
                    job.error = e
                    job.result = None
            if not isinstance(e, Exception):
                raise

    # -- reads ----------------------------------------------------------------------------

    async def read(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Run `fn` on a reader connection inside one read transaction (a consistent snapshot)."""
        async with self._read_limiter:
            conn = self._readers.pop()
            try:
                return await trio.to_thread.run_sync(self._read_in_txn, conn, fn)
            finally:
                self._readers.append(conn)

    @staticmethod
    def _read_in_txn(conn: apsw.Connection, fn: Callable[[apsw.Connection], T]) -> T:
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def read_sync(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Blocking read for offline tools and start-up (never beside async reads)."""
        conn = self._readers.pop()
        try:
            return self._read_in_txn(conn, fn)
        finally:
            self._readers.append(conn)
