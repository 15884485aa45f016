"""KeyedSerializer (per-key mutual exclusion) and Notifier (long-poll wake-ups)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio
import trio.lowlevel
import trio.testing

from trioserver.concurrency import KeyedSerializer, Notifier

# -- KeyedSerializer ----------------------------------------------------------------------------


@asynccontextmanager
async def no_lock(key: str) -> AsyncIterator[None]:
    yield


async def run_increments(
    hold: Callable[[str], AbstractAsyncContextManager[None]], keys: list[str], tasks: int
) -> dict[str, int]:
    counters = dict.fromkeys(keys, 0)

    async def increment(key: str) -> None:
        async with hold(key):
            value = counters[key]
            await trio.lowlevel.checkpoint()  # another task may run here
            counters[key] = value + 1

    async with trio.open_nursery() as nursery:
        for key in keys:
            for _ in range(tasks):
                nursery.start_soon(increment, key)
    return counters


async def test_serializer_never_loses_an_update() -> None:
    serializer = KeyedSerializer()
    counters = await run_increments(serializer.hold, ["a", "b", "c"], 50)
    assert counters == {"a": 50, "b": 50, "c": 50}
    assert len(serializer) == 0


async def test_without_serializer_updates_are_lost() -> None:
    # The control experiment: the same read-sleep-write loses updates when nothing serializes it,
    # so the test above would catch a serializer that does not exclude.
    counters = await run_increments(no_lock, ["a", "b", "c"], 50)
    assert all(value < 50 for value in counters.values()), counters


async def test_different_keys_run_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    serializer = KeyedSerializer()
    finished: dict[str, float] = {}
    start = trio.current_time()

    async def work(name: str, key: str) -> None:
        async with serializer.hold(key):
            await trio.sleep(1)
        finished[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(work, "x", "key1")
        nursery.start_soon(work, "y", "key2")
    assert finished == {"x": 1.0, "y": 1.0}

    finished.clear()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(work, "x", "same")
        nursery.start_soon(work, "y", "same")
    assert sorted(finished.values()) == [1.0, 2.0]
    assert len(serializer) == 0


async def test_lock_entries_exist_only_while_held_or_awaited() -> None:
    serializer = KeyedSerializer()
    assert len(serializer) == 0
    async with serializer.hold("a"):
        assert len(serializer) == 1
        async with serializer.hold("b"):
            assert len(serializer) == 2
        assert len(serializer) == 1
    assert len(serializer) == 0
    assert serializer._locks == {}


async def test_cancelled_waiter_is_cleaned_up(autojump_clock: trio.testing.MockClock) -> None:
    serializer = KeyedSerializer()
    release = trio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with serializer.hold("k"):
            entered.append("holder")
            await release.wait()

    async def waiter(name: str, scope: trio.CancelScope) -> None:
        with scope:
            async with serializer.hold("k"):
                entered.append(name)

    cancelled = trio.CancelScope()
    kept = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "cancelled", cancelled)
        nursery.start_soon(waiter, "kept", kept)
        await trio.testing.wait_all_tasks_blocked()
        assert len(serializer) == 1
        assert serializer._locks["k"][1] == 3  # holder and two waiters
        cancelled.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert serializer._locks["k"][1] == 2
        release.set()
    assert entered == ["holder", "kept"]
    assert cancelled.cancelled_caught
    assert len(serializer) == 0


async def test_only_waiter_cancelled_then_holder_leaves() -> None:
    serializer = KeyedSerializer()
    release = trio.Event()

    async def holder() -> None:
        async with serializer.hold("k"):
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.01) as scope:
            async with serializer.hold("k"):
                pytest.fail("acquired a held lock")
        assert scope.cancelled_caught
        assert len(serializer) == 1
        release.set()
    assert len(serializer) == 0
    # The key is usable again.
    async with serializer.hold("k"):
        assert len(serializer) == 1


async def test_exception_inside_block_releases_key() -> None:
    serializer = KeyedSerializer()
    with pytest.raises(ZeroDivisionError):
        async with serializer.hold("k"):
            1 / 0  # noqa: B018
    assert len(serializer) == 0
    with trio.fail_after(1):
        async with serializer.hold("k"):
            pass
    assert len(serializer) == 0


async def test_exception_with_waiter_hands_lock_over() -> None:
    serializer = KeyedSerializer()
    order: list[str] = []

    async def failing() -> None:
        try:
            async with serializer.hold("k"):
                order.append("failing")
                await trio.sleep(0.01)
                raise RuntimeError("boom")
        except RuntimeError:
            order.append("raised")

    async def second() -> None:
        async with serializer.hold("k"):
            order.append("second")

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(failing)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
    assert order == ["failing", "raised", "second"]
    assert len(serializer) == 0


# -- Notifier -----------------------------------------------------------------------------------


async def test_wait_returns_true_when_watched_key_notified(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Notifier()
    result: list[tuple[bool, float]] = []

    async def waiter() -> None:
        woke = await notifier.wait(["a", "b"], since=0, timeout=30)
        result.append((woke, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(3)
        notifier.notify(["b"], 7)
    assert result == [(True, start + 3)]
    assert notifier.latest("b") == 7
    assert notifier.latest("a") == 0
    assert notifier.waiting() == 0


async def test_wait_times_out(autojump_clock: trio.testing.MockClock) -> None:
    notifier = Notifier()
    start = trio.current_time()
    assert await notifier.wait(["a"], since=0, timeout=5) is False
    assert trio.current_time() - start == 5
    assert notifier.waiting() == 0


async def test_notify_for_other_key_does_not_wake(autojump_clock: trio.testing.MockClock) -> None:
    notifier = Notifier()
    result: list[tuple[bool, float]] = []

    async def waiter() -> None:
        woke = await notifier.wait(["a"], since=0, timeout=10)
        result.append((woke, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        notifier.notify(["b", "c"], 5)
        assert notifier.waiting() == 1
    assert result == [(False, start + 10)]


async def test_since_earlier_notification_returns_immediately(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Notifier()
    notifier.notify(["a"], 5)
    start = trio.current_time()
    assert await notifier.wait(["x", "a"], since=4, timeout=10) is True
    assert trio.current_time() == start  # no waiting at all
    assert notifier.waiting() == 0


@pytest.mark.parametrize("since", [5, 6])
async def test_since_covers_earlier_notification(
    autojump_clock: trio.testing.MockClock, since: int
) -> None:
    notifier = Notifier()
    notifier.notify(["a"], 5)
    start = trio.current_time()
    assert await notifier.wait(["a"], since=since, timeout=10) is False
    assert trio.current_time() - start == 10


async def test_latest_never_goes_backwards() -> None:
    notifier = Notifier()
    notifier.notify(["a"], 9)
    notifier.notify(["a"], 3)
    assert notifier.latest("a") == 9
    assert await notifier.wait(["a"], since=8, timeout=0) is True


async def test_many_waiters_wake_exactly_when_their_keys_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Notifier()
    nkeys = 10
    woke_at: dict[int, tuple[bool, float]] = {}

    def keys_of(i: int) -> list[str]:
        return [f"k{i % nkeys}", f"k{(i * 7 + 3) % nkeys}"]

    async def waiter(i: int) -> None:
        woke = await notifier.wait(keys_of(i), since=0, timeout=1000)
        woke_at[i] = (woke, trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(waiter, i)
        await trio.testing.wait_all_tasks_blocked()
        assert notifier.waiting() == sum(len(set(keys_of(i))) for i in range(200))
        # Key k{n} changes at t = n + 1 (in a shuffled order of keys over time).
        order = [3, 0, 7, 1, 9, 4, 2, 8, 5, 6]
        for step, n in enumerate(order, start=1):
            await trio.sleep_until(start + step)
            notifier.notify([f"k{n}"], step)
    change_time = {f"k{n}": step for step, n in enumerate(order, start=1)}
    for i in range(200):
        expected = min(change_time[k] for k in keys_of(i))
        assert woke_at[i] == (True, start + expected), i
    assert len(woke_at) == 200
    assert notifier.waiting() == 0


async def test_cancellation_removes_registrations(autojump_clock: trio.testing.MockClock) -> None:
    notifier = Notifier()
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(notifier.wait, ["a", "b", "c"], 0, 100)
        await trio.testing.wait_all_tasks_blocked()
        assert notifier.waiting() == 15
        nursery.cancel_scope.cancel()
    assert notifier.waiting() == 0
    assert notifier._waiters == {}
    assert trio.current_time() < 100


async def test_one_notify_wakes_all_waiters_on_the_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Notifier()
    results: list[bool] = []

    async def waiter(keys: list[str]) -> None:
        results.append(await notifier.wait(keys, since=0, timeout=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, ["a"])
        nursery.start_soon(waiter, ["a", "b"])
        nursery.start_soon(waiter, ["b"])
        await trio.testing.wait_all_tasks_blocked()
        notifier.notify(["a"], 1)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(results) == [True, True]
        # The waiter on both keys is no longer registered under "b".
        assert notifier.waiting() == 1
    assert sorted(results) == [False, True, True]


async def test_notify_at_or_before_since_does_not_wake_a_waiter(autojump_clock) -> None:
    notifier = Notifier()
    woke: list[bool] = []

    async def waiter() -> None:
        woke.append(await notifier.wait(["k"], since=10, timeout=5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        notifier.notify(["k"], 10)  # not newer than what the waiter has seen
        await trio.sleep(1)
        assert woke == []
        notifier.notify(["k"], 11)
    assert woke == [True]
    assert trio.current_time() == pytest.approx(2)
