"""Database: opening and pragmas, group-committed writes, per-write rollback, pooled reads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.lowlevel
import trio.testing

from trioserver.storage.db import Database, DatabaseError
from trioserver.storage.migrations import current_version, load_migrations


def create_test_table(conn: apsw.Connection) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")


def scalar(conn: apsw.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def count(conn: apsw.Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM t"))


def values(conn: apsw.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT v FROM t ORDER BY id")]


def insert(v: str) -> Callable[[apsw.Connection], int]:
    def fn(conn: apsw.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (v,))
        return conn.last_insert_rowid()

    return fn


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "data" / "trioserver.db", readers=2)
    database.write_sync(create_test_table)
    yield database
    database.close()


def test_open_creates_migrated_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    db = Database.open(path)
    try:
        assert path.exists()
        assert db.read_sync(lambda c: scalar(c, "PRAGMA journal_mode")) == "wal"
        assert db.read_sync(lambda c: scalar(c, "PRAGMA foreign_keys")) == 1
        assert db.read_sync(current_version) == len(load_migrations())
        assert scalar(db._writer, "PRAGMA foreign_keys") == 1
        assert scalar(db._writer, "PRAGMA synchronous") == 2  # FULL
    finally:
        db.close()
    # Reopening does not migrate again and keeps the data.
    db = Database.open(path, synchronous="normal")
    try:
        assert scalar(db._writer, "PRAGMA synchronous") == 1  # NORMAL
        assert db.read_sync(current_version) == len(load_migrations())
    finally:
        db.close()


def test_writer_enforces_foreign_keys(db: Database) -> None:
    def orphan_device(conn: apsw.Connection) -> None:
        conn.execute(
            "INSERT INTO devices (user_id, device_id, created_ts) VALUES ('@nobody:x', 'D', 0)"
        )

    with pytest.raises(apsw.ConstraintError):
        db.write_sync(orphan_device)
    assert db.read_sync(lambda c: scalar(c, "SELECT count(*) FROM devices")) == 0


def test_open_failure_is_database_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError, match="cannot open"):
        Database.open(path)


def test_write_sync_and_read_sync_round_trip(db: Database) -> None:
    rowid = db.write_sync(insert("hello"))
    assert rowid == 1
    assert db.read_sync(values) == ["hello"]
    assert (db.commits, db.writes) == (2, 2)  # table creation + insert


async def test_write_before_run_raises(db: Database) -> None:
    with pytest.raises(DatabaseError, match="not running"):
        await db.write(insert("x"))
    assert db.read_sync(count) == 0


async def test_write_read_round_trip(db: Database) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        assert await db.write(insert("a")) == 1
        assert await db.write(insert("b")) == 2
        assert await db.read(values) == ["a", "b"]
        with pytest.raises(RuntimeError, match="offline"):
            db.write_sync(insert("c"))
        nursery.cancel_scope.cancel()
    assert db.read_sync(values) == ["a", "b"]
    # Once the writer has stopped, offline writes are allowed again.
    db.write_sync(insert("c"))
    assert db.read_sync(values) == ["a", "b", "c"]


async def test_group_commit_batches_concurrent_writes(db: Database) -> None:
    commits0, writes0 = db.commits, db.writes
    results: list[int] = []

    async def one(i: int) -> None:
        results.append(await db.write(insert(f"v{i}")))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            async with trio.open_nursery() as writers:
                for i in range(200):
                    writers.start_soon(one, i)
            nursery.cancel_scope.cancel()
    assert sorted(results) == list(range(1, 201))
    assert db.read_sync(count) == 200
    assert sorted(db.read_sync(values)) == sorted(f"v{i}" for i in range(200))
    commits, writes = db.commits - commits0, db.writes - writes0
    assert writes == 200
    assert 1 <= commits < writes


async def run_with_blocked_writer(db: Database, nursery: trio.Nursery) -> threading.Event:
    """Occupy the writer thread with a job until the returned event is set."""
    started = threading.Event()
    release = threading.Event()

    def blocker(conn: apsw.Connection) -> None:
        started.set()
        release.wait(10)
        conn.execute("INSERT INTO t (v) VALUES ('blocker')")

    nursery.start_soon(db.write, blocker)
    await trio.to_thread.run_sync(started.wait, 10)
    return release


async def test_failing_write_is_rolled_back_alone(db: Database) -> None:
    class Boom(Exception):
        pass

    def bad(conn: apsw.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES ('bad')")
        raise Boom("nope")

    outcomes: dict[str, object] = {}

    async def attempt(name: str, fn: Callable[[apsw.Connection], object]) -> None:
        try:
            outcomes[name] = await db.write(fn)
        except Boom as e:
            outcomes[name] = e

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            release = await run_with_blocked_writer(db, nursery)
            commits0 = db.commits
            async with trio.open_nursery() as writers:
                writers.start_soon(attempt, "ok1", insert("ok1"))
                await trio.lowlevel.checkpoint()
                writers.start_soon(attempt, "bad", bad)
                await trio.lowlevel.checkpoint()
                writers.start_soon(attempt, "ok2", insert("ok2"))
                await trio.testing.wait_all_tasks_blocked()
                release.set()
            nursery.cancel_scope.cancel()
    assert isinstance(outcomes["bad"], Boom)
    assert isinstance(outcomes["ok1"], int)
    assert isinstance(outcomes["ok2"], int)
    assert sorted(db.read_sync(values)) == ["blocker", "ok1", "ok2"]
    # The blocker's batch plus ONE batch holding all three queued writes.
    assert db.commits - commits0 == 2


async def test_read_sees_consistent_snapshot(db: Database) -> None:
    db.write_sync(insert("before"))

    async def add_during() -> None:
        await db.write(insert("during"))

    def two_counts(conn: apsw.Connection) -> tuple[int, int]:
        first = count(conn)
        # Commit a write from inside the read transaction (via the event loop).
        trio.from_thread.run(add_during)
        return first, count(conn)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            assert await db.read(two_counts) == (1, 1)
            assert await db.read(count) == 2
            nursery.cancel_scope.cancel()


async def test_read_error_propagates_and_reader_is_returned(db: Database) -> None:
    def broken(conn: apsw.Connection) -> None:
        conn.execute("SELECT * FROM no_such_table")

    for _ in range(3):  # more failures than readers: each reader must come back to the pool
        with pytest.raises(apsw.SQLError):
            await db.read(broken)
    assert await db.read(count) == 0
    assert len(db._readers) == 2


async def test_concurrent_reads_beyond_pool_size(db: Database) -> None:
    db.write_sync(insert("x"))
    results: list[int] = []

    async def reader() -> None:
        results.append(await db.read(count))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(reader)
    assert results == [1] * 20
    assert len(db._readers) == 2


class RecordingSend:
    """Stands in for the writer queue's send side, remembering every job sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.jobs: list[Any] = []

    def send_nowait(self, job: Any) -> None:
        self.jobs.append(job)
        self.inner.send_nowait(job)


async def write_or_fail(
    db: Database, fn: Callable[[apsw.Connection], object], seconds: float = 5
) -> object:
    """`db.write(fn)`'s result or exception; fail (rather than hang) if it is never answered.

    `write` waits shielded from cancellation, so a timeout around it cannot stop a write that
    nobody will ever run: on timeout, answer the stranded job by hand and then fail the test.
    """
    recorder = RecordingSend(db._send)
    db._send = recorder  # type: ignore[assignment]
    outcome: list[object] = []
    answered = trio.Event()

    async def go() -> None:
        try:
            outcome.append(await db.write(fn))
        except Exception as e:
            outcome.append(e)
        finally:
            answered.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(go)
            with trio.move_on_after(seconds):
                await answered.wait()
            hung = not answered.is_set()
            for job in recorder.jobs:
                if not job.done.is_set():
                    job.error = AssertionError("stranded")
                    job.done.set()
    finally:
        db._send = recorder.inner
    if hung:
        pytest.fail("the write was never answered")
    return outcome[0]


async def test_write_after_run_cancelled_fails_fast(db: Database) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        nursery.cancel_scope.cancel()
    assert isinstance(await write_or_fail(db, insert("late")), DatabaseError)
    assert db.read_sync(count) == 0


async def test_queued_write_fails_when_run_is_cancelled(db: Database) -> None:
    outcomes: dict[str, object] = {}

    async def attempt() -> None:
        outcomes["queued"] = await write_or_fail(db, insert("queued"))

    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            run_scope = trio.CancelScope()

            async def runner(task_status: trio.TaskStatus[None]) -> None:
                with run_scope:
                    await db.run(task_status=task_status)

            await outer.start(runner)
            release = await run_with_blocked_writer(db, outer)
            outer.start_soon(attempt)
            await trio.testing.wait_all_tasks_blocked()
            run_scope.cancel()
            release.set()
    # The batch that had started finished; the queued write was failed, not left hanging.
    assert isinstance(outcomes["queued"], DatabaseError)
    assert db.read_sync(values) == ["blocker"]
