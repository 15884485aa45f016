"""The in-memory TTL store: ephemeral state with expiry on a monotonic clock.

Used for what must not outlive a restart or be written to disk: UIA sessions, rate-limit buckets,
transaction-id dedup windows, typing, login tokens. Reads check expiry themselves, so an expired
key is never returned even between sweeps; the sweeper only reclaims memory. Expiry times sit in
a heap, so a sweep costs O(expired * log n), not O(n).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import trio

Clock = Callable[[], float]


class TTLStore:
    def __init__(self, clock: Clock = time.monotonic, sweep_interval: float = 30.0) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._data: dict[str, tuple[object, float]] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str) -> tuple[object, float] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._data[key]
            return None
        return entry

    def get(self, key: str) -> object | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    def ttl(self, key: str) -> float | None:
        """Seconds left before `key` expires, or None if it does not exist."""
        entry = self._live(key)
        return None if entry is None else entry[1] - self._clock()

    def set(self, key: str, value: object, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        expires = self._clock() + ttl
        self._data[key] = (value, expires)
        heapq.heappush(self._heap, (expires, key))

    def set_if_absent(self, key: str, value: object, ttl: float) -> bool:
        """Set `key` only if it does not exist; True if this call set it."""
        if self._live(key) is not None:
            return False
        self.set(key, value, ttl)
        return True

    def replace(self, key: str, value: object) -> bool:
        """Change the value of an existing key, keeping its expiry; False if it does not exist."""
        entry = self._live(key)
        if entry is None:
            return False
        self._data[key] = (value, entry[1])
        return True

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed (an expired key does not)."""
        live = self._live(key) is not None
        self._data.pop(key, None)
        return live

    def incr(self, key: str, amount: int = 1, ttl: float = 60.0) -> int:
        """Add `amount` to an integer counter, creating it (with `ttl`) at 0 if absent."""
        entry = self._live(key)
        if entry is None:
            self.set(key, amount, ttl)
            return amount
        value, expires = entry
        if not isinstance(value, int):
            raise TypeError(f"{key!r} does not hold a counter")
        self._data[key] = (value + amount, expires)
        return value + amount

    def sweep(self) -> int:
        """Drop every expired key; returns how many were dropped."""
        now = self._clock()
        dropped = 0
        while self._heap and self._heap[0][0] <= now:
            expires, key = heapq.heappop(self._heap)
            entry = self._data.get(key)
            # Only drop if this heap entry still describes the key (it may have been re-set).
            if entry is not None and entry[1] == expires:
                del self._data[key]
                dropped += 1
        if len(self._heap) > 2 * len(self._data) + 1024:
            # Too many stale heap entries from overwritten keys: rebuild.
            self._heap = [(exp, k) for k, (_, exp) in self._data.items()]
            heapq.heapify(self._heap)
        return dropped

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sweeper task."""
        task_status.started()
        while True:
            await trio.sleep(self._sweep_interval)
            self.sweep()
