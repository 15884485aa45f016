"""Simplified Sliding Sync extensions over HTTP: to_device, e2ee, account_data, receipts, typing.

MSC3885/MSC4538 (to_device: `since`/`next_batch`, explicit acknowledgement), MSC3884/MSC4543
(e2ee), MSC3959 (account_data), MSC3960 (receipts), MSC3961/MSC4508 (typing, and the common
`enabled`/`lists`/`rooms` scoping). Every test runs on both wire shapes; on the v4 endpoint the
typing result is under its prefixed key.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import (
    CLIENT,
    bearer,
    create_room,
    register,
    room_path,
    send_text,
    two_users_in_a_room,
    user_and_token,
)
from tests.e2e.olm_device import SIGNED_CURVE25519, OlmDevice
from tests.e2e.sliding_helpers import (
    Body,
    Conn,
    Shape,
    both_shapes,
    membership_action,
    parked_sync,
    post_ok,
    rooms_of,
    send_to_device,
    set_account_data,
    set_typing,
)


def ext(body: Body, shape: Shape, name: str) -> Any:
    return body.get("extensions", {}).get(shape.ext_key(name))


def one_list(shape: Shape, name: str = "l", range_: tuple[int, int] = (0, 19)) -> Body:
    return {name: shape.list_config(1, range_=range_)}


# -- to_device -----------------------------------------------------------------------------


@both_shapes
async def test_to_device_delivery_and_acknowledgement(http: httpx.AsyncClient,
                                                      shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    bob_conn = Conn(http, bob["access_token"], shape)

    async def send(n: int) -> None:
        await send_to_device(http, alice["access_token"], "m.test",
                             {bob["user_id"]: {bob["device_id"]: {"n": n}}})

    def to_device(since: str | None = None, limit: int | None = None) -> Body:
        config: Body = {"enabled": True}
        if since is not None:
            config["since"] = since
        if limit is not None:
            config["limit"] = limit
        return {"to_device": config}

    await send(1)
    await send(2)
    first = ext(await bob_conn.sync(extensions=to_device()), shape, "to_device")
    assert [e["content"] for e in first["events"]] == [{"n": 1}, {"n": 2}]
    assert all(e["sender"] == alice["user_id"] and e["type"] == "m.test"
               for e in first["events"])
    assert isinstance(first["next_batch"], str)

    # Without `since` nothing was acknowledged: they come again.
    again = ext(await bob_conn.sync(extensions=to_device()), shape, "to_device")
    assert [e["content"] for e in again["events"]] == [{"n": 1}, {"n": 2}]

    # With since=next_batch they are gone, and only a new one comes.
    await send(3)
    acked = ext(await bob_conn.sync(extensions=to_device(first["next_batch"])), shape,
                "to_device")
    assert [e["content"] for e in acked["events"]] == [{"n": 3}]
    # Deleted on the server: even a request without `since` no longer sees 1 and 2.
    assert [e["content"] for e in ext(await bob_conn.sync(extensions=to_device()), shape,
                                      "to_device")["events"]] == [{"n": 3}]

    # `limit` cuts the batch; the rest comes from the next_batch it gives.
    await send(4)
    await send(5)
    part = ext(await bob_conn.sync(extensions=to_device(acked["next_batch"], limit=2)), shape,
               "to_device")
    assert [e["content"] for e in part["events"]] == [{"n": 4}, {"n": 5}]
    rest = ext(await bob_conn.sync(extensions=to_device(part["next_batch"], limit=2)), shape,
               "to_device")
    assert rest["events"] == []


@both_shapes
async def test_to_device_wakes_a_long_poll(http: httpx.AsyncClient, shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    conn = Conn(http, bob["access_token"], shape)
    extensions = {"to_device": {"enabled": True}}
    await conn.sync(extensions=extensions)
    body, after = await parked_sync(
        conn, None,
        lambda: send_to_device(http, alice["access_token"], "m.test",
                               {bob["user_id"]: {"*": {"wake": True}}}),
        extensions=extensions)
    assert after < 2.0, after
    assert [e["content"] for e in ext(body, shape, "to_device")["events"]] == [{"wake": True}]


# -- e2ee ----------------------------------------------------------------------------------


@both_shapes
async def test_e2ee_counts_and_device_list_changes(http: httpx.AsyncClient,
                                                   shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    stranger = await register(http)
    device = OlmDevice(bob["user_id"], bob["device_id"])
    r = await http.post(f"{CLIENT}/keys/upload", headers=bearer(bob["access_token"]),
                        json=device.upload_body(one_time_keys=5, fallback=True))
    assert r.status_code == 200, r.text
    conn = Conn(http, bob["access_token"], shape)
    extensions = {"e2ee": {"enabled": True}}
    e2ee = ext(await conn.sync(extensions=extensions), shape, "e2ee")
    assert e2ee["device_one_time_keys_count"] == {SIGNED_CURVE25519: 5}
    assert e2ee["device_unused_fallback_key_types"] == [SIGNED_CURVE25519]

    # Alice (who shares a room) uploads device keys; a stranger does too.
    for who in (alice, stranger):
        keys = OlmDevice(who["user_id"], who["device_id"]).upload_body()
        r = await http.post(f"{CLIENT}/keys/upload", json=keys,
                            headers=bearer(who["access_token"]))
        assert r.status_code == 200, r.text
    e2ee = ext(await conn.sync(extensions=extensions), shape, "e2ee")
    assert alice["user_id"] in e2ee["device_lists"]["changed"]
    assert stranger["user_id"] not in e2ee["device_lists"]["changed"]
    # Counts are always sent.
    assert e2ee["device_one_time_keys_count"] == {SIGNED_CURVE25519: 5}
    # Not repeated.
    e2ee = ext(await conn.sync(extensions=extensions), shape, "e2ee")
    assert e2ee["device_lists"]["changed"] == []
    # Alice leaves the only room they share: Bob stops tracking her devices.
    await membership_action(http, alice["access_token"], room, "leave")
    e2ee = ext(await conn.sync(extensions=extensions), shape, "e2ee")
    assert e2ee["device_lists"]["left"] == [alice["user_id"]]


# -- account_data --------------------------------------------------------------------------


@both_shapes
async def test_account_data_global_and_rooms_in_scope(http: httpx.AsyncClient,
                                                      shape: Shape) -> None:
    reg = await register(http)
    token, user = reg["access_token"], reg["user_id"]
    listed = await create_room(http, token)
    unlisted = await create_room(http, token)  # older: outside the [0, 0] window
    await send_text(http, token, listed, "newest")
    await set_account_data(http, token, user, "org.example.global", {"g": 1})
    for room in (listed, unlisted):
        await set_account_data(http, token, user, "org.example.room", {"room": room}, room)
    conn = Conn(http, token, shape)
    lists = one_list(shape, range_=(0, 0))
    extensions = {"account_data": {"enabled": True}}
    data = ext(await conn.sync(lists, extensions=extensions), shape, "account_data")
    global_types = {e["type"]: e["content"] for e in data["global"]}
    assert global_types["org.example.global"] == {"g": 1}
    assert "m.push_rules" in global_types  # the defaults, as an initial /v3/sync has them
    assert data["rooms"] == {listed: [{"type": "org.example.room",
                                       "content": {"room": listed}}]}

    # Only changes afterwards.
    await set_account_data(http, token, user, "org.example.global", {"g": 2})
    data = ext(await conn.sync(lists, extensions=extensions), shape, "account_data")
    assert data["global"] == [{"type": "org.example.global", "content": {"g": 2}}]
    assert data["rooms"] == {}

    # Scoped to no lists and no rooms: global only.
    await set_account_data(http, token, user, "org.example.room", {"v": 2}, listed)
    scoped = {"account_data": {"enabled": True, "lists": [], "rooms": []}}
    data = ext(await conn.sync(lists, extensions=scoped), shape, "account_data")
    assert data["rooms"] == {}


@both_shapes
async def test_account_data_and_receipts_wake_a_long_poll(http: httpx.AsyncClient,
                                                          shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    event_id = await send_text(http, alice["access_token"], room, "hello")
    conn = Conn(http, bob["access_token"], shape)
    extensions = {"account_data": {"enabled": True}, "receipts": {"enabled": True}}
    await conn.sync(one_list(shape), extensions=extensions)

    body, after = await parked_sync(
        conn, one_list(shape),
        lambda: set_account_data(http, bob["access_token"], bob["user_id"], "org.example.x",
                                 {"x": 1}),
        extensions=extensions)
    assert after < 2.0, after
    assert ext(body, shape, "account_data")["global"] == [
        {"type": "org.example.x", "content": {"x": 1}}]
    assert rooms_of(body) == {}

    body, after = await parked_sync(
        conn, one_list(shape),
        lambda: post_ok(http, alice["access_token"],
                        room_path(room, "receipt", "m.read", event_id), {}),
        extensions=extensions)
    assert after < 2.0, after
    assert set(ext(body, shape, "receipts")["rooms"][room]["content"][event_id]["m.read"]) == \
        {alice["user_id"]}


# -- receipts ------------------------------------------------------------------------------


@both_shapes
async def test_receipts(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    event_id = await send_text(http, alice["access_token"], room, "read me")
    conn = Conn(http, alice["access_token"], shape)
    extensions = {"receipts": {"enabled": True}}
    await conn.sync(one_list(shape), extensions=extensions)
    await post_ok(http, bob["access_token"], room_path(room, "receipt", "m.read", event_id), {})
    receipts = ext(await conn.sync(one_list(shape), extensions=extensions), shape, "receipts")
    receipt = receipts["rooms"][room]
    assert receipt["type"] == "m.receipt"
    assert set(receipt["content"][event_id]["m.read"]) == {bob["user_id"]}
    assert isinstance(receipt["content"][event_id]["m.read"][bob["user_id"]]["ts"], int)

    # A new connection sees it with the room, for the event in its timeline.
    fresh = Conn(http, alice["access_token"], shape, conn_id="fresh")
    receipts = ext(await fresh.sync(one_list(shape), extensions=extensions), shape, "receipts")
    assert bob["user_id"] in receipts["rooms"][room]["content"][event_id]["m.read"]

    # Once the event is out of the timeline a room sent `initial` has only the user's own
    # receipts on it (MSC3960), public or private.
    await post_ok(http, alice["access_token"],
                  room_path(room, "receipt", "m.read.private", event_id), {})
    await send_text(http, alice["access_token"], room, "newer")
    fresh = Conn(http, alice["access_token"], shape, conn_id="fresh")
    receipts = ext(await fresh.sync(one_list(shape), extensions=extensions), shape, "receipts")
    content = receipts["rooms"][room]["content"]
    assert list(content) == [event_id]
    assert {t: set(users) for t, users in content[event_id].items()} == {
        "m.read.private": {alice["user_id"]}}


# -- typing --------------------------------------------------------------------------------


@both_shapes
async def test_typing_and_its_scope(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, room_1 = await two_users_in_a_room(http)
    room_2 = await create_room(http, alice["access_token"], preset="public_chat")
    r = await http.post(room_path(room_2, "join"), json={}, headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    # Bob's lists: "new" holds room_2 (the newest), "old" room_1.
    lists = {**one_list(shape, "new", (0, 0)), **one_list(shape, "old", (1, 1))}
    request_key = "org.matrix.msc4508.typing" if shape.v4 else "typing"
    conn = Conn(http, bob["access_token"], shape)
    await conn.sync(lists, extensions={request_key: {"enabled": True}})

    await set_typing(http, alice["access_token"], room_1, alice["user_id"])
    await set_typing(http, alice["access_token"], room_2, alice["user_id"])
    only_old = {request_key: {"enabled": True, "lists": ["old"]}}
    typing = ext(await conn.sync(lists, extensions=only_old), shape, "typing")
    assert typing["rooms"] == {room_1: {"type": "m.typing",
                                        "content": {"user_ids": [alice["user_id"]]}}}
    # room_2 re-enters the extension's scope: its current typing state is sent (MSC4508),
    # although it changed while the room was out of scope.
    typing = ext(await conn.sync(lists, extensions={request_key: {"enabled": True}}), shape,
                 "typing")
    assert typing["rooms"] == {room_2: {"type": "m.typing",
                                        "content": {"user_ids": [alice["user_id"]]}}}

    # A fresh connection, typing scoped to a subscription only.
    fresh = Conn(http, bob["access_token"], shape, conn_id="fresh")
    subs = {room_2: shape.room_config(1)}
    by_room = {request_key: {"enabled": True, "lists": [], "rooms": [room_2]}}
    typing = ext(await fresh.sync(lists, subs, extensions=by_room), shape, "typing")
    assert set(typing["rooms"]) == {room_2}

    # Typing wakes a long-poll; stopping is sent as an empty list.
    all_rooms = {request_key: {"enabled": True}}
    await conn.sync(lists, extensions=all_rooms)
    body, after = await parked_sync(
        conn, lists, lambda: set_typing(http, alice["access_token"], room_1, alice["user_id"],
                                        typing=False),
        extensions=all_rooms)
    assert after < 2.0, after
    assert ext(body, shape, "typing")["rooms"][room_1]["content"] == {"user_ids": []}


async def test_v4_answers_each_extension_under_the_key_the_client_used(
        http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    r = await http.post("/_matrix/client/v4/sync", headers=bearer(token), json={
        "extensions": {"org.matrix.msc4538.to_device": {"enabled": True},
                       "e2ee": {"enabled": True},
                       "org.matrix.msc4508.typing": {"enabled": True},
                       "some.unknown.extension": {"enabled": True}}})
    assert r.status_code == 200, r.text
    extensions = r.json()["extensions"]
    assert set(extensions) == {"org.matrix.msc4538.to_device", "e2ee",
                               "org.matrix.msc4508.typing"}
    assert extensions["org.matrix.msc4538.to_device"]["events"] == []
