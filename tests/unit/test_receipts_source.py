"""The receipts ("rc") and unread counts ("un") stream sources, driven through the real append
pipeline (with the push actions hook) and the receipts service: exactly-once windows, private
receipts, and notification counts after receipts, threads, redactions and joins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.errors import MatrixError
from trioserver.services.events.room_versions import get_room_version
from trioserver.services.events.signing import SigningKey
from trioserver.services.push.actions import PushActions
from trioserver.services.push.service import PushRules
from trioserver.services.receipts.service import Receipts
from trioserver.services.receipts.sources import receipt_events, shape_for_filter
from trioserver.services.rooms.appender import Appender, Draft
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.power_defaults import default_power_levels
from trioserver.services.rooms.reads import RoomReader
from trioserver.services.sync.streams import (
    RoomExtras,
    StreamSource,
    SyncContext,
    SyncResult,
    room_key,
    user_key,
)
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.repositories.receipts import ReceiptRow

A, B, C = "@a:hs", "@b:hs", "@c:hs"


class FakeAccountData:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def set_room_account_data(self, user_id: str, room_id: str, data_type: str,
                                    content: dict[str, Any]) -> None:
        self.data[(user_id, room_id, data_type)] = content

    async def get_room_account_data(self, user_id: str, room_id: str, data_type: str
                                    ) -> dict[str, Any] | None:
        return self.data.get((user_id, room_id, data_type))


@dataclass
class World:
    db: Database
    notifier: Notifier
    appender: Appender
    receipts: Receipts
    actions: PushActions
    rules: PushRules

    async def room(self, creator: str, *members: str) -> str:
        version = get_room_version("12")
        assert version is not None
        drafts = [
            Draft("m.room.member", creator, {"membership": "join"}, state_key=creator),
            Draft("m.room.power_levels", creator,
                  default_power_levels(version, creator, "public_chat", []), state_key=""),
            Draft("m.room.join_rules", creator, {"join_rule": "public"}, state_key=""),
        ]
        room_id, _ = await self.appender.create_room(
            Draft("m.room.create", creator, {"room_version": "12"}, state_key=""), version,
            None, drafts, published=False)
        for member in members:
            await self.join(room_id, member)
        return room_id

    async def join(self, room_id: str, user: str, name: str | None = None) -> str:
        content: dict[str, Any] = {"membership": "join"}
        if name is not None:
            content["displayname"] = name
        appended = await self.appender.append(
            room_id, Draft("m.room.member", user, content, state_key=user))
        return appended.event.event_id

    async def send(self, room_id: str, sender: str, body: str = "hi", **extra: Any) -> str:
        appended = await self.appender.append(room_id, Draft(
            "m.room.message", sender, {"msgtype": "m.text", "body": body, **extra}))
        return appended.event.event_id


@pytest.fixture
async def world(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[World]:
    db = Database.open(tmp_path / "db.sqlite", readers=2)

    def users(conn: Any) -> None:
        for user in (A, B, C):
            users_repo.insert_user(conn, user, None, now_ms=0)

    db.write_sync(users)
    await nursery.start(db.run)
    cache = RoomCache(db)
    notifier = Notifier()
    receipts = Receipts(db=db, cache=cache, notifier=notifier, account_data=FakeAccountData())
    rules = PushRules(db)
    actions = PushActions(server_name="hs", db=db, cache=cache, rules=rules,
                          unread_position=receipts.unread_position,
                          reader=RoomReader(db, cache))
    appender = Appender(server_name="hs", signing_key=SigningKey.generate(), db=db,
                        cache=cache, serializer=KeyedSerializer(), notifier=notifier,
                        commit_hook=actions.prepare)
    yield World(db, notifier, appender, receipts, actions, rules)
    db.close()


async def collect(source: StreamSource, user: str, rooms: list[str], since: int | None,
                  upto: int) -> SyncResult:
    out = SyncResult()
    await source.collect(SyncContext(user, "DEV", rooms, since is None), since, upto, out)
    return out


def receipts_of(out: SyncResult, room_id: str) -> list[tuple[str, str, str, str | None]]:
    """(event_id, type, user, thread_id) of every receipt in the room's ephemeral events,
    by user, type and thread."""
    found = []
    for ev in out.rooms[room_id].ephemeral if room_id in out.rooms else []:
        assert ev["type"] == "m.receipt"
        for event_id, types in ev["content"].items():
            for receipt_type, users in types.items():
                for user, data in users.items():
                    assert isinstance(data["ts"], int)
                    found.append((event_id, receipt_type, user, data.get("thread_id")))
    return sorted(found, key=lambda r: (r[2], r[1], r[3] or "", r[0]))


def counts(out: SyncResult, room_id: str) -> tuple[int, int] | None:
    extras = out.rooms.get(room_id)
    if extras is None or extras.unread_notifications is None:
        return None
    u = extras.unread_notifications
    return u["notification_count"], u["highlight_count"]


async def unread(w: World, user: str, room_id: str) -> tuple[int, int] | None:
    position = await w.receipts.unread_source.current_position()
    return counts(await collect(w.receipts.unread_source, user, [room_id], None, position),
                  room_id)


# -- receipts ("rc") -------------------------------------------------------------------------


async def test_receipt_windows_deliver_each_change_exactly_once(world: World) -> None:
    w = world
    room = await w.room(A, B, C)
    events = [await w.send(room, A, f"m{i}") for i in range(4)]
    source = w.receipts.source
    assert source.name == "rc"
    start = await source.current_position()
    await w.receipts.post_receipt(B, room, "m.read", events[0])
    await w.receipts.post_receipt(C, room, "m.read", events[1])
    p1 = await source.current_position()
    assert p1 == start + 2
    first = receipts_of(await collect(source, A, [room], start, p1), room)
    assert first == [(events[0], "m.read", B, None), (events[1], "m.read", C, None)]

    await w.receipts.post_receipt(B, room, "m.read", events[2])
    p2 = await source.current_position()
    # Written after the window was fixed: not in it, but in the next one.
    await w.receipts.post_receipt(C, room, "m.read", events[3])
    second = receipts_of(await collect(source, A, [room], p1, p2), room)
    assert second == [(events[2], "m.read", B, None)]
    # An initial sync up to p2: the current receipts no newer than p2 (C's moved past it,
    # and comes in the next window).
    assert receipts_of(await collect(source, A, [room], None, p2), room) == \
        [(events[2], "m.read", B, None)]
    p3 = await source.current_position()
    third = receipts_of(await collect(source, A, [room], p2, p3), room)
    assert third == [(events[3], "m.read", C, None)]
    assert (await collect(source, A, [room], p3, p3)).rooms == {}
    # A window over all of it has each user's newest receipt once, in one event; so has an
    # initial sync.
    for since in (start, None):
        out = await collect(source, A, [room], since, p3)
        assert len(out.rooms[room].ephemeral) == 1
        assert receipts_of(out, room) == [(events[2], "m.read", B, None),
                                          (events[3], "m.read", C, None)]


async def test_receipts_notify_the_room_and_private_ones_only_their_owner(world: World
                                                                            ) -> None:
    w = world
    room = await w.room(A, B)
    event_id = await w.send(room, A)
    before_room, before_user = w.notifier.latest(room_key(room)), w.notifier.latest(
        user_key(B))
    await w.receipts.post_receipt(B, room, "m.read.private", event_id)
    assert w.notifier.latest(room_key(room)) == before_room
    assert w.notifier.latest(user_key(B)) > before_user
    await w.receipts.post_receipt(B, room, "m.read", event_id)
    assert w.notifier.latest(room_key(room)) > before_room


async def test_private_receipts_reach_only_their_owner(world: World) -> None:
    w = world
    room = await w.room(A, B)
    event_id = await w.send(room, A)
    start = await w.receipts.source.current_position()
    await w.receipts.post_receipt(B, room, "m.read.private", event_id)
    upto = await w.receipts.source.current_position()
    for since in (None, start):
        assert receipts_of(await collect(w.receipts.source, B, [room], since, upto), room) == \
            [(event_id, "m.read.private", B, None)]
        assert room not in (await collect(w.receipts.source, A, [room], since, upto)).rooms


async def test_receipts_only_for_joined_rooms_and_never_backwards(world: World) -> None:
    w = world
    room = await w.room(A, B)
    other = await w.room(A, B)
    old, new = await w.send(room, A), await w.send(room, A)
    elsewhere = await w.send(other, A)
    await w.receipts.post_receipt(B, room, "m.read", new)
    await w.receipts.post_receipt(B, other, "m.read", elsewhere)
    position = await w.receipts.source.current_position()
    # An older receipt is accepted and ignored: no new position, the newer one stays.
    await w.receipts.post_receipt(B, room, "m.read", old)
    await w.receipts.post_receipt(B, room, "m.read", new)
    assert await w.receipts.source.current_position() == position
    out = await collect(w.receipts.source, A, [room], None, position)
    assert receipts_of(out, room) == [(new, "m.read", B, None)]
    assert other not in out.rooms


async def test_receipt_checks(world: World) -> None:
    w = world
    room = await w.room(A, B)
    other = await w.room(A)
    event_id = await w.send(room, A)
    elsewhere = await w.send(other, A)
    cases: list[tuple[str, str, str, Any, int]] = [
        (C, "m.read", event_id, None, 403),  # not joined
        (B, "m.read", "$unknown", None, 404),
        (B, "m.read", elsewhere, None, 404),
        (B, "m.unread", event_id, None, 400),
        (B, "m.read", event_id, "", 400),
        (B, "m.fully_read", event_id, "main", 400),
        (B, "m.read", event_id, "elsewhere", 400),
    ]
    for user, receipt_type, target, thread, status in cases:
        with pytest.raises(MatrixError) as e:
            await w.receipts.post_receipt(user, room, receipt_type, target, thread)
        assert e.value.status == status, (user, receipt_type, target, thread)
    assert await w.receipts.source.current_position() == 0


async def test_threaded_receipts_are_separate_and_never_collide(world: World) -> None:
    w = world
    room = await w.room(A, B)
    root = await w.send(room, A, "root")
    start = await w.receipts.source.current_position()
    # Unthreaded and main receipts of one user on one event: two m.receipt events.
    await w.receipts.post_receipt(B, room, "m.read", root)
    await w.receipts.post_receipt(B, room, "m.read", root, "main")
    await w.receipts.post_receipt(B, room, "m.read", root, root)
    upto = await w.receipts.source.current_position()
    out = await collect(w.receipts.source, A, [room], start, upto)
    assert len(out.rooms[room].ephemeral) == 3
    assert sorted(receipts_of(out, room), key=str) == sorted(
        [(root, "m.read", B, None), (root, "m.read", B, "main"), (root, "m.read", B, root)],
        key=str)


def test_receipt_events_batch_per_room() -> None:
    rows = [ReceiptRow(1, "!r", A, "m.read", "", "$1", 5),
            ReceiptRow(2, "!r", B, "m.read", "main", "$1", 6),
            ReceiptRow(3, "!r", A, "m.read.private", "$t", "$2", 7)]
    assert receipt_events(rows) == [{"type": "m.receipt", "content": {
        "$1": {"m.read": {A: {"ts": 5}, B: {"ts": 6, "thread_id": "main"}}},
        "$2": {"m.read.private": {A: {"ts": 7, "thread_id": "$t"}}},
    }}]


# -- unread counts ("un") --------------------------------------------------------------------


async def test_counts_follow_notifications_and_receipts(world: World) -> None:
    w = world
    room = await w.room(A)
    await w.send(room, A, "before B's join does not count for B")
    await w.join(room, B)
    assert await unread(w, B, room) == (0, 0)
    first = await w.send(room, A, "one")
    second = await w.send(room, A, "two")
    mention = await w.send(room, A, "hey", **{"m.mentions": {"user_ids": [B]}})
    assert await unread(w, B, room) == (3, 1)
    # The sender's own events never count for them.
    assert await unread(w, A, room) == (0, 0)
    await w.receipts.post_receipt(B, room, "m.read", first)
    assert await unread(w, B, room) == (2, 1)
    # The further of m.read and m.read.private counts; a lagging m.read rewinds nothing.
    await w.receipts.post_receipt(B, room, "m.read.private", mention)
    assert await unread(w, B, room) == (0, 0)
    await w.receipts.post_receipt(B, room, "m.read", second)
    assert await unread(w, B, room) == (0, 0)


async def test_unread_windows_carry_changed_rooms_once(world: World) -> None:
    w = world
    quiet = await w.room(A, B)
    busy = await w.room(A, B)
    source = w.receipts.unread_source
    assert source.name == "un"
    p0 = await source.current_position()
    initial = await collect(source, B, [quiet, busy], None, p0)
    # Every joined room has counts on an initial sync, zero ones included.
    assert counts(initial, quiet) == (0, 0)
    assert counts(initial, busy) == (0, 0)
    await w.send(busy, A, "one")
    last = await w.send(busy, A, "two")
    p1 = await source.current_position()
    assert p1 > p0
    out = await collect(source, B, [quiet, busy], p0, p1)
    assert set(out.rooms) == {busy}
    assert counts(out, busy) == (2, 0)
    assert (await collect(source, B, [quiet, busy], p1, p1)).rooms == {}
    # A's counts did not change (A sent them): nothing for A in that window.
    assert (await collect(source, A, [quiet, busy], p0, p1)).rooms == {}
    await w.receipts.post_receipt(B, busy, "m.read", last)
    p2 = await source.current_position()
    out = await collect(source, B, [quiet, busy], p1, p2)
    assert set(out.rooms) == {busy}
    assert counts(out, busy) == (0, 0)
    # Rooms not joined (per the sync context) are left out.
    assert (await collect(source, B, [quiet], p1, p2)).rooms == {}


async def test_thread_counts(world: World) -> None:
    w = world
    room = await w.room(A, B, C)  # three members: .m.rule.message
    root = await w.send(room, A, "root")
    in_thread = [await w.send(room, A, f"t{i}", **{"m.relates_to": {
        "rel_type": "m.thread", "event_id": root}}) for i in range(2)]
    # A reaction to a thread event is in the thread too (one hop), but does not notify;
    # an m.reference to it notifies, in the thread.
    await w.appender.append(room, Draft("m.reaction", A, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": in_thread[0], "key": "x"}}))
    reference = await w.send(room, A, "ref", **{"m.relates_to": {
        "rel_type": "m.reference", "event_id": in_thread[0]}})
    main = await w.send(room, A, "main")
    position = await w.receipts.unread_source.current_position()

    async def shaped(threaded: bool) -> RoomExtras:
        out = await collect(w.receipts.unread_source, B, [room], None, position)
        extras = out.rooms[room]
        shape_for_filter(extras, threaded)
        return extras

    whole = await shaped(False)
    assert whole.unread_notifications == {"notification_count": 5, "highlight_count": 0}
    assert whole.unread_thread_notifications is None
    split = await shaped(True)
    assert split.unread_notifications == {"notification_count": 2, "highlight_count": 0}
    assert split.unread_thread_notifications == {
        root: {"notification_count": 3, "highlight_count": 0}}
    # A threaded receipt clears only its thread; a main one only the main timeline.
    await w.receipts.post_receipt(B, room, "m.read", reference, root)
    position = await w.receipts.unread_source.current_position()
    split = await shaped(True)
    assert split.unread_notifications == {"notification_count": 2, "highlight_count": 0}
    assert split.unread_thread_notifications is None
    await w.receipts.post_receipt(B, room, "m.read", root, "main")
    position = await w.receipts.unread_source.current_position()
    assert (await shaped(True)).unread_notifications == {"notification_count": 1,
                                                          "highlight_count": 0}
    # An unthreaded receipt covers every thread up to its event.
    await w.send(room, A, "t2", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    await w.receipts.post_receipt(B, room, "m.read", main)
    position = await w.receipts.unread_source.current_position()
    split = await shaped(True)
    assert split.unread_notifications == {"notification_count": 0, "highlight_count": 0}
    assert split.unread_thread_notifications == {
        root: {"notification_count": 1, "highlight_count": 0}}


async def test_redacting_a_notified_event_uncounts_it(world: World) -> None:
    w = world
    room = await w.room(A, B)
    await w.send(room, A, "keep")
    oops = await w.send(room, A, "oops", **{"m.mentions": {"user_ids": [B]}})
    assert await unread(w, B, room) == (2, 1)
    before = await w.receipts.unread_source.current_position()
    await w.appender.append(room, Draft("m.room.redaction", A, {}, redacts=oops))
    after = await w.receipts.unread_source.current_position()
    out = await collect(w.receipts.unread_source, B, [room], before, after)
    assert counts(out, room) == (1, 0)


async def test_display_names_member_counts_and_rules(world: World) -> None:
    w = world
    room = await w.room(A, B)
    await w.join(room, C, name="Carol")
    # A user rule on the (deprecated) contains_display_name condition, with the room's name.
    await w.rules.put_rule(C, "override", "name", {
        "conditions": [{"kind": "contains_display_name"}],
        "actions": ["notify", {"set_tweak": "highlight"}]})
    await w.send(room, A, "hello carol!")
    await w.send(room, A, "caroline is not her")
    assert await unread(w, C, room) == (2, 1)
    # A room rule silences the room for B only.
    await w.rules.put_rule(B, "room", room, {"actions": []})
    await w.send(room, A, "quiet for B")
    assert await unread(w, B, room) == (2, 0)
    assert await unread(w, C, room) == (3, 1)


async def test_invites_notify_the_invitee_until_they_join(world: World) -> None:
    w = world
    room = await w.room(A)
    await w.appender.append(room, Draft("m.room.member", A, {"membership": "invite"},
                                        state_key=C))
    listed = await w.actions.notifications(C, None, 10, None)
    assert [n["event"]["type"] for n in listed["notifications"]] == ["m.room.member"]
    assert listed["notifications"][0]["actions"] == [
        "notify", {"set_tweak": "sound", "value": "default"}]
    before = await w.receipts.unread_source.current_position()
    await w.join(room, C)
    after = await w.receipts.unread_source.current_position()
    # Joining is a change of C's counts (a fresh start: the invite is in the past).
    out = await collect(w.receipts.unread_source, C, [room], before, after)
    assert counts(out, room) == (0, 0)


async def test_fully_read_marker_moves_forward_only(world: World) -> None:
    w = world
    room = await w.room(A, B)
    first, second = await w.send(room, A), await w.send(room, A)
    data = w.receipts._account_data
    assert isinstance(data, FakeAccountData)
    await w.receipts.set_read_markers(B, room, fully_read=second, read=first)
    assert data.data[(B, room, "m.fully_read")] == {"event_id": second}
    await w.receipts.post_receipt(B, room, "m.fully_read", first)
    assert data.data[(B, room, "m.fully_read")] == {"event_id": second}
    # m.read was set through the read markers too.
    assert await unread(w, B, room) == (1, 0)


# -- the append pipeline's after-commit hook ---------------------------------------------------


async def test_counts_are_stored_before_the_room_is_notified(world: World) -> None:
    w = world
    room = await w.room(A, B)
    seen: list[tuple[int, int] | None] = []

    async def long_poll() -> None:
        since = w.notifier.latest(room_key(room))
        assert await w.notifier.wait([room_key(room)], since, 5)
        seen.append(await unread(w, B, room))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await trio.testing.wait_all_tasks_blocked()
        await w.send(room, A)
    assert seen == [(1, 0)]


async def test_a_failing_hook_neither_fails_the_send_nor_silences_the_room(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    w = world
    calls: list[int] = []

    async def broken_prepare(room_id: Any, state_after: Any, events: Any) -> None:
        calls.append(len(events))
        raise RuntimeError("boom")

    appender = Appender(server_name="hs", signing_key=SigningKey.generate(), db=w.db,
                        cache=RoomCache(w.db), serializer=KeyedSerializer(),
                        notifier=w.notifier, commit_hook=broken_prepare)
    version = get_room_version("12")
    assert version is not None
    room, built = await appender.create_room(
        Draft("m.room.create", A, {"room_version": "12"}, state_key=""), version, None,
        [Draft("m.room.member", A, {"membership": "join"}, state_key=A)], published=False)
    assert calls == [len(built)]
    before = w.notifier.latest(room_key(room))
    await appender.append(room, Draft("m.room.message", A, {"body": "x"}))
    assert calls == [len(built), 1]
    assert w.notifier.latest(room_key(room)) > before
    assert "failed to prepare" in caplog.text

    class BrokenWrite:
        def write(self, conn: Any, orderings: Any) -> None:
            raise RuntimeError("write boom")

        def committed(self) -> None:
            calls.append(-1)

    async def broken_write(room_id: Any, state_after: Any, events: Any) -> BrokenWrite:
        return BrokenWrite()

    other = Appender(server_name="hs", signing_key=SigningKey.generate(), db=w.db,
                     cache=RoomCache(w.db), serializer=KeyedSerializer(),
                     notifier=w.notifier, commit_hook=broken_write)
    appended = await other.append(room, Draft("m.room.message", A, {"body": "y"}))
    # The rows the hook could not write are rolled back alone: the event itself committed.
    stored = await w.db.read(lambda c: events_repo.get_events(c, [appended.event.event_id]))
    assert appended.event.event_id in stored
    assert "failed to write" in caplog.text
