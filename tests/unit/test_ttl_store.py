"""TTLStore: expiry on an injected clock, lazy expiry on reads, the heap sweep and the sweeper."""

from __future__ import annotations

import pytest
import trio

from tests.unit.fakes import FakeClock
from trioserver.storage.ttl_store import TTLStore


def test_get_set_delete(store: TTLStore) -> None:
    assert store.get("a") is None
    store.set("a", {"x": 1}, ttl=10)
    assert store.get("a") == {"x": 1}
    assert len(store) == 1
    assert store.delete("a") is True
    assert store.get("a") is None
    assert store.delete("a") is False
    assert len(store) == 0


def test_set_overwrites_value(store: TTLStore) -> None:
    store.set("a", 1, ttl=10)
    store.set("a", 2, ttl=10)
    assert store.get("a") == 2
    assert len(store) == 1


@pytest.mark.parametrize("ttl", [0, -1, -0.5])
def test_set_rejects_non_positive_ttl(store: TTLStore, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.set("a", 1, ttl=ttl)
    assert store.get("a") is None


def test_expiry_exactly_at_boundary(store: TTLStore, clock: FakeClock) -> None:
    store.set("a", "v", ttl=10)
    clock.now += 9.999
    assert store.get("a") == "v"
    assert store.ttl("a") == pytest.approx(0.001)
    clock.now = 1010.0  # expires = set time + ttl, and an entry is dead AT its expiry
    assert store.get("a") is None
    assert store.ttl("a") is None
    # The read dropped it even without a sweep.
    assert len(store) == 0


def test_ttl_counts_down(store: TTLStore, clock: FakeClock) -> None:
    assert store.ttl("missing") is None
    store.set("a", 1, ttl=30)
    assert store.ttl("a") == pytest.approx(30)
    clock.now += 12
    assert store.ttl("a") == pytest.approx(18)


def test_set_if_absent(store: TTLStore, clock: FakeClock) -> None:
    assert store.set_if_absent("a", 1, ttl=5) is True
    assert store.set_if_absent("a", 2, ttl=100) is False
    assert store.get("a") == 1
    assert store.ttl("a") == pytest.approx(5)  # the losing call did not touch the expiry
    clock.now += 5
    # Expired counts as absent.
    assert store.set_if_absent("a", 3, ttl=5) is True
    assert store.get("a") == 3


def test_replace_keeps_expiry(store: TTLStore, clock: FakeClock) -> None:
    assert store.replace("a", 1) is False
    assert store.get("a") is None  # replace does not create
    store.set("a", 1, ttl=10)
    clock.now += 4
    assert store.replace("a", 2) is True
    assert store.get("a") == 2
    assert store.ttl("a") == pytest.approx(6)
    clock.now += 6
    assert store.get("a") is None
    assert store.replace("a", 3) is False


def test_incr_creates_counts_and_keeps_expiry(store: TTLStore, clock: FakeClock) -> None:
    assert store.incr("c", ttl=10) == 1
    assert store.incr("c") == 2
    assert store.incr("c", 5) == 7
    assert store.incr("c", -3) == 4
    assert store.get("c") == 4
    clock.now += 6
    # Incrementing does not extend the counter's life.
    assert store.incr("c", ttl=100) == 5
    assert store.ttl("c") == pytest.approx(4)
    clock.now += 4
    assert store.get("c") is None
    # An expired counter starts again from `amount`, with the new ttl.
    assert store.incr("c", 2, ttl=20) == 2
    assert store.ttl("c") == pytest.approx(20)


def test_incr_on_non_int_raises_type_error(store: TTLStore) -> None:
    store.set("s", "text", ttl=10)
    with pytest.raises(TypeError, match="'s'"):
        store.incr("s")
    assert store.get("s") == "text"
    store.set("f", 1.5, ttl=10)
    with pytest.raises(TypeError):
        store.incr("f")


def test_expired_key_is_absent_for_delete(store: TTLStore, clock: FakeClock) -> None:
    store.set("a", 1, ttl=10)
    clock.now += 10
    # get/ttl/replace/set_if_absent all treat an expired key as absent; delete should agree.
    assert store.delete("a") is False


def test_sweep_counts_only_expired(store: TTLStore, clock: FakeClock) -> None:
    store.set("a", 1, ttl=1)
    store.set("b", 2, ttl=2)
    store.set("c", 3, ttl=3)
    store.set("long", 4, ttl=100)
    assert store.sweep() == 0
    clock.now += 2
    assert store.sweep() == 2
    assert len(store) == 2
    assert store.sweep() == 0
    clock.now += 1
    assert store.sweep() == 1
    assert len(store) == 1
    assert store.get("long") == 4


def test_sweep_does_not_count_deleted_or_lazily_expired_keys(
    store: TTLStore, clock: FakeClock
) -> None:
    store.set("deleted", 1, ttl=1)
    store.set("read", 2, ttl=1)
    store.set("swept", 3, ttl=1)
    store.delete("deleted")
    clock.now += 1
    assert store.get("read") is None  # dropped by the read
    assert store.sweep() == 1
    assert len(store) == 0


def test_reset_extends_expiry_and_sweep_keeps_it(store: TTLStore, clock: FakeClock) -> None:
    store.set("a", "old", ttl=10)
    clock.now += 5
    store.set("a", "new", ttl=10)  # now expires at +15
    clock.now += 5  # the first expiry time: its stale heap entry pops now
    assert store.sweep() == 0
    assert store.get("a") == "new"
    assert len(store) == 1
    clock.now += 4.5
    assert store.sweep() == 0
    assert store.get("a") == "new"
    clock.now += 0.5
    assert store.sweep() == 1
    assert len(store) == 0


def test_reset_to_shorter_expiry_is_swept_at_new_time(store: TTLStore, clock: FakeClock) -> None:
    store.set("a", 1, ttl=100)
    store.set("a", 2, ttl=1)
    clock.now += 1
    assert store.sweep() == 1
    assert len(store) == 0
    clock.now += 100
    assert store.sweep() == 0  # the stale long entry finds nothing to drop


def test_heap_is_compacted_after_many_overwrites(store: TTLStore, clock: FakeClock) -> None:
    for i in range(5000):
        store.set("hot", i, ttl=60)
    store.set("other", "x", ttl=30)
    assert len(store._heap) == 5001  # one stale entry per overwrite until a sweep
    assert store.sweep() == 0
    assert len(store._heap) <= 2 * len(store) + 1024
    assert len(store._heap) == 2
    assert store.get("hot") == 4999
    # The rebuilt heap still drives expiry.
    clock.now += 30
    assert store.sweep() == 1
    assert store.get("other") is None
    clock.now += 30
    assert store.sweep() == 1
    assert len(store) == 0
    assert store._heap == []


def test_heap_stays_bounded_under_sustained_overwrites(store: TTLStore, clock: FakeClock) -> None:
    for _round in range(20):
        for i in range(1000):
            store.set(f"k{i % 10}", i, ttl=60)
        clock.now += 1
        store.sweep()
        assert len(store._heap) <= 2 * len(store) + 1024
    assert len(store) == 10


async def test_sweeper_task_removes_expired_keys(autojump_clock: trio.testing.MockClock) -> None:
    store = TTLStore(clock=trio.current_time, sweep_interval=30)
    store.set("short", 1, ttl=10)
    store.set("long", 2, ttl=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await trio.sleep(29)
        # "short" expired at t=10 but nothing read or swept it: it is still held in memory.
        assert len(store) == 2
        await trio.sleep(2)  # past the first sweep at t=30
        assert len(store) == 1
        assert store.get("long") == 2
        await trio.sleep(90)  # sweeps at 60, 90, 120
        assert len(store) == 0
        nursery.cancel_scope.cancel()


async def test_sweeper_reclaims_memory_without_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = TTLStore(clock=trio.current_time, sweep_interval=5)
    for i in range(100):
        store.set(f"k{i}", i, ttl=1 + i % 3)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await trio.sleep(4.9)
        assert len(store) == 100  # no sweep yet, no reads
        await trio.sleep(0.2)
        assert len(store) == 0
        assert store._heap == []
        nursery.cancel_scope.cancel()
