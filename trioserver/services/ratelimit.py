"""Token-bucket rate limits kept in the TTL store (`429 M_LIMIT_EXCEEDED` + `retry_after_ms`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from trioserver.config import RateLimit
from trioserver.errors import Codes, MatrixError
from trioserver.storage.ttl_store import TTLStore


class RateLimiter:
    def __init__(
        self, store: TTLStore, *, enabled: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._enabled = enabled
        self._clock = clock

    def _level(self, key: str, limit: RateLimit) -> tuple[float, float]:
        """(tokens available now, now)."""
        now = self._clock()
        state = self._store.get(key)
        if not isinstance(state, tuple):
            return float(limit.burst), now
        tokens, last = state
        return min(float(limit.burst), tokens + (now - last) * limit.per_second), now

    def _refuse(self, tokens: float, limit: RateLimit) -> MatrixError:
        wait_s = (1.0 - tokens) / limit.per_second
        return MatrixError(
            429, Codes.LIMIT_EXCEEDED, "Too many requests", retry_after_ms=math.ceil(wait_s * 1000)
        )

    def check(self, bucket: str, key: str, limit: RateLimit) -> None:
        """Take one token from `bucket:key`, or raise 429 if there is none."""
        if not self._enabled:
            return
        k = f"rl:{bucket}:{key}"
        tokens, now = self._level(k, limit)
        if tokens < 1.0:
            raise self._refuse(tokens, limit)
        self._store.set(k, (tokens - 1.0, now), ttl=limit.burst / limit.per_second + 1.0)

    def ensure_available(self, bucket: str, key: str, limit: RateLimit) -> None:
        """Raise 429 if `bucket:key` is empty, without taking a token (e.g. before a login)."""
        if not self._enabled:
            return
        tokens, _ = self._level(f"rl:{bucket}:{key}", limit)
        if tokens < 1.0:
            raise self._refuse(tokens, limit)

    def record(self, bucket: str, key: str, limit: RateLimit) -> None:
        """Take a token without refusing (e.g. after a failed login)."""
        if not self._enabled:
            return
        k = f"rl:{bucket}:{key}"
        tokens, now = self._level(k, limit)
        self._store.set(k, (max(tokens - 1.0, 0.0), now), ttl=limit.burst / limit.per_second + 1.0)
