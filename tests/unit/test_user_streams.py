"""The per-user stream sources (account data, typing, presence, to-device) driven directly:
positions, exactly-once delivery over consecutive (since, upto] windows, initial syncs."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.testing

from tests.unit.fakes import FakeClock
from trioserver.concurrency import Notifier
from trioserver.errors import MatrixError
from trioserver.services.account_data import AccountData, tag_body, tags_of
from trioserver.services.presence import Presence
from trioserver.services.sessions import Requester
from trioserver.services.sync.streams import (
    StreamSource,
    SyncContext,
    SyncResult,
    room_key,
    user_key,
)
from trioserver.services.to_device import MAX_MESSAGES_PER_REQUEST, ToDevice, parse_messages
from trioserver.services.typing_notifications import Typing
from trioserver.storage.db import Database
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo
from trioserver.storage.repositories import users as users_repo

A, B, C, D = "@a:hs", "@b:hs", "@c:hs", "@d:hs"
R1, R2, R3 = "!r1:hs", "!r2:hs", "!r3:hs"
# Who is joined where: A and B share R1, A and C share R2, D is alone in R3 (with B invited).
JOINED = {R1: [A, B], R2: [A, C], R3: [D]}


def seed(conn: apsw.Connection) -> None:
    for user in (A, B, C, D):
        users_repo.insert_user(conn, user, None, now_ms=0)
        for device in ("DEV1", "DEV2"):
            devices_repo.upsert_device(conn, user, device, None, 0)
    for room, members in JOINED.items():
        rooms_repo.insert_room(conn, room, "12", members[0], 0, False)
        for user in members:
            events_repo.set_current_state(conn, room, "m.room.member", user, f"$j{user}{room}",
                                          "join")
    events_repo.set_current_state(conn, R3, "m.room.member", B, "$invite", "invite")


@pytest.fixture
async def db(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Database]:
    database = Database.open(tmp_path / "db.sqlite", readers=2)
    database.write_sync(seed)
    await nursery.start(database.run)
    yield database
    database.close()


def ctx(user: str, *, device: str = "DEV1", initial: bool = False) -> SyncContext:
    return SyncContext(user, device, [r for r, members in JOINED.items() if user in members],
                       initial)


async def collect(source: StreamSource, context: SyncContext, since: int | None,
                  upto: int) -> SyncResult:
    out = SyncResult()
    await source.collect(context, since, upto, out)
    return out


def requester(user: str, device: str = "DEV1") -> Requester:
    return Requester(user, device, False, b"")


def room_data(out: SyncResult) -> dict[str, list[dict[str, Any]]]:
    return {r: x.account_data for r, x in out.rooms.items() if x.account_data}


def typing_of(out: SyncResult) -> dict[str, list[str]]:
    return {r: x.ephemeral[0]["content"]["user_ids"] for r, x in out.rooms.items()
            if x.ephemeral}


def senders(out: SyncResult) -> list[str]:
    return [e["sender"] for e in out.presence]


# -- account data ----------------------------------------------------------------------------


async def account_data(db: Database, notifier: Notifier | None = None) -> AccountData:
    # The room cache and reader are only used by the tag endpoints' membership check.
    return AccountData(db, notifier or Notifier(), None, None)  # type: ignore[arg-type]


async def test_account_data_initial_sync_shows_global_and_joined_rooms_only(db: Database
                                                                            ) -> None:
    ad = await account_data(db)
    await ad.set_account_data(A, "m.direct", {"@b:hs": [R1]})
    await ad.set_room_account_data(A, R1, "m.fully_read", {"event_id": "$e"})
    await ad.set_room_account_data(A, R3, "x.not_joined", {})
    await ad.set_account_data(B, "x.someone_else", {"secret": 1})
    upto = await ad.source.current_position()
    out = await collect(ad.source, ctx(A, initial=True), None, upto)
    assert out.account_data == [{"type": "m.direct", "content": {"@b:hs": [R1]}}]
    assert room_data(out) == {R1: [{"type": "m.fully_read", "content": {"event_id": "$e"}}]}


async def test_account_data_consecutive_windows_deliver_each_change_once(db: Database) -> None:
    ad = await account_data(db)
    positions = [await ad.source.current_position()]
    writes: list[tuple[str | None, str, dict[str, Any]]] = [
        (None, "x.one", {"n": 1}), (R1, "x.room", {"n": 2}), (None, "x.two", {"n": 3}),
        (R2, "m.tag", {"tags": {"u.work": {}}}), (None, "x.one", {"n": 5}),
    ]
    seen: list[tuple[str | None, str, dict[str, Any]]] = []

    def record(out: SyncResult) -> None:
        seen.extend((None, e["type"], e["content"]) for e in out.account_data)
        seen.extend((r, e["type"], e["content"]) for r, events in room_data(out).items()
                    for e in events)

    # A client syncing after every write sees every write once, in order.
    for room, data_type, content in writes:
        if room is None:
            await ad.set_account_data(A, data_type, content)
        else:
            await ad.set_room_account_data(A, room, data_type, content)
        positions.append(await ad.source.current_position())
        record(await collect(ad.source, ctx(A), positions[-2], positions[-1]))
    assert positions == sorted(set(positions)), "every write takes a new, higher position"
    assert seen == writes
    # Replaying the windows afterwards: a key rewritten later is only sent at its newest
    # position, so each key arrives exactly once, with its newest content.
    seen.clear()
    for since, upto in itertools.pairwise(positions):
        record(await collect(ad.source, ctx(A), since, upto))
    assert seen == writes[1:]
    # One window over everything: each key once, with its newest content.
    out = await collect(ad.source, ctx(A), positions[0], positions[-1])
    assert sorted((e["type"], e["content"]["n"]) for e in out.account_data) == [
        ("x.one", 5), ("x.two", 3)]
    # Nothing after the newest position.
    out = await collect(ad.source, ctx(A), positions[-1], positions[-1])
    assert not out.has_updates()


async def test_account_data_never_returns_data_past_upto(db: Database) -> None:
    ad = await account_data(db)
    await ad.set_account_data(A, "x.early", {})
    upto = await ad.source.current_position()
    await ad.set_account_data(A, "x.late", {})
    out = await collect(ad.source, ctx(A, initial=True), None, upto)
    assert [e["type"] for e in out.account_data] == ["x.early"]
    out = await collect(ad.source, ctx(A), upto, await ad.source.current_position())
    assert [e["type"] for e in out.account_data] == ["x.late"]


async def test_account_data_position_is_durable_and_wakes_the_user(db: Database) -> None:
    notifier = Notifier()
    ad = await account_data(db, notifier)
    assert await ad.source.current_position() == 0
    await ad.set_account_data(A, "x.a", {"v": 1})
    assert notifier.latest(user_key(A)) > 0
    assert notifier.latest(user_key(B)) == 0
    await ad.set_account_data(A, "x.a", {"v": 2})  # replaces the row of the first write
    position = await ad.source.current_position()
    # A fresh service (a restarted server) reads the same position, even though the row that
    # carried the first position is gone.
    assert await (await account_data(db)).source.current_position() == position == 2
    assert await ad.get(requester(A), A, "x.a") == {"v": 2}


async def test_account_data_endpoint_rules(db: Database) -> None:
    ad = await account_data(db)
    with pytest.raises(MatrixError) as e:
        await ad.put(requester(B), A, "x.a", {})
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as e:
        await ad.get(requester(B), A, "x.a")
    assert e.value.status == 403
    for data_type in ("m.fully_read", "m.push_rules"):
        for room in (None, R1):
            with pytest.raises(MatrixError) as e:
                await ad.put(requester(A), A, data_type, {}, room)
            assert (e.value.status, e.value.errcode) == (405, "M_BAD_JSON")
    with pytest.raises(MatrixError) as e:
        await ad.get(requester(A), A, "x.unset", R1)
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as e:
        await ad.put(requester(A), A, "x.a", {}, "not-a-room")
    assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")
    # Programmatic setters bypass the client rules (read markers store m.fully_read).
    await ad.set_room_account_data(A, R1, "m.fully_read", {"event_id": "$x"})
    assert await ad.get(requester(A), A, "m.fully_read", R1) == {"event_id": "$x"}


async def test_tag_validation() -> None:
    assert tag_body({"order": 0.5, "x": 1}) == {"order": 0.5, "x": 1}
    assert tag_body({"order": None}) == {}
    assert tag_body({"order": 0}) == {"order": 0}
    assert tag_body({"order": 1}) == {"order": 1}
    for bad in (1.5, -0.1, "0.5", True):
        with pytest.raises(MatrixError):
            tag_body({"order": bad})
    assert tags_of({"tags": {"u.a": {}, "u.b": "junk"}}) == {"u.a": {}}
    assert tags_of({"tags": []}) == {}
    assert tags_of(None) == {}


async def test_removing_a_missing_tag_takes_no_position(db: Database) -> None:
    ad = await account_data(db)
    await ad.set_room_account_data(A, R1, "m.tag", {"tags": {"u.a": {}, "u.b": {"order": 1}}})
    before = await ad.source.current_position()
    await ad.remove_tag(requester(A), A, R1, "u.nope")
    assert await ad.source.current_position() == before
    await ad.remove_tag(requester(A), A, R1, "u.a")
    assert await ad.source.current_position() == before + 1
    assert await ad.tags(requester(A), A, R1) == {"tags": {"u.b": {"order": 1}}}


# -- typing ----------------------------------------------------------------------------------


def typing_service(clock: FakeClock, notifier: Notifier | None = None) -> Typing:
    return Typing(notifier or Notifier(), None, None,  # type: ignore[arg-type]
                  clock=clock, epoch=1000)


async def test_typing_windows_and_renewals(clock: FakeClock) -> None:
    ty = typing_service(clock)
    p0 = await ty.source.current_position()
    assert p0 == 1000
    ty.start(R1, B, 30)
    p1 = await ty.source.current_position()
    assert typing_of(await collect(ty.source, ctx(A), p0, p1)) == {R1: [B]}
    ty.start(R1, B, 30)  # a renewal: nobody sees a change
    assert await ty.source.current_position() == p1
    ty.start(R1, A, 30)
    p2 = await ty.source.current_position()
    assert typing_of(await collect(ty.source, ctx(A), p1, p2)) == {R1: [A, B]}
    ty.stop(R1, B)
    p3 = await ty.source.current_position()
    assert p0 < p1 < p2 < p3
    assert typing_of(await collect(ty.source, ctx(A), p2, p3)) == {R1: [A]}
    assert typing_of(await collect(ty.source, ctx(A), p3, p3)) == {}
    # A room that changed again later is only sent in the window of its last change.
    assert typing_of(await collect(ty.source, ctx(A), p0, p1)) == {}
    assert typing_of(await collect(ty.source, ctx(A), p0, p3)) == {R1: [A]}
    # Rooms the syncing user is not joined to are never included.
    ty.start(R3, D, 30)
    assert typing_of(await collect(ty.source, ctx(A), p3,
                                   await ty.source.current_position())) == {}
    # Stopping someone who is not typing changes nothing.
    before = await ty.source.current_position()
    ty.stop(R2, C)
    assert await ty.source.current_position() == before


async def test_typing_initial_sync_lists_only_rooms_with_typers(clock: FakeClock) -> None:
    ty = typing_service(clock)
    ty.start(R1, B, 30)
    ty.start(R2, C, 30)
    ty.stop(R2, C)
    upto = await ty.source.current_position()
    out = await collect(ty.source, ctx(A, initial=True), None, upto)
    assert typing_of(out) == {R1: [B]}
    assert out.rooms[R1].ephemeral == [{"type": "m.typing", "content": {"user_ids": [B]}}]


async def test_typing_change_after_upto_is_left_for_the_next_sync(clock: FakeClock) -> None:
    ty = typing_service(clock)
    since = await ty.source.current_position()
    ty.start(R1, B, 30)
    upto = await ty.source.current_position()
    ty.start(R2, C, 30)
    assert typing_of(await collect(ty.source, ctx(A), since, upto)) == {R1: [B]}
    assert typing_of(await collect(ty.source, ctx(A), upto,
                                   await ty.source.current_position())) == {R2: [C]}


async def test_typing_expiry_bumps_position_and_wakes_the_room(clock: FakeClock) -> None:
    notifier = Notifier()
    ty = typing_service(clock, notifier)
    ty.start(R1, B, 5)
    ty.start(R2, C, 60)
    p1 = await ty.source.current_position()
    woken = notifier.latest(room_key(R1))
    clock.now += 4
    assert ty.expire() == 0
    assert await ty.source.current_position() == p1
    clock.now += 2
    # Expired typers are hidden even before the sweep...
    assert ty.typing_in(R1) == []
    assert ty.expire() == 1
    # ...and the sweep makes the change visible to incremental syncs.
    p2 = await ty.source.current_position()
    assert p2 > p1
    assert notifier.latest(room_key(R1)) > woken
    assert typing_of(await collect(ty.source, ctx(A), p1, p2)) == {R1: []}
    # A renewal keeps the typer past its first expiry.
    ty.start(R2, C, 60)
    clock.now += 59
    assert ty.expire() == 0
    assert ty.typing_in(R2) == [C]


async def test_typing_run_task_expires_on_time(autojump_clock: trio.testing.MockClock) -> None:
    notifier = Notifier()
    ty = Typing(notifier, None, None, epoch=1)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(ty.run)
        ty.start(R1, B, 10)
        p1 = await ty.source.current_position()
        await trio.sleep(9)
        assert await ty.source.current_position() == p1
        await trio.sleep(2)
        assert await ty.source.current_position() == p1 + 1
        assert ty.typing_in(R1) == []
        # A typer added while the task sleeps with no deadline is still expired.
        ty.start(R2, C, 3)
        await trio.sleep(4)
        assert await ty.source.current_position() == p1 + 3
        nursery.cancel_scope.cancel()


async def test_typing_token_from_another_run_resends_every_joined_room(clock: FakeClock
                                                                         ) -> None:
    ty = typing_service(clock)
    ty.start(R1, B, 30)
    upto = await ty.source.current_position()
    for stale_since in (5, upto + 100):  # before this run's epoch, or past its position
        out = await collect(ty.source, ctx(A), stale_since, upto)
        assert typing_of(out) == {R1: [B], R2: []}


# -- presence --------------------------------------------------------------------------------


class Millis:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def presence_service(db: Database, millis: Millis, notifier: Notifier | None = None
                     ) -> Presence:
    return Presence(db, notifier or Notifier(), clock=millis, idle_after_ms=300_000,
                    offline_after_ms=1_800_000, active_window_ms=60_000)


async def test_presence_is_shared_only_with_users_in_a_joined_room(db: Database) -> None:
    millis = Millis()
    pr = presence_service(db, millis)
    await pr.touch(B, None)
    await pr.touch(C, "unavailable")
    await pr.touch(D, None)  # shares no room with A (D is in R3, where B is only invited)
    upto = await pr.source.current_position()
    out = await collect(pr.source, ctx(A, initial=True), None, upto)
    assert sorted(senders(out)) == [B, C]
    await pr.touch(A, None)
    out = await collect(pr.source, ctx(A), upto, await pr.source.current_position())
    assert senders(out) == [A], "users see their own presence"
    out = await collect(pr.source, ctx(D), None, await pr.source.current_position())
    assert senders(out) == [D]


async def test_presence_content_and_touch_semantics(db: Database) -> None:
    millis = Millis()
    pr = presence_service(db, millis)
    p0 = await pr.source.current_position()
    await pr.touch(B, "offline")  # "offline" means: do not change anything
    assert await pr.source.current_position() == p0
    await pr.touch(B, None)
    p1 = await pr.source.current_position()
    assert p1 > p0
    millis.now += 20_000
    await pr.touch(B, "online")  # already online and active: no new position
    assert await pr.source.current_position() == p1
    millis.now += 5_000
    out = await collect(pr.source, ctx(A), p0, p1)
    assert out.presence == [{"type": "m.presence", "sender": B, "content": {
        "presence": "online", "currently_active": True, "last_active_ago": 5_000}}]
    await pr.touch(B, "unavailable")
    p2 = await pr.source.current_position()
    assert p2 > p1
    out = await collect(pr.source, ctx(A), p1, p2)
    assert out.presence[0]["content"]["presence"] == "unavailable"
    assert out.presence[0]["content"]["currently_active"] is False
    with pytest.raises(MatrixError):
        await pr.touch(B, "busy")


async def test_presence_consecutive_windows_deliver_each_change_once(db: Database) -> None:
    millis = Millis()
    pr = presence_service(db, millis)
    positions = [await pr.source.current_position()]
    seen: list[tuple[str, str, str]] = []

    def record(out: SyncResult) -> None:
        seen.extend((e["sender"], e["content"]["presence"], e["content"]["status_msg"])
                    for e in out.presence)

    changes = [(B, "online"), (C, "unavailable"), (B, "offline"), (D, "online"), (C, "online")]
    for user, state in changes:
        await pr.set_status(requester(user), user, state, f"{state}!")
        positions.append(await pr.source.current_position())
        record(await collect(pr.source, ctx(A), positions[-2], positions[-1]))
    assert seen == [(u, s, f"{s}!") for u, s in changes if u != D]
    # Replayed afterwards, each user arrives once, in the window of their newest change.
    seen.clear()
    for since, upto in itertools.pairwise(positions):
        record(await collect(pr.source, ctx(A), since, upto))
    assert seen == [(B, "offline", "offline!"), (C, "online", "online!")]
    # The initial view has the newest state of each, and leaves offline users out.
    out = await collect(pr.source, ctx(A, initial=True), None, positions[-1])
    assert [(e["sender"], e["content"]["presence"]) for e in out.presence] == [(C, "online")]


async def test_presence_timeouts_and_who_is_woken(db: Database) -> None:
    millis = Millis()
    notifier = Notifier()
    pr = presence_service(db, millis, notifier)
    await pr.touch(A, None)
    p0 = await pr.source.current_position()
    woke_b, woke_c, woke_d = (notifier.latest(user_key(u)) for u in (B, C, D))
    millis.now += 30_000
    assert await pr.check_timeouts() == 0
    millis.now += 40_000  # 70 s without activity: no longer currently active
    assert await pr.check_timeouts() == 1
    p1 = await pr.source.current_position()
    assert p1 > p0
    # B and C share a room with A and are woken; D is not.
    assert notifier.latest(user_key(B)) > woke_b
    assert notifier.latest(user_key(C)) > woke_c
    assert notifier.latest(user_key(D)) == woke_d
    out = await collect(pr.source, ctx(B), p0, p1)
    assert out.presence[0]["content"] == {"presence": "online", "currently_active": False,
                                          "last_active_ago": 70_000}
    millis.now += 240_000  # over 5 minutes idle
    assert await pr.check_timeouts() == 1
    assert (await pr.get_status(requester(A), A))["presence"] == "unavailable"
    millis.now += 1_500_000  # over 30 minutes without a sync
    assert await pr.check_timeouts() == 1
    p3 = await pr.source.current_position()
    assert (await pr.get_status(requester(A), A))["presence"] == "offline"
    out = await collect(pr.source, ctx(B), p1, p3)
    assert [e["content"]["presence"] for e in out.presence] == ["offline"]
    # Offline users with nothing pending leave memory; they read back from the database.
    await pr.check_timeouts()
    assert A not in pr._users
    assert (await pr.get_status(requester(A), A))["presence"] == "offline"


async def test_presence_survives_a_restart(db: Database) -> None:
    millis = Millis()
    pr = presence_service(db, millis)
    await pr.set_status(requester(B), B, "online", "lunch")
    millis.now += 30_000
    await pr.touch(B, None)  # activity only: kept in memory...
    await pr.check_timeouts()  # ...until the timeout pass writes it back
    position = await pr.source.current_position()
    millis.now += 10_000
    restarted = presence_service(db, millis)
    assert await restarted.source.current_position() == position
    assert await restarted.get_status(requester(B), B) == {
        "presence": "online", "status_msg": "lunch", "currently_active": True,
        "last_active_ago": 10_000}
    # Users online at shutdown are loaded by `run`, so they still time out.
    async with trio.open_nursery() as nursery:
        await nursery.start(restarted.run)
        nursery.cancel_scope.cancel()
    millis.now += 31 * 60_000
    assert await restarted.check_timeouts() == 1
    assert (await restarted.get_status(requester(B), B))["presence"] == "offline"


async def test_presence_get_status_permissions(db: Database) -> None:
    pr = presence_service(db, Millis())
    assert await pr.get_status(requester(A), B) == {"presence": "offline"}
    with pytest.raises(MatrixError) as e:
        await pr.get_status(requester(A), D)
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as e:
        await pr.get_status(requester(A), "@nobody:hs")
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as e:
        await pr.set_status(requester(A), B, "online", None)
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as e:
        await pr.set_status(requester(A), A, "busy", None)
    assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")


# -- to-device -------------------------------------------------------------------------------


def inbox_size(db: Database, user: str, device: str | None = None) -> int:
    def count(conn: apsw.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM to_device_inbox WHERE user_id = ? AND device_id LIKE ?",
            (user, device or "%")).fetchone()
        assert row is not None
        return int(row[0])

    return db.read_sync(count)


def to_device_events(out: SyncResult) -> list[tuple[str, str, Any]]:
    return [(e["sender"], e["type"], e["content"]) for e in out.to_device]


async def test_to_device_fan_out_and_idempotency(db: Database) -> None:
    notifier = Notifier()
    td = ToDevice(db, notifier, "hs")
    msgs = parse_messages({B: {"*": {"k": 1}}, C: {"DEV2": {"k": 2}, "NOPE": {"k": 3}},
                           "@remote:elsewhere": {"*": {"k": 4}}, "@ghost:hs": {"*": {}}})
    await td.send(requester(A), "m.test", "t1", msgs)
    assert (inbox_size(db, B, "DEV1"), inbox_size(db, B, "DEV2")) == (1, 1)
    assert (inbox_size(db, C, "DEV1"), inbox_size(db, C, "DEV2")) == (0, 1)
    assert notifier.latest(user_key(B)) > 0
    assert notifier.latest(user_key(C)) > 0
    assert notifier.latest(user_key(D)) == 0
    position = await td.source.current_position()
    # A retransmission (same device, type and txn id) adds nothing.
    await td.send(requester(A), "m.test", "t1", msgs)
    assert await td.source.current_position() == position
    assert inbox_size(db, B) == 2
    # The same txn id on another device, or for another type, is a new request.
    await td.send(requester(A, "DEV2"), "m.test", "t1", parse_messages({B: {"DEV1": {}}}))
    await td.send(requester(A), "m.other", "t1", parse_messages({B: {"DEV1": {}}}))
    assert inbox_size(db, B, "DEV1") == 3
    # A device-specific message wins over "*" for that device.
    await td.send(requester(A), "m.test", "t2",
                  parse_messages({D: {"*": {"all": 1}, "DEV2": {"mine": 1}}}))
    out = await collect(td.source, ctx(D, device="DEV2"), None,
                        await td.source.current_position())
    assert to_device_events(out) == [(A, "m.test", {"mine": 1})]


async def test_to_device_windows_and_deletion_after_ack(db: Database) -> None:
    td = ToDevice(db, Notifier(), "hs")
    p0 = await td.source.current_position()
    for n in range(3):
        await td.send(requester(A), "m.test", f"t{n}", parse_messages({B: {"DEV1": {"n": n}}}))
    p3 = await td.source.current_position()
    await td.send(requester(C), "m.test", "t3", parse_messages({B: {"DEV1": {"n": 3}}}))
    p4 = await td.source.current_position()

    def numbers(out: SyncResult) -> list[int]:
        return [e["content"]["n"] for e in out.to_device]

    # Initial sync: everything pending up to `upto`, in order of arrival.
    assert numbers(await collect(td.source, ctx(B, initial=True), None, p3)) == [0, 1, 2]
    assert inbox_size(db, B, "DEV1") == 4, "nothing is deleted before the client acks"
    # Other devices of the same user see none of it.
    assert numbers(await collect(td.source, ctx(B, device="DEV2"), None, p4)) == []
    # Syncing from p3 proves receipt of everything up to p3.
    assert numbers(await collect(td.source, ctx(B), p3, p4)) == [3]
    assert inbox_size(db, B, "DEV1") == 1
    # A repeated sync from the same token still gets the unacknowledged message.
    assert numbers(await collect(td.source, ctx(B), p3, p4)) == [3]
    assert numbers(await collect(td.source, ctx(B), p4, p4)) == []
    assert inbox_size(db, B, "DEV1") == 0
    # The position is not reused after the deletion.
    assert await td.source.current_position() == p4 > p0
    assert await ToDevice(db, Notifier(), "hs").source.current_position() == p4


async def test_to_device_inbox_goes_with_its_device(db: Database) -> None:
    td = ToDevice(db, Notifier(), "hs")
    await td.send(requester(A), "m.test", "t", parse_messages({B: {"*": {}}}))
    assert inbox_size(db, B) == 2
    await db.write(lambda c: devices_repo.delete_devices(c, B, ["DEV1"]))
    assert (inbox_size(db, B, "DEV1"), inbox_size(db, B, "DEV2")) == (0, 1)
    await db.write(lambda c: devices_repo.delete_all_devices(c, B))
    assert inbox_size(db, B) == 0


async def test_to_device_request_too_large_is_rejected_whole(db: Database,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import trioserver.services.to_device as module

    monkeypatch.setattr(module, "MAX_MESSAGES_PER_REQUEST", 3)
    td = ToDevice(db, Notifier(), "hs")
    with pytest.raises(MatrixError) as e:
        await td.send(requester(A), "m.test", "t", parse_messages({B: {"*": {}}, C: {"*": {}}}))
    assert (e.value.status, e.value.errcode) == (413, "M_TOO_LARGE")
    assert inbox_size(db, B) == inbox_size(db, C) == 0
    # The failed request did not use up its transaction id.
    await td.send(requester(A), "m.test", "t", parse_messages({B: {"*": {}}}))
    assert inbox_size(db, B) == 2
    assert MAX_MESSAGES_PER_REQUEST >= 1000


@pytest.mark.parametrize("raw", [
    [], {A: []}, {A: {"DEV1": "text"}}, {"not-a-user": {"DEV1": {}}}, {A: {"": {}}},
])
def test_to_device_message_validation(raw: Any) -> None:
    with pytest.raises(MatrixError) as e:
        parse_messages(raw)
    assert e.value.status == 400


def test_sources_have_the_contract_names() -> None:
    sources: dict[str, StreamSource] = {
        "ad": AccountData(None, Notifier(), None, None).source,  # type: ignore[arg-type]
        "ty": Typing(Notifier(), None, None).source,  # type: ignore[arg-type]
        "pr": Presence(None, Notifier()).source,  # type: ignore[arg-type]
        "td": ToDevice(None, Notifier(), "hs").source,  # type: ignore[arg-type]
    }
    assert {name: source.name for name, source in sources.items()} == {
        "ad": "ad", "ty": "ty", "pr": "pr", "td": "td"}


async def test_presence_local_users_go_offline_30s_after_their_last_sync(db: Database) -> None:
    """As Synapse: a local user is offline 30 s after their last sync ended, never while one
    is in progress (a long-poll of any length); another server's user only after 30 minutes
    without news (their server re-sends presence every 25)."""
    millis = Millis()
    pr = Presence(db, Notifier(), clock=millis, server_name="hs")
    await pr.touch(A, None)
    with pr.syncing(A, None):
        millis.now += 290_000  # a five-minute long-poll: still online
        assert await pr.check_timeouts() <= 1  # currently_active may drop, not the state
        assert (await pr.get_status(requester(A), A))["presence"] != "offline"
    millis.now += 25_000  # the client is closed: 25 s after the poll ended
    await pr.check_timeouts()
    assert (await pr.get_status(requester(A), A))["presence"] != "offline"
    millis.now += 10_000  # 35 s
    await pr.check_timeouts()
    assert (await pr.get_status(requester(A), A))["presence"] == "offline"
    # set_presence=offline syncs do not keep anyone online.
    await pr.touch(B, None)
    with pr.syncing(B, "offline"):
        millis.now += 31_000
        await pr.check_timeouts()
        assert (await pr.get_status(requester(B), B))["presence"] == "offline"
    # Another server's users keep their state for 30 minutes (here the service belongs to
    # another server, so A to D are remote to it).
    far = Presence(db, Notifier(), clock=millis, server_name="elsewhere.example")
    await far.touch(C, None)
    millis.now += 29 * 60_000
    await far.check_timeouts()
    assert (await far.get_status(requester(C), C))["presence"] != "offline"
    millis.now += 2 * 60_000
    await far.check_timeouts()
    assert (await far.get_status(requester(C), C))["presence"] == "offline"
