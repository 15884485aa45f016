"""Simplified Sliding Sync (MSC4186) over HTTP: connections, `pos`, errors and long-polling.

MSC4186 "Connections": a connection is (user, device, conn_id); each response's `pos` is the
next request's; the latest `pos` may be retried, an older one, or one issued to another
user/device/connection, is refused with 400 M_UNKNOWN_POS. Lists, rooms, memberships and
extensions are in `test_sliding_sync_{lists,rooms,memberships,extensions}.py`. Every test runs
on both wire shapes.
"""

from __future__ import annotations

import time

import httpx

from tests.e2e.helpers import (
    assert_error,
    bearer,
    create_room,
    login,
    register,
    send_text,
    two_users_in_a_room,
)
from tests.e2e.sliding_helpers import (
    V4,
    Conn,
    Shape,
    both_shapes,
    invite,
    parked_sync,
    rooms_of,
    timeline_bodies,
)


def all_rooms(shape: Shape, timeline_limit: int = 5) -> dict[str, object]:
    return {"all": shape.list_config(timeline_limit, ("m.room.name", ""), range_=(0, 19))}


# -- pos -----------------------------------------------------------------------------------


@both_shapes
async def test_pos_chain_and_a_retry_with_the_latest_pos(http: httpx.AsyncClient,
                                                         shape: Shape) -> None:
    reg = await register(http)
    token = reg["access_token"]
    room_a = await create_room(http, token, name="A")
    conn = Conn(http, token, shape)
    first = await conn.sync(all_rooms(shape))
    assert set(rooms_of(first)) == {room_a}
    assert first["lists"]["all"]["count"] == 1

    # Nothing new: no rooms (the room was sent already).
    second = await conn.sync(all_rooms(shape))
    assert rooms_of(second) == {}
    assert second["pos"] != first["pos"]

    # A new room and a message; the client drops the response...
    room_b = await create_room(http, token, name="B")
    await send_text(http, token, room_a, "hello")
    dropped = await conn.sync(all_rooms(shape), advance=False)
    assert set(rooms_of(dropped)) == {room_a, room_b}
    # ...and retries with the same pos: the same rooms again, the server did not advance.
    retried = await conn.sync(all_rooms(shape))
    assert set(rooms_of(retried)) == {room_a, room_b}
    assert rooms_of(retried)[room_b].get("initial") is True
    assert timeline_bodies(rooms_of(retried)[room_a]) == ["hello"]
    assert rooms_of(retried)[room_a].get("initial") is None

    # The older pos is gone once a newer one has been used.
    assert rooms_of(await conn.sync(all_rooms(shape))) == {}
    old = await conn.raw(all_rooms(shape), pos=first["pos"])
    assert_error(old, 400, "M_UNKNOWN_POS")
    # The latest still works after that refusal.
    assert rooms_of(await conn.sync(all_rooms(shape))) == {}


@both_shapes
async def test_foreign_and_garbage_pos_are_unknown(http: httpx.AsyncClient,
                                                   shape: Shape) -> None:
    reg = await register(http)
    token = reg["access_token"]
    await create_room(http, token)
    conn = Conn(http, token, shape, conn_id="main")
    await conn.sync(all_rooms(shape))
    assert conn.pos is not None

    # (An empty pos is a pos too, and not one the server issued.)
    for garbage in ("nonsense", "e1.sc1.sn1", conn.pos + "0", ""):
        assert_error(await conn.raw(all_rooms(shape), pos=garbage), 400, "M_UNKNOWN_POS")

    # Another user, another device of the same user, another conn_id: not theirs.
    other = await register(http)
    r = await Conn(http, other["access_token"], shape, conn_id="main").raw(pos=conn.pos)
    assert_error(r, 400, "M_UNKNOWN_POS")
    r2 = await login(http, reg["user_id"])
    assert r2.status_code == 200, r2.text
    second_device = r2.json()["access_token"]
    r = await Conn(http, second_device, shape, conn_id="main").raw(pos=conn.pos)
    assert_error(r, 400, "M_UNKNOWN_POS")
    r = await Conn(http, token, shape, conn_id="other").raw(pos=conn.pos)
    assert_error(r, 400, "M_UNKNOWN_POS")
    r = await Conn(http, token, shape).raw(pos=conn.pos)  # no conn_id is a conn_id too
    assert_error(r, 400, "M_UNKNOWN_POS")
    # None of that harmed the real connection.
    assert rooms_of(await conn.sync(all_rooms(shape))) == {}


@both_shapes
async def test_two_conn_ids_on_one_device_are_independent(http: httpx.AsyncClient,
                                                          shape: Shape) -> None:
    reg = await register(http)
    token = reg["access_token"]
    room = await create_room(http, token)
    a = Conn(http, token, shape, conn_id="a")
    b = Conn(http, token, shape, conn_id="b")
    assert set(rooms_of(await a.sync(all_rooms(shape)))) == {room}
    # b has not been sent the room yet, whatever a has.
    assert set(rooms_of(await b.sync(all_rooms(shape)))) == {room}
    await send_text(http, token, room, "one")
    assert timeline_bodies(rooms_of(await a.sync(all_rooms(shape)))[room]) == ["one"]
    # a moving on did not consume b's update.
    assert timeline_bodies(rooms_of(await b.sync(all_rooms(shape)))[room]) == ["one"]
    # Restarting a (no pos) does not touch b's pos.
    a.pos = None
    assert rooms_of(await a.sync(all_rooms(shape)))[room]["initial"] is True
    assert rooms_of(await b.sync(all_rooms(shape))) == {}


@both_shapes
async def test_no_pos_restarts_the_connection(http: httpx.AsyncClient, shape: Shape) -> None:
    reg = await register(http)
    token = reg["access_token"]
    room = await create_room(http, token)
    conn = Conn(http, token, shape)
    await conn.sync(all_rooms(shape))
    old = conn.pos
    conn.pos = None
    again = await conn.sync(all_rooms(shape))
    assert rooms_of(again)[room]["initial"] is True
    # The restart replaced the connection: its earlier pos is gone.
    assert_error(await conn.raw(all_rooms(shape), pos=old), 400, "M_UNKNOWN_POS")


@both_shapes
async def test_a_retry_may_change_the_request(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    old = await create_room(http, token)
    new = await create_room(http, token)
    conn = Conn(http, token, shape)
    top = {"all": shape.list_config(1, range_=(0, 0))}
    assert set(rooms_of(await conn.sync(top))) == {new}
    # Dropped: a response for a wider window...
    wider = {"all": shape.list_config(1, range_=(0, 1))}
    assert set(rooms_of(await conn.sync(wider, advance=False))) == {old}
    # ...and the retry with the same pos asks for something else: computed afresh.
    sub = await conn.sync(top, {old: shape.room_config(2)})
    assert set(rooms_of(sub)) == {old}
    assert len(rooms_of(sub)[old]["timeline"]) == 2


async def test_old_connections_of_a_device_are_evicted(http: httpx.AsyncClient) -> None:
    """At most 10 connections per device (MSC4186: "Limit the number of stored connections");
    the least recently used one goes, and its pos is then unknown."""
    token = (await register(http))["access_token"]
    conns = [Conn(http, token, V4, conn_id=f"c{i}") for i in range(11)]
    for conn in conns:
        await conn.sync()
    assert_error(await conns[0].raw(pos=conns[0].pos), 400, "M_UNKNOWN_POS")
    for conn in conns[1:]:
        await conn.sync()


# -- bad requests --------------------------------------------------------------------------


@both_shapes
async def test_bad_bodies_are_refused_with_an_errcode(http: httpx.AsyncClient,
                                                      shape: Shape) -> None:
    token = (await register(http))["access_token"]
    good = shape.list_config(1, range_=(0, 9))

    async def refused(body: object, errcode: str) -> None:
        r = await shape.post(http, token, body)  # type: ignore[arg-type]
        assert_error(r, 400, errcode)

    await refused({"lists": []}, "M_BAD_JSON")
    await refused({"lists": {"a": {**good, "timeline_limit": "10"}}}, "M_BAD_JSON")
    await refused({"lists": {"a": {**good, "timeline_limit": -1}}}, "M_INVALID_PARAM")
    await refused({"conn_id": 7}, "M_BAD_JSON")
    await refused({"room_subscriptions": {"!r:x": {"timeline_limit": True}}}, "M_BAD_JSON")
    await refused({"lists": {"a": {**good, "filters": {"is_dm": "yes"}}}}, "M_BAD_JSON")
    await refused({"extensions": {"to_device": {"enabled": True, "limit": "5"}}}, "M_BAD_JSON")
    await refused({"lists": {f"l{i}": good for i in range(101)}}, "M_INVALID_PARAM")
    if shape.v4:
        await refused({"lists": {"a": {**good, "range": [5, 1]}}}, "M_INVALID_PARAM")
        await refused({"lists": {"a": {"timeline_limit": 1}}}, "M_MISSING_PARAM")
        await refused({"timeout": "soon"}, "M_BAD_JSON")
        await refused({"set_presence": "busy"}, "M_INVALID_PARAM")
        await refused({"room_subscriptions": {
            f"!r{i}:x": shape.room_config(1) for i in range(101)}}, "M_INVALID_PARAM")
    else:
        await refused({"lists": {"a": {**good, "ranges": [[5, 1]]}}}, "M_INVALID_PARAM")
        await refused({"lists": {"a": {**good, "ranges": [5, 1]}}}, "M_BAD_JSON")
        r = await http.post(shape.path, params={"timeout": "soon"}, json={},
                            headers=bearer(token))
        assert_error(r, 400, "M_INVALID_PARAM")
    # 100 lists is fine.
    r = await shape.post(http, token, {"lists": {f"l{i}": good for i in range(100)}})
    assert r.status_code == 200, r.text
    # Not a JSON object at all.
    r = await http.post(shape.path, content=b"[1]",
                        headers={"Authorization": f"Bearer {token}",
                                 "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    # Unauthenticated.
    r = await http.post(shape.path, json={})
    assert_error(r, 401, "M_MISSING_TOKEN")


# -- long-polling --------------------------------------------------------------------------


@both_shapes
async def test_long_poll_wakes_on_a_message_in_a_listed_room(http: httpx.AsyncClient,
                                                             shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    conn = Conn(http, bob["access_token"], shape)
    await conn.sync(all_rooms(shape))
    body, after = await parked_sync(
        conn, all_rooms(shape),
        lambda: send_text(http, alice["access_token"], room, "wake up"), timeout_ms=10000)
    assert after < 2.0, after
    assert timeline_bodies(rooms_of(body)[room]) == ["wake up"]
    assert rooms_of(body)[room]["num_live"] == 1


@both_shapes
async def test_long_poll_wakes_on_an_invite(http: httpx.AsyncClient, shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    room = await create_room(http, alice["access_token"])
    conn = Conn(http, bob["access_token"], shape)
    await conn.sync(all_rooms(shape))
    body, after = await parked_sync(
        conn, all_rooms(shape), lambda: invite(http, alice["access_token"], room, bob["user_id"]))
    assert after < 2.0, after
    assert shape.stripped_state_key in rooms_of(body)[room]
    assert body["lists"]["all"]["count"] == 1


@both_shapes
async def test_long_poll_times_out_with_no_rooms(http: httpx.AsyncClient,
                                                 shape: Shape) -> None:
    token = (await register(http))["access_token"]
    await create_room(http, token)
    conn = Conn(http, token, shape)
    await conn.sync(all_rooms(shape))
    started = time.monotonic()
    body = await conn.sync(all_rooms(shape), timeout_ms=500)
    took = time.monotonic() - started
    assert 0.45 <= took < 2.0, took
    assert rooms_of(body) == {}
    assert body["lists"]["all"]["count"] == 1
    # Without a pos, timeout is ignored: an initial request returns at once.
    started = time.monotonic()
    r = await conn.raw(all_rooms(shape), timeout_ms=5000)
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 2.0
