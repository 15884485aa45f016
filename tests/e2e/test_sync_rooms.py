"""GET /sync: room sections, tokens, long-polling."""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio
import trio.lowlevel

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    register,
    room_path,
    send_text,
)


async def sync(http: httpx.AsyncClient, token: str, since: str | None = None,
               **params: Any) -> dict[str, Any]:
    query = {k: str(v) for k, v in params.items()}
    if since is not None:
        query["since"] = since
    r = await http.get(f"{CLIENT}/sync", params=query, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def timeline(body: dict[str, Any], room: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body["rooms"]["join"][room]["timeline"]["events"]
    return events


def bodies(body: dict[str, Any], room: str) -> list[str]:
    return [e["content"].get("body") for e in timeline(body, room)
            if e["type"] == "m.room.message"]


async def test_initial_sync_shows_a_joined_room_with_state_and_timeline(
        http: httpx.AsyncClient) -> None:
    alice = await register(http)
    token = alice["access_token"]
    room = await create_room(http, token, name="Sync room", topic="t")
    for i in range(15):
        await send_text(http, token, room, f"m{i}")
    body = await sync(http, token)
    section = body["rooms"]["join"][room]
    assert bodies(body, room) == [f"m{i}" for i in range(5, 15)]  # default limit 10
    assert section["timeline"]["limited"] is True
    state_types = {e["type"] for e in section["state"]["events"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} <= state_types
    assert all("room_id" not in e for e in section["timeline"]["events"])
    assert section["summary"]["m.joined_member_count"] == 1
    # prev_batch continues with /messages exactly where the timeline starts.
    r = await http.get(room_path(room, "messages"),
                       params={"from": section["timeline"]["prev_batch"], "dir": "b",
                               "limit": "5"}, headers=bearer(token))
    assert [e["content"]["body"] for e in r.json()["chunk"]] == [f"m{i}" for i in range(4, -1, -1)]


async def test_incremental_sync_returns_exactly_the_new_events(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    token = alice["access_token"]
    room = await create_room(http, token)
    first = await sync(http, token)
    await send_text(http, token, room, "one")
    await send_text(http, token, room, "two")
    second = await sync(http, token, first["next_batch"])
    assert bodies(second, room) == ["one", "two"]
    assert second["rooms"]["join"][room]["timeline"]["limited"] is False
    assert second["rooms"]["join"][room]["state"]["events"] == []
    third = await sync(http, token, second["next_batch"])
    assert "rooms" not in third  # nothing new: nothing repeated
    assert third["next_batch"] == second["next_batch"]


async def test_limited_incremental_sync_carries_the_state_delta(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    token = alice["access_token"]
    room = await create_room(http, token, name="Before")
    first = await sync(http, token)
    r = await http.put(room_path(room, "state", "m.room.name", ""), json={"name": "After"},
                       headers=bearer(token))
    assert r.status_code == 200
    for i in range(12):
        await send_text(http, token, room, f"x{i}")
    second = await sync(http, token, first["next_batch"])
    section = second["rooms"]["join"][room]
    assert section["timeline"]["limited"] is True
    names = [e["content"]["name"] for e in section["state"]["events"] if e["type"] == "m.room.name"]
    assert names == ["After"]
    assert all(e["type"] != "m.room.create" for e in section["state"]["events"])


async def test_invite_join_leave_kick_ban_as_seen_from_sync(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    a, b = alice["access_token"], bob["access_token"]
    room = await create_room(http, a, name="Club")
    start = await sync(http, b)
    r = await http.post(room_path(room, "invite"), json={"user_id": bob["user_id"]},
                        headers=bearer(a))
    assert r.status_code == 200
    after_invite = await sync(http, b, start["next_batch"])
    invite_state = after_invite["rooms"]["invite"][room]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "sender": alice["user_id"],
            "content": {"name": "Club"}} in invite_state
    member = [e for e in invite_state if e["type"] == "m.room.member"]
    assert member[0]["content"]["membership"] == "invite"
    assert member[0]["sender"] == alice["user_id"]

    r = await http.post(f"{CLIENT}/join/{room}", headers=bearer(b))
    assert r.status_code == 200
    after_join = await sync(http, b, after_invite["next_batch"])
    joined = after_join["rooms"]["join"][room]
    seen = {e["type"] for e in joined["state"]["events"]} | {
        e["type"] for e in joined["timeline"]["events"]}
    assert "m.room.create" in seen  # a newly joined room comes with its full state
    assert "invite" not in after_join.get("rooms", {})

    r = await http.post(room_path(room, "kick"), json={"user_id": bob["user_id"],
                                                       "reason": "go"}, headers=bearer(a))
    assert r.status_code == 200
    after_kick = await sync(http, b, after_join["next_batch"])
    left = after_kick["rooms"]["leave"][room]
    last = left["timeline"]["events"][-1]
    assert (last["type"], last["state_key"], last["content"]["membership"]) == (
        "m.room.member", bob["user_id"], "leave")
    assert last["content"]["reason"] == "go"
    assert room not in after_kick["rooms"].get("join", {})

    await send_text(http, a, room, "after bob left")
    quiet = await sync(http, b, after_kick["next_batch"])
    assert room not in quiet.get("rooms", {}).get("leave", {})
    assert room not in quiet.get("rooms", {}).get("join", {})

    r = await http.post(room_path(room, "ban"), json={"user_id": bob["user_id"]},
                        headers=bearer(a))
    assert r.status_code == 200
    after_ban = await sync(http, b, quiet["next_batch"])
    assert after_ban["rooms"]["leave"][room]["timeline"]["events"][-1]["content"][
        "membership"] == "ban"
    # Initial syncs show left rooms only with include_leave.
    assert room not in (await sync(http, b)).get("rooms", {}).get("leave", {})
    flt = '{"room": {"include_leave": true}}'
    assert room in (await sync(http, b, filter=flt))["rooms"]["leave"]


async def test_long_poll_wakes_on_a_message_and_times_out_empty(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    room = await create_room(http, alice["access_token"], preset="public_chat")
    r = await http.post(f"{CLIENT}/join/{room}", headers=bearer(bob["access_token"]))
    assert r.status_code == 200
    since = (await sync(http, bob["access_token"]))["next_batch"]

    t0 = time.monotonic()
    empty = await sync(http, bob["access_token"], since, timeout=400)
    assert time.monotonic() - t0 >= 0.35
    assert "rooms" not in empty

    woke: dict[str, Any] = {}

    async def waiter() -> None:
        woke["body"] = await sync(http, bob["access_token"], since, timeout=20000)
        woke["at"] = time.monotonic()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.3)
        sent_at = time.monotonic()
        await send_text(http, alice["access_token"], room, "wake up")
    assert bodies(woke["body"], room) == ["wake up"]
    assert woke["at"] - sent_at < 2.0  # well before the 20 s timeout


async def test_long_poll_is_cancelled_when_the_client_disconnects(http: httpx.AsyncClient,
                                                                 server) -> None:
    alice = await register(http)
    since = (await sync(http, alice["access_token"]))["next_batch"]
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    request = (f"GET {CLIENT}/sync?since={since}&timeout=30000 HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {alice['access_token']}\r\n\r\n").encode()

    async def waiting() -> int:
        r = await http.get("/_trioserver/status")
        assert r.status_code == 200
        count: int = r.json()["long_polls_waiting"]
        return count

    baseline = await waiting()
    streams = []
    for _ in range(5):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(request)
        streams.append(stream)
    with trio.fail_after(5):
        while await waiting() < baseline + 5:  # noqa: ASYNC110 - polling the server over HTTP
            await trio.sleep(0.05)
    for stream in streams:
        await stream.aclose()
    # Each disconnect cancels its long-poll: nothing is left waiting for 30 s.
    with trio.fail_after(5):
        while await waiting() > baseline:  # noqa: ASYNC110 - polling the server over HTTP
            await trio.sleep(0.05)
    again = await sync(http, alice["access_token"], since)
    assert again["next_batch"] == since


async def test_no_loss_or_duplicates_over_interleaved_syncs(http: httpx.AsyncClient) -> None:
    users = [await register(http) for _ in range(3)]
    room = await create_room(http, users[0]["access_token"], preset="public_chat")
    for u in users[1:]:
        r = await http.post(f"{CLIENT}/join/{room}", headers=bearer(u["access_token"]))
        assert r.status_code == 200
    reader = users[1]["access_token"]
    since = (await sync(http, reader))["next_batch"]
    received: list[str] = []
    sent: list[str] = []
    done = trio.Event()

    async def sender(token: str, tag: str) -> None:
        for i in range(20):
            sent.append(await send_text(http, token, room, f"{tag}{i}"))
            await trio.lowlevel.checkpoint()

    async def reader_loop() -> None:
        nonlocal since
        while True:
            body = await sync(http, reader, since, timeout=200)
            since = body["next_batch"]
            if room in body.get("rooms", {}).get("join", {}):
                section = body["rooms"]["join"][room]
                assert section["timeline"]["limited"] is False
                received.extend(e["event_id"] for e in section["timeline"]["events"])
            if done.is_set() and "rooms" not in body:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader_loop)
        async with trio.open_nursery() as senders:
            for u, tag in zip(users, "abc", strict=True):
                senders.start_soon(sender, u["access_token"], tag)
        done.set()
    assert sorted(received) == sorted(sent)
    assert len(received) == len(set(received))


async def test_bad_parameters(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    token = alice["access_token"]
    for params in ({"since": "garbage"}, {"timeout": "soon"}, {"full_state": "yes"},
                   {"set_presence": "busy"}):
        r = await http.get(f"{CLIENT}/sync", params=params, headers=bearer(token))
        assert r.status_code == 400, (params, r.text)
    r = await http.get(f"{CLIENT}/sync", params={"filter": "{not json"}, headers=bearer(token))
    assert_error(r, 400, "M_NOT_JSON")
    r = await http.get(f"{CLIENT}/sync", params={"filter": '{"room": 5}'}, headers=bearer(token))
    assert_error(r, 400, "M_BAD_JSON")
    r = await http.get(f"{CLIENT}/sync")
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_inline_filter_limits_and_types(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    token = alice["access_token"]
    room = await create_room(http, token)
    for i in range(4):
        await send_text(http, token, room, f"f{i}")
    flt = '{"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}}}'
    body = await sync(http, token, filter=flt)
    assert bodies(body, room) == ["f2", "f3"]
    assert body["rooms"]["join"][room]["timeline"]["limited"] is True
    flt = f'{{"room": {{"not_rooms": ["{room}"]}}}}'
    assert room not in (await sync(http, token, filter=flt)).get("rooms", {}).get("join", {})
    flt = '{"room": {"state": {"lazy_load_members": true}, "timeline": {"limit": 1}}}'
    lazy = (await sync(http, token, filter=flt))["rooms"]["join"][room]
    members = [e["state_key"] for e in lazy["state"]["events"] if e["type"] == "m.room.member"]
    assert members == [alice["user_id"]]


async def test_stored_filters(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    token = alice["access_token"]
    definition = {"room": {"timeline": {"limit": 1}}, "presence": {"types": []}}
    r = await http.post(f"{CLIENT}/user/{alice['user_id']}/filter", json=definition,
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    filter_id = r.json()["filter_id"]
    assert isinstance(filter_id, str)
    r = await http.get(f"{CLIENT}/user/{alice['user_id']}/filter/{filter_id}",
                       headers=bearer(token))
    assert r.json() == definition
    r = await http.get(f"{CLIENT}/user/{alice['user_id']}/filter/{filter_id}",
                       headers=bearer(bob["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(f"{CLIENT}/user/{alice['user_id']}/filter/999999",
                       headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.post(f"{CLIENT}/user/{bob['user_id']}/filter", json=definition,
                        headers=bearer(token))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.post(f"{CLIENT}/user/{alice['user_id']}/filter",
                        json={"room": {"timeline": {"limit": "ten"}}}, headers=bearer(token))
    assert_error(r, 400, "M_BAD_JSON")

    room = await create_room(http, token)
    for i in range(3):
        await send_text(http, token, room, f"s{i}")
    body = await sync(http, token, filter=filter_id)
    assert bodies(body, room) == ["s2"]
    r = await http.get(f"{CLIENT}/sync", params={"filter": "424242"}, headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
