"""AdminWatch and Sessions.clear_cache: a change written by another process (an admin command)
reaches the token cache, and a lookup racing with the clear cannot re-cache a stale row."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio

from trioserver.concurrency import Notifier
from trioserver.errors import MatrixError
from trioserver.services.admin_watch import AdminWatch
from trioserver.services.sessions import Sessions
from trioserver.storage.db import Database
from trioserver.storage.repositories import admin_epoch as epoch_repo
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import users as users_repo

UID = "@alice:localhost"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.open(tmp_path / "trioserver.db", readers=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(database.run)
        yield database
        nursery.cancel_scope.cancel()
    database.close()


async def _session(db: Database, sessions: Sessions) -> str:
    minted = sessions.mint(with_refresh=False)

    def txn(conn: apsw.Connection) -> None:
        users_repo.insert_user(conn, UID, None, now_ms=0)
        devices_repo.upsert_device(conn, UID, "DEV", None, 0)
        sessions.store(conn, minted, UID, "DEV")

    await db.write(txn)
    return minted.access_token


def _offline_logout(conn: apsw.Connection) -> None:
    """What `trioserver deactivate` / `reset-password` do from another process."""
    devices_repo.delete_all_devices(conn, UID)
    epoch_repo.bump(conn)


async def test_epoch_change_clears_cached_tokens(db: Database) -> None:
    sessions = Sessions(db, refreshable_lifetime_ms=60_000)
    watch = AdminWatch(db, sessions, Notifier())
    token = await _session(db, sessions)
    assert not await watch.check()  # first read only records the epoch
    await sessions.authenticate(token)  # cached from here on
    await db.write(_offline_logout)
    await sessions.authenticate(token)  # the cache does not know yet
    assert await watch.check()
    with pytest.raises(MatrixError) as info:
        await sessions.authenticate(token)
    assert info.value.errcode == "M_UNKNOWN_TOKEN"
    assert not await watch.check()


async def test_lookup_racing_with_clear_does_not_recache(db: Database) -> None:
    sessions = Sessions(db, refreshable_lifetime_ms=60_000)
    token = await _session(db, sessions)
    real_read = db.read
    reads = 0

    async def read_then_clear(fn: Callable[[apsw.Connection], Any]) -> Any:
        nonlocal reads
        reads += 1
        result = await real_read(fn)
        sessions.clear_cache()  # the watch fired while this lookup was reading
        return result

    db.read = read_then_clear  # type: ignore[method-assign]
    await sessions.authenticate(token)
    await sessions.authenticate(token)
    assert reads == 2, "the row read before the clear must not have been cached"


async def test_run_polls_until_cancelled(db: Database) -> None:
    sessions = Sessions(db, refreshable_lifetime_ms=60_000)
    watch = AdminWatch(db, sessions, Notifier(), interval_s=0.01)
    token = await _session(db, sessions)
    await sessions.authenticate(token)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        assert watch.epoch == 0
        await db.write(_offline_logout)
        for _ in range(500):
            if watch.epoch == 1:
                break
            await trio.sleep(0.01)
        assert watch.epoch == 1
        nursery.cancel_scope.cancel()
    with pytest.raises(MatrixError):
        await sessions.authenticate(token)
