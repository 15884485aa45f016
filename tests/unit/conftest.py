"""Fixtures shared by the unit tests: a fake monotonic clock and a TTL store on it."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeClock
from trioserver.storage.ttl_store import TTLStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> TTLStore:
    return TTLStore(clock=clock)
