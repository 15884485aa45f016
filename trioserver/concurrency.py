"""Per-key serialization and long-poll wake-ups.

`KeyedSerializer` replaces the edge port's single-threaded actors: whatever must not interleave
for one key (one user's one-time-key claims, one room's event appends) runs inside
`async with serializer.hold(key)`; other keys proceed concurrently. Locks exist only while
someone holds or waits for them.

`Notifier` wakes long-polls. Producers call `notify(keys, position)` with the stream position
they just committed; a waiter passes the position it has already seen, so a notification that
lands between the waiter's database read and its wait is never lost.

`Drainer` runs a task that empties a queue kept in the database: at start, and again after
every `wake` (one that comes during a drain is kept).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import trio

log = logging.getLogger(__name__)


class KeyedSerializer:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[trio.Lock, int]] = {}

    def __len__(self) -> int:
        """How many keys currently have a lock (held or awaited)."""
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = trio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock_now, users_now = self._locks[key]
            if users_now == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock_now, users_now - 1)


class _Waiter:
    __slots__ = ("event", "since")

    def __init__(self, since: int) -> None:
        self.event = trio.Event()
        self.since = since


class Notifier:
    """Wakes long-polls. Positions are the notifier's own sequence (or given by the caller);
    a waiter captures `position` *before* reading what it has, and waits for anything newer."""

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}
        self._waiters: dict[str, set[_Waiter]] = {}
        self._position = 0
        self._closed = False

    @property
    def position(self) -> int:
        """The newest position notified so far."""
        return self._position

    def latest(self, key: str) -> int:
        return self._latest.get(key, 0)

    def notify(self, keys: Iterable[str], position: int | None = None) -> None:
        """Record that `keys` changed (at `position`, by default the next position of the
        notifier's sequence) and wake everyone waiting on them for a change after an older
        position."""
        if position is None:
            position = self._position + 1
        self._position = max(self._position, position)
        for key in keys:
            if position > self._latest.get(key, 0):
                self._latest[key] = position
            for waiter in self._waiters.get(key, ()):
                if position > waiter.since:
                    waiter.event.set()

    # A long-poll's timeout is part of its contract, hence the parameter.
    async def wait(
        self, keys: Iterable[str], since: int, timeout: float  # noqa: ASYNC109
    ) -> bool:
        """Wait until any of `keys` changes after position `since`, or `timeout` seconds pass.

        Returns True if something changed. Cancellation (a client that went away) just stops
        the wait and cleans up.
        """
        keys = list(keys)
        if any(self._latest.get(k, 0) > since for k in keys):
            return True
        if self._closed:
            return False
        waiter = _Waiter(since)
        for k in keys:
            self._waiters.setdefault(k, set()).add(waiter)
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            for k in keys:
                waiters = self._waiters.get(k)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[k]
        # Woken by close(): report a timeout, so the long-poll answers with what it has.
        return waiter.event.is_set() and not self._closed

    def close(self) -> None:
        """Shutting down: end every wait now (as if timed out) and let no new one start."""
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    def waiting(self) -> int:
        """Number of (key, waiter) registrations, for tests and metrics."""
        return sum(len(w) for w in self._waiters.values())

    def waiting_tasks(self) -> int:
        """Number of distinct waits in progress (one per long-poll)."""
        return len({id(w) for ws in self._waiters.values() for w in ws})


class Drainer:
    """Calls `drain` at start and after every `wake`. An exception of `errors` is logged as
    `failure`; the drain is tried again after `retry_s`, or at the next wake when None."""

    def __init__(self, drain: Callable[[], Awaitable[object]], failure: str, *,
                 errors: tuple[type[Exception], ...] = (), retry_s: float | None = None
                 ) -> None:
        self._drain = drain
        self._failure = failure
        self._errors = errors
        self._retry_s = retry_s
        self._wake = trio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            self._wake = trio.Event()  # before draining: a wake during the drain is kept
            try:
                await self._drain()
            except self._errors:
                log.exception(self._failure)
                if self._retry_s is not None:
                    await trio.sleep(self._retry_s)
                    continue
            await self._wake.wait()
