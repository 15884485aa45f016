"""Token-bucket rate limiting over the TTL store, on a fake clock."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeClock
from trioserver.config import RateLimit
from trioserver.errors import Codes, MatrixError
from trioserver.services.ratelimit import RateLimiter
from trioserver.storage.ttl_store import TTLStore

LIMIT = RateLimit(per_second=0.5, burst=3)


@pytest.fixture
def limiter(store: TTLStore, clock: FakeClock) -> RateLimiter:
    return RateLimiter(store, enabled=True, clock=clock)


def refused(
    limiter: RateLimiter, key: str = "1.2.3.4", limit: RateLimit = LIMIT, bucket: str = "login"
) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        limiter.check(bucket, key, limit)
    return info.value


def test_burst_then_429(limiter: RateLimiter) -> None:
    for _ in range(3):
        limiter.check("login", "1.2.3.4", LIMIT)
    err = refused(limiter)
    assert err.status == 429
    assert err.errcode == Codes.LIMIT_EXCEEDED
    # An empty bucket refills one token in 1 / per_second = 2 s.
    assert err.extra == {"retry_after_ms": 2000}
    assert err.to_json() == {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too many requests",
        "retry_after_ms": 2000,
    }
    # Refusals take nothing: the answer does not get worse.
    assert refused(limiter).extra["retry_after_ms"] == 2000


def test_retry_after_accounts_for_partial_refill(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(3):
        limiter.check("login", "k", LIMIT)
    clock.now += 0.5  # 0.25 tokens back
    assert refused(limiter, "k").extra["retry_after_ms"] == 1500
    clock.now += 1.25  # 0.875 tokens
    assert refused(limiter, "k").extra["retry_after_ms"] == 250
    clock.now += 0.25
    limiter.check("login", "k", LIMIT)
    refused(limiter, "k")


def test_retry_after_is_rounded_up(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = RateLimit(per_second=1.0, burst=1)
    limiter.check("login", "k", limit)
    clock.now += 0.9999
    # 0.1 ms left: rounded up to 1 ms, never 0 while the request is refused.
    assert refused(limiter, "k", limit).extra["retry_after_ms"] == 1


def test_retry_after_uses_the_limit_rate(limiter: RateLimiter) -> None:
    limit = RateLimit(per_second=0.1, burst=1)
    limiter.check("login", "k", limit)
    assert refused(limiter, "k", limit).extra["retry_after_ms"] == 10_000
    fast = RateLimit(per_second=4, burst=1)
    limiter.check("login", "f", fast)
    assert refused(limiter, "f", fast).extra["retry_after_ms"] == 250


def test_refill_over_time(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(3):
        limiter.check("login", "k", LIMIT)
    clock.now += 2  # one token
    limiter.check("login", "k", LIMIT)
    refused(limiter, "k")
    clock.now += 4  # two tokens
    limiter.check("login", "k", LIMIT)
    limiter.check("login", "k", LIMIT)
    refused(limiter, "k")


def test_refill_is_capped_at_burst(limiter: RateLimiter, clock: FakeClock) -> None:
    limiter.check("login", "k", LIMIT)
    # 2 tokens left; 5 s would add 2.5 more, but the bucket holds at most `burst` (3). (The
    # state's TTL is 7 s, so the stored level is what is being read here.)
    clock.now += 5
    for _ in range(3):
        limiter.check("login", "k", LIMIT)
    refused(limiter, "k")


def test_bucket_state_expires_when_full(
    limiter: RateLimiter, clock: FakeClock, store: TTLStore
) -> None:
    for _ in range(3):
        limiter.check("login", "k", LIMIT)
    assert len(store) == 1
    # An empty bucket is full again after burst / per_second = 6 s; the entry lives a bit longer.
    ttl = store.ttl("rl:login:k")
    assert ttl is not None
    assert ttl >= 6
    clock.now += ttl
    assert len(store) == 1
    assert store.sweep() == 1
    for _ in range(3):
        limiter.check("login", "k", LIMIT)
    refused(limiter, "k")


def test_buckets_and_keys_are_independent(limiter: RateLimiter) -> None:
    for _ in range(3):
        limiter.check("login", "a", LIMIT)
    refused(limiter, "a")
    limiter.check("login", "b", LIMIT)
    limiter.check("register", "a", LIMIT)


def test_disabled_limiter_never_raises(store: TTLStore, clock: FakeClock) -> None:
    limiter = RateLimiter(store, enabled=False, clock=clock)
    tiny = RateLimit(per_second=0.001, burst=1)
    for _ in range(100):
        limiter.check("login", "k", tiny)
        limiter.record("login", "k", tiny)
        limiter.ensure_available("login", "k", tiny)
    assert len(store) == 0


def test_ensure_available_does_not_take_tokens(limiter: RateLimiter) -> None:
    for _ in range(10):
        limiter.ensure_available("fail", "@a:x", LIMIT)
    for _ in range(3):
        limiter.check("fail", "@a:x", LIMIT)
    with pytest.raises(MatrixError) as info:
        limiter.ensure_available("fail", "@a:x", LIMIT)
    assert info.value.status == 429
    assert info.value.extra["retry_after_ms"] == 2000


def test_record_takes_tokens_without_refusing(limiter: RateLimiter, clock: FakeClock) -> None:
    # The login-failure pattern: ensure_available before, record after each failure.
    for _ in range(3):
        limiter.ensure_available("fail", "@a:x", LIMIT)
        limiter.record("fail", "@a:x", LIMIT)
    with pytest.raises(MatrixError):
        limiter.ensure_available("fail", "@a:x", LIMIT)
    # Recording on an empty bucket does not raise and does not go below zero.
    for _ in range(5):
        limiter.record("fail", "@a:x", LIMIT)
    clock.now += 2  # one token back, not a debt to pay first
    limiter.ensure_available("fail", "@a:x", LIMIT)
    limiter.check("fail", "@a:x", LIMIT)
    with pytest.raises(MatrixError):
        limiter.ensure_available("fail", "@a:x", LIMIT)


def test_record_on_fresh_bucket_starts_from_burst(limiter: RateLimiter) -> None:
    limiter.record("fail", "k", LIMIT)
    limiter.check("fail", "k", LIMIT)
    limiter.check("fail", "k", LIMIT)
    refused(limiter, "k", bucket="fail")
