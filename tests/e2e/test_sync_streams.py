"""GET /sync: the per-user streams (typing, receipts, unread counts, read markers, account data,
tags, presence, to-device), their tokens and long-polls, and a real client (matrix-nio).

Everything goes through HTTP against the real server; the room sections are covered by
`test_sync_rooms.py`, whose `sync()` helper these tests reuse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import nio
import trio

from tests.e2e.helpers import (
    CLIENT,
    PASSWORD,
    bearer,
    create_room,
    login,
    register,
    room_path,
    send_text,
    two_users_in_a_room,
    unique,
)
from tests.e2e.test_sync_rooms import sync
from tests.server_process import ServerProcess

Body = dict[str, Any]

# -- helpers ---------------------------------------------------------------------------------


def user_path(user_id: str, *parts: str) -> str:
    return "/".join([f"{CLIENT}/user/{quote(user_id, safe='')}",
                     *(quote(p, safe="") for p in parts)])


async def two_in_a_room(http: httpx.AsyncClient) -> tuple[Body, Body, str]:
    """Alice creates a public room, Bob joins it."""
    return await two_users_in_a_room(http)


def joined(body: Body, room: str) -> Body:
    """`rooms.join.{room}`, or {} when the room is not in the response."""
    section: Body = body.get("rooms", {}).get("join", {}).get(room, {})
    return section


def ephemeral(body: Body, room: str, event_type: str) -> list[Body]:
    """The `ephemeral` events of one type in a joined room (whole events)."""
    return [e for e in joined(body, room).get("ephemeral", {}).get("events", [])
            if e["type"] == event_type]


def room_account_data(body: Body, room: str) -> dict[str, Any]:
    """type -> content of `rooms.join.{room}.account_data`."""
    events = joined(body, room).get("account_data", {}).get("events", [])
    out = {e["type"]: e["content"] for e in events}
    assert len(out) == len(events), events  # one event per type
    return out


def global_account_data(body: Body) -> list[Body]:
    events: list[Body] = body.get("account_data", {}).get("events", [])
    return events


def presence_of(body: Body, user_id: str) -> list[Body]:
    """The m.presence contents about `user_id` in the response, oldest first."""
    events = body.get("presence", {}).get("events", [])
    assert all(e["type"] == "m.presence" for e in events), events
    return [e["content"] for e in events if e["sender"] == user_id]


def to_device(body: Body) -> list[Body]:
    events: list[Body] = body.get("to_device", {}).get("events", [])
    return events


def receipts(body: Body, room: str) -> dict[str, Any]:
    """All `m.receipt` contents of a room merged: event -> type -> user -> receipt."""
    merged: dict[str, Any] = {}
    for event in ephemeral(body, room, "m.receipt"):
        assert set(event) == {"type", "content"}, event
        for event_id, by_type in event["content"].items():
            for receipt_type, by_user in by_type.items():
                merged.setdefault(event_id, {}).setdefault(receipt_type, {}).update(by_user)
    return merged


# Always present for the device's end-to-end encryption, as in Synapse.
KEY_COUNTS = {"device_one_time_keys_count", "device_unused_fallback_key_types"}


def assert_empty(body: Body) -> None:
    """An incremental sync with nothing new: only `next_batch` (and the key counts)."""
    assert set(body) - KEY_COUNTS == {"next_batch"}, body


async def typing(http: httpx.AsyncClient, user: Body, room: str, is_typing: bool,
                 ms: int | None = 30000) -> None:
    """PUT /rooms/{roomId}/typing/{userId}; `ms` is the body's `timeout`."""
    content: Body = {"typing": is_typing}
    if is_typing and ms is not None:
        content["timeout"] = ms
    r = await http.put(room_path(room, "typing", user["user_id"]), json=content,
                       headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {}


async def post_receipt(http: httpx.AsyncClient, user: Body, room: str, event_id: str,
                       receipt_type: str = "m.read", **body: Any) -> None:
    r = await http.post(room_path(room, "receipt", receipt_type, event_id), json=body,
                        headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text


async def send(http: httpx.AsyncClient, user: Body, room: str, content: Body) -> str:
    r = await http.put(room_path(room, "send", "m.room.message", unique("txn")), json=content,
                       headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def send_to_device(http: httpx.AsyncClient, token: str, event_type: str, txn: str,
                         messages: Body) -> None:
    r = await http.put(f"{CLIENT}/sendToDevice/{quote(event_type, safe='')}/{txn}",
                       json={"messages": messages}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {}


async def long_polls_waiting(http: httpx.AsyncClient) -> int:
    r = await http.get("/_trioserver/status")
    assert r.status_code == 200, r.text
    count: int = r.json()["long_polls_waiting"]
    return count


async def parked_long_poll(http: httpx.AsyncClient, token: str, since: str,
                           action: Callable[[], Awaitable[object]], *,
                           timeout_ms: int = 20000, **params: Any) -> tuple[Body, float]:
    """Start `GET /sync?since=...&timeout=...`, wait until the server has parked it (it had
    nothing to say yet), then run `action`. Returns the response and how many seconds after
    the start of `action` it came back."""
    baseline = await long_polls_waiting(http)
    result: dict[str, Any] = {}

    async def poll() -> None:
        result["body"] = await sync(http, token, since, timeout=timeout_ms, **params)
        result["at"] = time.monotonic()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        with trio.fail_after(5):
            while await long_polls_waiting(http) <= baseline:
                assert "body" not in result, f"the long-poll did not wait: {result['body']}"
                await trio.sleep(0.02)
        acted = time.monotonic()
        await action()
    return result["body"], result["at"] - acted


# -- typing ----------------------------------------------------------------------------------


async def test_typing_start_and_stop_reach_the_other_member(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    other_room = await create_room(http, bob["access_token"])
    b = bob["access_token"]
    start = await sync(http, b)
    assert ephemeral(start, room, "m.typing") == []  # nobody typing: nothing to say

    await typing(http, alice, room, True, 30000)
    on = await sync(http, b, start["next_batch"])
    assert ephemeral(on, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": [alice["user_id"]]}}]
    assert room in on["rooms"]["join"]
    assert other_room not in on["rooms"]["join"]  # typing is scoped to its room
    # Not repeated from the next token.
    assert_empty(await sync(http, b, on["next_batch"]))
    # An initial sync shows who is typing now.
    assert ephemeral(await sync(http, b), room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": [alice["user_id"]]}}]

    # Bob starts too: the event lists everyone typing (clients REPLACE their list with it).
    await typing(http, bob, room, True, 30000)
    both = await sync(http, b, on["next_batch"])
    [event] = ephemeral(both, room, "m.typing")
    assert sorted(event["content"]["user_ids"]) == sorted([alice["user_id"], bob["user_id"]])

    await typing(http, alice, room, False)
    await typing(http, bob, room, False)
    off = await sync(http, b, both["next_batch"])
    assert ephemeral(off, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": []}}]
    assert_empty(await sync(http, b, off["next_batch"]))
    # Nobody is typing now: an initial sync (here Alice's) has no m.typing at all.
    assert ephemeral(await sync(http, alice["access_token"]), room, "m.typing") == []


async def test_long_poll_wakes_on_typing_and_on_its_expiry(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    b = bob["access_token"]
    since = (await sync(http, b))["next_batch"]

    typed_at: list[float] = []

    async def start_typing() -> None:
        typed_at.append(time.monotonic())
        await typing(http, alice, room, True, ms=1500)

    woke, delay = await parked_long_poll(http, b, since, start_typing)
    assert ephemeral(woke, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": [alice["user_id"]]}}]
    assert delay < 2.0  # woken by the change, far before the 20 s timeout

    # Nobody renews it: after its 1.5 s the server expires it, and a waiting sync hears that.
    polled_at = time.monotonic()
    assert polled_at - typed_at[0] < 1.2  # this sync is waiting when the expiry happens
    expired = await sync(http, b, woke["next_batch"], timeout=10000)
    elapsed = time.monotonic() - typed_at[0]
    assert ephemeral(expired, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": []}}]
    assert 1.4 <= elapsed < 5.0, elapsed
    assert_empty(await sync(http, b, expired["next_batch"]))


# -- receipts --------------------------------------------------------------------------------


async def test_read_receipts_reach_members_and_are_not_repeated(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    a = alice["access_token"]
    first = await send_text(http, a, room, "first")
    second = await send_text(http, a, room, "second")
    a_since = (await sync(http, a))["next_batch"]
    b_since = (await sync(http, bob["access_token"]))["next_batch"]

    before = int(time.time() * 1000)
    await post_receipt(http, bob, room, first)
    seen = await sync(http, a, a_since)
    got = receipts(seen, room)
    assert list(got) == [first]
    assert list(got[first]) == ["m.read"]
    assert list(got[first]["m.read"]) == [bob["user_id"]]
    receipt = got[first]["m.read"][bob["user_id"]]
    assert set(receipt) == {"ts"}  # unthreaded: no thread_id
    assert before - 5000 <= receipt["ts"] <= int(time.time() * 1000) + 5000
    # The receipt's owner gets it too.
    own = await sync(http, bob["access_token"], b_since)
    assert list(receipts(own, room)) == [first]
    assert_empty(await sync(http, a, seen["next_batch"]))

    # The receipt moves forward; one for an earlier event does not move it back (nothing
    # new to send).
    await post_receipt(http, bob, room, second)
    moved = await sync(http, a, seen["next_batch"])
    assert list(receipts(moved, room)) == [second]
    await post_receipt(http, bob, room, first)
    assert_empty(await sync(http, a, moved["next_batch"]))

    # An initial sync carries the current receipts of the room.
    initial = receipts(await sync(http, a), room)
    assert initial[second]["m.read"][bob["user_id"]]["ts"] >= receipt["ts"]
    assert bob["user_id"] not in initial.get(first, {}).get("m.read", {})

    # A member's waiting sync is woken by a new receipt.
    third = await send_text(http, a, room, "third")
    since = (await sync(http, a, moved["next_batch"]))["next_batch"]
    woke, delay = await parked_long_poll(http, a, since,
                                         lambda: post_receipt(http, bob, room, third))
    assert list(receipts(woke, room)) == [third]
    assert delay < 2.0


async def test_private_receipts_only_reach_their_owner(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    event = await send_text(http, a, room, "secret-ish")
    newer = await send_text(http, a, room, "newer")
    a_since = (await sync(http, a))["next_batch"]
    b_since = (await sync(http, b))["next_batch"]

    await post_receipt(http, bob, room, event, "m.read.private")
    owner = await sync(http, b, b_since)
    got = receipts(owner, room)
    assert list(got) == [event]
    assert list(got[event]) == ["m.read.private"]
    assert list(got[event]["m.read.private"]) == [bob["user_id"]]
    # Spec (Receipts, "Private read receipts"): servers MUST NOT send m.read.private to any
    # other user than the one which originally sent it.
    other = await sync(http, a, a_since)
    assert receipts(other, room) == {}
    # Nor does it wake Alice's waiting sync: it runs to its timeout, empty.
    quiet, delay = await parked_long_poll(
        http, a, other["next_batch"],
        lambda: post_receipt(http, bob, room, newer, "m.read.private"), timeout_ms=1000)
    assert_empty(quiet)
    assert delay >= 0.5
    assert all("m.read.private" not in by_type
               for by_type in receipts(await sync(http, a), room).values())
    assert bob["user_id"] in receipts(await sync(http, b), room)[newer]["m.read.private"]
    # ... and through /read_markers as well.
    later = await send_text(http, a, room, "later")
    r = await http.post(room_path(room, "read_markers"), json={"m.read.private": later},
                        headers=bearer(b))
    assert r.status_code == 200, r.text
    assert receipts(await sync(http, a, other["next_batch"]), room) == {}
    assert list(receipts(await sync(http, b, owner["next_batch"]), room)) == [later]


async def test_threaded_receipts_carry_thread_id_and_clear_thread_counts(
        http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    a = alice["access_token"]
    flt = '{"room": {"timeline": {"unread_thread_notifications": true}}}'
    b_since = (await sync(http, bob["access_token"], filter=flt))["next_batch"]
    root = await send_text(http, a, room, "thread root")
    reply = await send(http, alice, room, {
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    counted = joined(await sync(http, bob["access_token"], b_since, filter=flt), room)
    # With unread_thread_notifications the room counts are the main timeline's only.
    assert counted["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert counted["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}
    a_since = (await sync(http, a))["next_batch"]
    b_since = (await sync(http, bob["access_token"], filter=flt))["next_batch"]

    await post_receipt(http, bob, room, reply, thread_id=root)
    await post_receipt(http, bob, room, root, thread_id="main")
    seen = receipts(await sync(http, a, a_since), room)
    assert seen[reply]["m.read"][bob["user_id"]]["thread_id"] == root
    assert seen[root]["m.read"][bob["user_id"]]["thread_id"] == "main"
    assert set(seen) == {reply, root}

    cleared = joined(await sync(http, bob["access_token"], b_since, filter=flt), room)
    assert cleared["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert root not in cleared.get("unread_thread_notifications", {})


# -- unread counts and read markers ----------------------------------------------------------


async def test_unread_counts_grow_with_notifications_and_clear_on_read(
        http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    a, b = alice["access_token"], bob["access_token"]
    r = await http.put(f"{CLIENT}/profile/{quote(bob['user_id'], safe='')}/displayname",
                       json={"displayname": "Bartholomew"}, headers=bearer(b))
    assert r.status_code == 200, r.text
    room = await create_room(http, a, preset="public_chat")
    r = await http.post(f"{CLIENT}/join/{room}", json={}, headers=bearer(b))
    assert r.status_code == 200, r.text
    start = await sync(http, b)
    assert joined(start, room)["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}

    # Two members: .m.rule.room_one_to_one notifies for every message, without highlight.
    await send_text(http, a, room, "hello")
    one = await sync(http, b, start["next_batch"])
    assert joined(one, room)["unread_notifications"] == {
        "notification_count": 1, "highlight_count": 0}

    # .m.rule.is_user_mention: m.mentions.user_ids containing Bob notifies and highlights.
    await send(http, alice, room, {"msgtype": "m.text", "body": "look at this",
                                   "m.mentions": {"user_ids": [bob["user_id"]]}})
    two = await sync(http, b, one["next_batch"])
    assert joined(two, room)["unread_notifications"] == {
        "notification_count": 2, "highlight_count": 1}

    # His display name in the body alone no longer highlights: spec v1.17 (push.md,
    # "Predefined Rules") removed .m.rule.contains_display_name. It still notifies.
    await send_text(http, a, room, "Bartholomew, are you there?")
    three = await sync(http, b, two["next_batch"])
    assert joined(three, room)["unread_notifications"] == {
        "notification_count": 3, "highlight_count": 1}

    # .m.rule.is_room_mention: an @room mention by a sender allowed to notify the room
    # (Alice, the creator) highlights.
    await send(http, alice, room, {"msgtype": "m.text", "body": "everyone!",
                                   "m.mentions": {"room": True}})
    four = await sync(http, b, three["next_batch"])
    assert joined(four, room)["unread_notifications"] == {
        "notification_count": 4, "highlight_count": 2}
    # .m.rule.suppress_notices: a notice does not notify, so the counts do not move.
    last = await send(http, alice, room, {"msgtype": "m.notice", "body": "bot says hi"})
    five = await sync(http, b, four["next_batch"])
    assert [e["event_id"] for e in joined(five, room)["timeline"]["events"]] == [last]
    assert joined(five, room).get("unread_notifications", {
        "notification_count": 4, "highlight_count": 2}) == {
        "notification_count": 4, "highlight_count": 2}

    # Alice's own messages never count for her.
    assert joined(await sync(http, a), room)["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}

    await post_receipt(http, bob, room, last)
    read = await sync(http, b, five["next_batch"])
    assert joined(read, room)["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}
    assert_empty(await sync(http, b, read["next_batch"]))

    # A private receipt clears the counts as well (Receipts, "Private read receipts").
    again = await send_text(http, a, room, "one more")
    unread = await sync(http, b, read["next_batch"])
    assert joined(unread, room)["unread_notifications"]["notification_count"] == 1
    await post_receipt(http, bob, room, again, "m.read.private")
    private = await sync(http, b, unread["next_batch"])
    assert joined(private, room)["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}


async def test_read_markers_set_fully_read_in_room_account_data(
        http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    first = await send_text(http, a, room, "one")
    second = await send_text(http, a, room, "two")
    a_since = (await sync(http, a))["next_batch"]
    start = await sync(http, b)
    assert "m.fully_read" not in room_account_data(start, room)

    r = await http.post(room_path(room, "read_markers"),
                        json={"m.fully_read": first, "m.read": second}, headers=bearer(b))
    assert r.status_code == 200, r.text
    after = await sync(http, b, start["next_batch"])
    assert room_account_data(after, room) == {"m.fully_read": {"event_id": first}}
    assert global_account_data(after) == []  # room account data is not global
    assert list(receipts(after, room)) == [second]
    assert joined(after, room)["unread_notifications"] == {
        "notification_count": 0, "highlight_count": 0}
    assert_empty(await sync(http, b, after["next_batch"]))

    # Others see the read receipt, never the (private) fully read marker.
    other = await sync(http, a, a_since)
    assert list(receipts(other, room)) == [second]
    assert room_account_data(other, room) == {}

    r = await http.post(room_path(room, "read_markers"), json={"m.fully_read": second},
                        headers=bearer(b))
    assert r.status_code == 200, r.text
    moved = await sync(http, b, after["next_batch"])
    assert room_account_data(moved, room) == {"m.fully_read": {"event_id": second}}
    assert room_account_data(await sync(http, b), room)["m.fully_read"] == {"event_id": second}
    assert room_account_data(await sync(http, a), room) == {}


# -- account data ----------------------------------------------------------------------------


async def test_global_account_data_is_sent_once_and_only_to_its_owner(
        http: httpx.AsyncClient) -> None:
    me = await register(http)
    other = await register(http)
    token = me["access_token"]
    start = await sync(http, token)
    other_since = (await sync(http, other["access_token"]))["next_batch"]
    path = user_path(me["user_id"], "account_data", "org.example.settings")

    r = await http.put(path, json={"theme": "dark"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    first = await sync(http, token, start["next_batch"])
    assert global_account_data(first) == [
        {"type": "org.example.settings", "content": {"theme": "dark"}}]
    assert "rooms" not in first
    assert_empty(await sync(http, token, first["next_batch"]))

    r = await http.put(path, json={"theme": "light"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    second = await sync(http, token, first["next_batch"])
    assert global_account_data(second) == [
        {"type": "org.example.settings", "content": {"theme": "light"}}]
    assert_empty(await sync(http, token, second["next_batch"]))

    # An initial sync has the latest value; another user never sees it.
    initial = [e for e in global_account_data(await sync(http, token))
               if e["type"] == "org.example.settings"]
    assert initial == [{"type": "org.example.settings", "content": {"theme": "light"}}]
    assert_empty(await sync(http, other["access_token"], other_since))

    # A long-poll wakes on a change of the user's account data.
    woke, delay = await parked_long_poll(
        http, token, second["next_batch"],
        lambda: http.put(path, json={"theme": "solarized"}, headers=bearer(token)))
    assert global_account_data(woke) == [
        {"type": "org.example.settings", "content": {"theme": "solarized"}}]
    assert delay < 2.0


async def test_room_account_data_and_tags_in_the_room_section(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    uid, auth = bob["user_id"], bearer(bob["access_token"])
    start = await sync(http, bob["access_token"])
    a_since = (await sync(http, alice["access_token"]))["next_batch"]

    r = await http.put(user_path(uid, "rooms", room, "account_data", "org.example.room"),
                       json={"colour": "teal"}, headers=auth)
    assert r.status_code == 200, r.text
    r = await http.put(user_path(uid, "rooms", room, "tags", "u.work"), json={"order": 0.5},
                       headers=auth)
    assert r.status_code == 200, r.text
    first = await sync(http, bob["access_token"], start["next_batch"])
    assert room_account_data(first, room) == {
        "org.example.room": {"colour": "teal"},
        "m.tag": {"tags": {"u.work": {"order": 0.5}}},
    }
    assert global_account_data(first) == []
    assert_empty(await sync(http, bob["access_token"], first["next_batch"]))

    r = await http.put(user_path(uid, "rooms", room, "tags", "m.favourite"), json={},
                       headers=auth)
    assert r.status_code == 200, r.text
    r = await http.delete(user_path(uid, "rooms", room, "tags", "u.work"), headers=auth)
    assert r.status_code == 200, r.text
    second = await sync(http, bob["access_token"], first["next_batch"])
    assert room_account_data(second, room) == {"m.tag": {"tags": {"m.favourite": {}}}}
    assert_empty(await sync(http, bob["access_token"], second["next_batch"]))

    initial = room_account_data(await sync(http, bob["access_token"]), room)
    assert initial["m.tag"] == {"tags": {"m.favourite": {}}}
    assert initial["org.example.room"] == {"colour": "teal"}
    # Private to Bob: Alice, in the same room, sees none of it.
    assert_empty(await sync(http, alice["access_token"], a_since))
    assert room_account_data(await sync(http, alice["access_token"]), room) == {}


async def test_push_rule_changes_reach_sync_as_m_push_rules(http: httpx.AsyncClient) -> None:
    """push.md, "Push Rules: Events": when a user changes their push rules an m.push_rules
    event with the current rules is sent in the account_data of their next /sync."""
    alice, bob, room = await two_in_a_room(http)
    b = bob["access_token"]
    start = await sync(http, b)
    r = await http.put(f"{CLIENT}/pushrules/global/room/{quote(room, safe='')}",
                       json={"actions": []}, headers=bearer(b))
    assert r.status_code == 200, r.text
    changed = await sync(http, b, start["next_batch"])
    [event] = global_account_data(changed)
    assert event["type"] == "m.push_rules"
    room_rules = event["content"]["global"]["room"]
    assert [(x["rule_id"], x["actions"], x["enabled"]) for x in room_rules] == [
        (room, [], True)]
    assert_empty(await sync(http, b, changed["next_batch"]))

    # The new rule is in force: Alice's message no longer notifies Bob.
    await send_text(http, alice["access_token"], room, "muted")
    muted = await sync(http, b, changed["next_batch"])
    assert [e["content"]["body"] for e in joined(muted, room)["timeline"]["events"]] == ["muted"]
    assert joined(muted, room).get("unread_notifications", {
        "notification_count": 0, "highlight_count": 0}) == {
        "notification_count": 0, "highlight_count": 0}

    r = await http.put(f"{CLIENT}/pushrules/global/override/.m.rule.master/enabled",
                       json={"enabled": True}, headers=bearer(b))
    assert r.status_code == 200, r.text
    master = await sync(http, b, muted["next_batch"])
    [event] = global_account_data(master)
    [rule] = [x for x in event["content"]["global"]["override"]
              if x["rule_id"] == ".m.rule.master"]
    assert rule["enabled"] is True


# -- presence --------------------------------------------------------------------------------


async def test_presence_reaches_room_mates_only(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    stranger = await register(http)
    b_since = (await sync(http, bob["access_token"]))["next_batch"]
    s_since = (await sync(http, stranger["access_token"]))["next_batch"]

    r = await http.put(f"{CLIENT}/presence/{quote(alice['user_id'], safe='')}/status",
                       json={"presence": "online", "status_msg": "in a meeting"},
                       headers=bearer(alice["access_token"]))
    assert r.status_code == 200, r.text
    seen = await sync(http, bob["access_token"], b_since)
    [content] = presence_of(seen, alice["user_id"])
    assert content["presence"] == "online"
    assert content["status_msg"] == "in a meeting"
    assert content["currently_active"] is True
    assert 0 <= content["last_active_ago"] < 60_000
    assert_empty(await sync(http, bob["access_token"], seen["next_batch"]))
    # Presence is sent to users who share a room with Alice; the stranger shares none.
    unseen = await sync(http, stranger["access_token"], s_since)
    assert presence_of(unseen, alice["user_id"]) == []
    assert presence_of(await sync(http, stranger["access_token"]), alice["user_id"]) == []
    # An initial sync of a room mate carries her current presence.
    [current] = presence_of(await sync(http, bob["access_token"]), alice["user_id"])
    assert (current["presence"], current["status_msg"]) == ("online", "in a meeting")

    # /sync?set_presence=unavailable marks Alice idle; a waiting room mate is woken.
    woke, delay = await parked_long_poll(
        http, bob["access_token"], seen["next_batch"],
        lambda: sync(http, alice["access_token"], set_presence="unavailable"))
    [idle] = presence_of(woke, alice["user_id"])
    assert idle["presence"] == "unavailable"
    assert idle.get("currently_active", False) is False
    assert delay < 2.0
    r = await http.get(f"{CLIENT}/presence/{quote(alice['user_id'], safe='')}/status",
                       headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["presence"] == "unavailable"
    # set_presence=offline changes nothing.
    await sync(http, alice["access_token"], set_presence="offline")
    quiet = await sync(http, bob["access_token"], woke["next_batch"])
    assert presence_of(quiet, alice["user_id"]) == []
    # Going offline explicitly is a change room mates are told about.
    r = await http.put(f"{CLIENT}/presence/{quote(alice['user_id'], safe='')}/status",
                       json={"presence": "offline"}, headers=bearer(alice["access_token"]))
    assert r.status_code == 200, r.text
    offline = await sync(http, bob["access_token"], quiet["next_batch"])
    [gone] = presence_of(offline, alice["user_id"])
    assert gone["presence"] == "offline"
    assert "status_msg" not in gone

    # Once Bob has left their only shared room, Alice's changes no longer reach him.
    r = await http.post(room_path(room, "leave"), json={}, headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    left = await sync(http, bob["access_token"], offline["next_batch"])
    r = await http.put(f"{CLIENT}/presence/{quote(alice['user_id'], safe='')}/status",
                       json={"presence": "online", "status_msg": "after you left"},
                       headers=bearer(alice["access_token"]))
    assert r.status_code == 200, r.text
    assert presence_of(await sync(http, bob["access_token"], left["next_batch"]),
                       alice["user_id"]) == []


# -- send-to-device --------------------------------------------------------------------------


async def test_to_device_reaches_the_device_exactly_once(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    r = await login(http, bob["user_id"])
    assert r.status_code == 200, r.text
    bob2 = r.json()
    assert bob2["device_id"] != bob["device_id"]
    b1, b2 = bob["access_token"], bob2["access_token"]
    s1 = (await sync(http, b1))["next_batch"]
    s2 = (await sync(http, b2))["next_batch"]
    a = alice["access_token"]

    await send_to_device(http, a, "org.example.ping", "t1",
                         {bob["user_id"]: {bob["device_id"]: {"n": 1}}})
    got = await sync(http, b1, s1)
    assert to_device(got) == [
        {"type": "org.example.ping", "sender": alice["user_id"], "content": {"n": 1}}]
    # Not yet acknowledged: a retried sync from the same token gets it again...
    assert to_device(await sync(http, b1, s1)) == to_device(got)
    # ... and once the client syncs from next_batch it is gone for good.
    after = await sync(http, b1, got["next_batch"])
    assert_empty(after)
    assert to_device(await sync(http, b1, s1)) == []
    assert to_device(await sync(http, b1)) == []
    # The other device got nothing.
    other = await sync(http, b2, s2)
    assert_empty(other)

    # The same transaction again is a no-op (idempotent per txn id).
    await send_to_device(http, a, "org.example.ping", "t1",
                         {bob["user_id"]: {bob["device_id"]: {"n": 1}}})
    assert_empty(await sync(http, b1, after["next_batch"]))

    # "*" reaches every device of the user, each once.
    await send_to_device(http, a, "org.example.all", "t2",
                         {bob["user_id"]: {"*": {"hello": "all"}}})
    expected = [{"type": "org.example.all", "sender": alice["user_id"],
                 "content": {"hello": "all"}}]
    one = await sync(http, b1, after["next_batch"])
    two = await sync(http, b2, other["next_batch"])
    assert to_device(one) == expected
    assert to_device(two) == expected
    assert_empty(await sync(http, b1, one["next_batch"]))
    assert_empty(await sync(http, b2, two["next_batch"]))


async def test_to_device_order_initial_sync_and_long_poll(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    a, b = alice["access_token"], bob["access_token"]
    target = {"device": bob["device_id"]}

    # Pending before the device ever synced: an initial sync lists them in order of arrival.
    for i in range(3):
        await send_to_device(http, a, "org.example.seq", f"seq{i}",
                             {bob["user_id"]: {target["device"]: {"i": i}}})
    initial = await sync(http, b)
    assert [e["content"]["i"] for e in to_device(initial)] == [0, 1, 2]
    assert_empty(await sync(http, b, initial["next_batch"]))

    # A waiting long-poll is woken by a message for its device.
    woke, delay = await parked_long_poll(
        http, b, initial["next_batch"],
        lambda: send_to_device(http, a, "org.example.wake", "wake1",
                               {bob["user_id"]: {target["device"]: {"wake": True}}}))
    assert to_device(woke) == [
        {"type": "org.example.wake", "sender": alice["user_id"], "content": {"wake": True}}]
    assert delay < 2.0
    assert_empty(await sync(http, b, woke["next_batch"]))


async def test_a_long_to_device_queue_is_delivered_whole_and_in_order(
        http: httpx.AsyncClient) -> None:
    """send_to_device.md, "Server behaviour": pending messages are listed in order of arrival
    and each is delivered exactly once, however many /sync responses a long queue takes."""
    alice = await register(http)
    bob = await register(http)
    a, b = alice["access_token"], bob["access_token"]
    since = (await sync(http, b))["next_batch"]
    for i in range(120):
        await send_to_device(http, a, "org.example.bulk", f"bulk{i}",
                             {bob["user_id"]: {bob["device_id"]: {"i": i}}})
    received: list[int] = []
    for _ in range(10):
        body = await sync(http, b, since)
        since = body["next_batch"]
        batch = to_device(body)
        if not batch:
            break
        received += [e["content"]["i"] for e in batch]
    assert received == list(range(120))
    assert_empty(await sync(http, b, since))


# -- tokens across streams -------------------------------------------------------------------


async def test_one_incremental_sync_carries_every_stream_once(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    event = await send_text(http, a, room, "hi")
    start = await sync(http, b)
    # Nothing happened: an empty incremental sync returns only next_batch, at once...
    assert_empty(await sync(http, b, start["next_batch"], timeout=0))
    # ... or after its timeout.
    t0 = time.monotonic()
    assert_empty(await sync(http, b, start["next_batch"], timeout=500))
    assert time.monotonic() - t0 >= 0.45

    await typing(http, alice, room, True)
    await post_receipt(http, alice, room, event)
    r = await http.put(user_path(bob["user_id"], "account_data", "org.example.multi"),
                       json={"v": 1}, headers=bearer(b))
    assert r.status_code == 200, r.text
    await send_to_device(http, a, "org.example.multi", unique("txn"),
                         {bob["user_id"]: {bob["device_id"]: {"v": 1}}})
    everything = await sync(http, b, start["next_batch"])
    assert ephemeral(everything, room, "m.typing")[0]["content"]["user_ids"] == [
        alice["user_id"]]
    assert list(receipts(everything, room)) == [event]
    assert global_account_data(everything) == [
        {"type": "org.example.multi", "content": {"v": 1}}]
    assert [e["content"] for e in to_device(everything)] == [{"v": 1}]
    assert joined(everything, room)["timeline"]["events"] == []

    repeat = await sync(http, b, everything["next_batch"], timeout=0)
    assert_empty(repeat)
    assert repeat["next_batch"] == everything["next_batch"]

    # Streams advance independently: one change later, only that one comes.
    await typing(http, alice, room, False)
    only_typing = await sync(http, b, repeat["next_batch"])
    assert set(only_typing) - KEY_COUNTS == {"next_batch", "rooms"}
    assert list(only_typing["rooms"]) == ["join"]
    section = joined(only_typing, room)
    assert section["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": []}}]
    assert "account_data" not in section
    assert section["timeline"]["events"] == []


# Filtering (definitions/sync_filter.yaml): `presence` is "the presence updates to include",
# `account_data` "the user account data that isn't associated with rooms to include",
# `room.ephemeral` "the ephemeral events to include for rooms", `room.account_data` "the per
# user account data to include for rooms". (Synapse applies all four.)
STREAM_FILTER = ('{"presence": {"not_types": ["m.presence"]},'
                 ' "account_data": {"types": ["org.example.keep"]},'
                 ' "room": {"ephemeral": {"not_types": ["m.typing"]},'
                 ' "account_data": {"types": ["m.tag"]}}}')


async def _filtered_sync(http: httpx.AsyncClient) -> tuple[Body, Body, str, str]:
    """Alice and Bob share a room; with Bob syncing under STREAM_FILTER, Alice sets her
    presence, types and sends a receipt, Bob sets two global and two room account data types.
    Returns (alice, Bob's filtered incremental sync, room, the receipt's event)."""
    alice, bob, room = await two_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    event = await send_text(http, a, room, "hi")
    start = await sync(http, b, filter=STREAM_FILTER)

    r = await http.put(f"{CLIENT}/presence/{quote(alice['user_id'], safe='')}/status",
                       json={"presence": "online", "status_msg": "filtered"},
                       headers=bearer(a))
    assert r.status_code == 200, r.text
    await typing(http, alice, room, True)
    await post_receipt(http, alice, room, event)
    for data_type in ("org.example.keep", "org.example.drop"):
        r = await http.put(user_path(bob["user_id"], "account_data", data_type), json={"v": 1},
                           headers=bearer(b))
        assert r.status_code == 200, r.text
    r = await http.put(user_path(bob["user_id"], "rooms", room, "account_data", "org.example.r"),
                       json={"v": 1}, headers=bearer(b))
    assert r.status_code == 200, r.text
    r = await http.put(user_path(bob["user_id"], "rooms", room, "tags", "u.kept"), json={},
                       headers=bearer(b))
    assert r.status_code == 200, r.text
    body = await sync(http, b, start["next_batch"], filter=STREAM_FILTER)
    return alice, body, room, event


async def test_ephemeral_filter_applies(http: httpx.AsyncClient) -> None:
    _alice, body, room, event = await _filtered_sync(http)
    assert list(receipts(body, room)) == [event]  # passes the filter
    assert ephemeral(body, room, "m.typing") == []  # excluded by room.ephemeral.not_types


async def test_account_data_filters_apply(http: httpx.AsyncClient) -> None:
    _alice, body, room, _event = await _filtered_sync(http)
    assert [e["type"] for e in global_account_data(body)] == ["org.example.keep"]
    assert room_account_data(body, room) == {"m.tag": {"tags": {"u.kept": {}}}}


async def test_presence_filter_applies(http: httpx.AsyncClient) -> None:
    alice, body, _room, _event = await _filtered_sync(http)
    assert presence_of(body, alice["user_id"]) == []
    assert "presence" not in body


# -- a real client: matrix-nio ---------------------------------------------------------------


async def _nio_two_clients_sync(url: str) -> None:
    alice = nio.AsyncClient(url)
    bob = nio.AsyncClient(url)
    try:
        for client in (alice, bob):
            reg = await client.register(unique("nio"), PASSWORD, device_name="nio sync")
            assert isinstance(reg, nio.RegisterResponse), reg
            assert client.access_token == reg.access_token
            assert client.user_id == reg.user_id

        created = await alice.room_create(name="nio sync room", invite=[bob.user_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        invited = await bob.sync(timeout=0)
        assert isinstance(invited, nio.SyncResponse), invited
        assert room in invited.rooms.invite
        joined_room = await bob.join(room)
        assert isinstance(joined_room, nio.JoinResponse), joined_room
        first = await bob.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse), first
        assert room in first.rooms.join
        a_first = await alice.sync(timeout=0)
        assert isinstance(a_first, nio.SyncResponse), a_first

        sent = await alice.room_send(room, "m.room.message",
                                     {"msgtype": "m.text", "body": "hello from nio"})
        assert isinstance(sent, nio.RoomSendResponse), sent
        typed = await alice.room_typing(room, typing_state=True, timeout=30000)
        assert isinstance(typed, nio.RoomTypingResponse), typed

        got = await bob.sync(timeout=5000)
        assert isinstance(got, nio.SyncResponse), got
        info = got.rooms.join[room]
        messages = [e for e in info.timeline.events if isinstance(e, nio.RoomMessageText)]
        assert [(m.body, m.sender, m.event_id) for m in messages] == [
            ("hello from nio", alice.user_id, sent.event_id)]
        typing_events = [e for e in info.ephemeral if isinstance(e, nio.TypingNoticeEvent)]
        assert [t.users for t in typing_events] == [[alice.user_id]]
        assert bob.rooms[room].typing_users == [alice.user_id]
        assert info.unread_notifications is not None
        assert info.unread_notifications.notification_count == 1

        marked = await bob.room_read_markers(room, fully_read_event=sent.event_id,
                                             read_event=sent.event_id)
        assert isinstance(marked, nio.RoomReadMarkersResponse), marked
        seen = await alice.sync(timeout=5000)
        assert isinstance(seen, nio.SyncResponse), seen
        receipt_events = [e for e in seen.rooms.join[room].ephemeral
                          if isinstance(e, nio.ReceiptEvent)]
        found = [(r.event_id, r.receipt_type, r.user_id) for e in receipt_events
                 for r in e.receipts]
        assert (sent.event_id, "m.read", bob.user_id) in found
        assert alice.rooms[room].read_receipts[bob.user_id].event_id == sent.event_id

        own = await bob.sync(timeout=5000)
        assert isinstance(own, nio.SyncResponse), own
        own_info = own.rooms.join[room]
        fully_read = [e for e in own_info.account_data if isinstance(e, nio.FullyReadEvent)]
        assert [e.event_id for e in fully_read] == [sent.event_id]
        assert own_info.unread_notifications is not None
        assert own_info.unread_notifications.notification_count == 0

        stopped = await alice.room_typing(room, typing_state=False)
        assert isinstance(stopped, nio.RoomTypingResponse), stopped
        cleared = await bob.sync(timeout=5000)
        assert isinstance(cleared, nio.SyncResponse), cleared
        assert bob.rooms[room].typing_users == []
    finally:
        await alice.close()
        await bob.close()


def test_nio_clients_exchange_messages_typing_and_receipts(server: ServerProcess) -> None:
    asyncio.run(_nio_two_clients_sync(server.url))


async def test_initial_sync_carries_the_push_rules(http: httpx.AsyncClient) -> None:
    """Clients read their push rules from m.push_rules account data in the initial sync."""
    user = await register(http)
    r = await http.get(f"{CLIENT}/sync", headers=bearer(user["access_token"]))
    events = {e["type"]: e["content"] for e in r.json()["account_data"]["events"]}
    rules = events["m.push_rules"]["global"]
    assert any(rule["rule_id"] == ".m.rule.master" for rule in rules["override"])
    assert any(rule["rule_id"] == ".m.rule.message" for rule in rules["underride"])


async def test_a_member_who_leaves_stops_typing_at_once(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_in_a_room(http)
    b = bob["access_token"]
    await typing(http, alice, room, True, 60000)
    on = await sync(http, b)
    assert ephemeral(on, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": [alice["user_id"]]}}]
    r = await http.post(room_path(room, "leave"), headers=bearer(alice["access_token"]))
    assert r.status_code == 200
    after = await sync(http, b, on["next_batch"])
    assert ephemeral(after, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": []}}]
