"""Simplified Sliding Sync (MSC4186) lists over HTTP: counts, ranges, activity order, filters.

MSC4186 "Lists", "Activity ordering", `SyncListConfig`, `SlidingRoomFilter`, `SyncListResult`.
Every test runs on both wire shapes; the unstable shape's `ops` (which carry the window in
order) are checked where it has them, the v4 shape's room `lists` otherwise.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import (
    create_room,
    put_state,
    register,
    send_text,
    two_users_in_a_room,
)
from tests.e2e.sliding_helpers import (
    UNSTABLE,
    Body,
    Conn,
    Shape,
    both_shapes,
    invite,
    rooms_of,
    set_account_data,
    set_tag,
    timeline_bodies,
)


async def rooms_in_order(http: httpx.AsyncClient, token: str, count: int) -> list[str]:
    """`count` new rooms, returned newest (most recent activity) first."""
    return [await create_room(http, token, name=f"room {i}") for i in range(count)][::-1]


async def window(conn: Conn, config: Body) -> tuple[Body, set[str]]:
    """One request with a single list "l"; the response and the list's rooms in it."""
    body = await conn.sync({"l": config})
    return body, {r for r, room in rooms_of(body).items() if not conn.shape.v4
                  or "l" in room.get("lists", [])}


# -- counts, ranges, order -----------------------------------------------------------------


@both_shapes
async def test_range_count_and_activity_order(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    newest_first = await rooms_in_order(http, token, 4)
    conn = Conn(http, token, shape)
    body = await conn.sync({"l": shape.list_config(3, range_=(0, 1))})
    assert body["lists"]["l"]["count"] == 4
    assert set(rooms_of(body)) == set(newest_first[:2])
    if shape.v4:
        assert all(room["lists"] == ["l"] for room in rooms_of(body).values())
        assert all(room["membership"] == "join" for room in rooms_of(body).values())
    else:
        assert shape.ops_ids(body, "l") == [newest_first[:2]]
        assert body["lists"]["l"]["ops"][0]["range"] == [0, 1]

    # Growing the range sends the rooms not sent yet, and only those.
    body = await conn.sync({"l": shape.list_config(3, range_=(0, 9))})
    assert set(rooms_of(body)) == set(newest_first[2:])
    assert all(room["initial"] is True for room in rooms_of(body).values())
    if not shape.v4:
        assert shape.ops_ids(body, "l") == [newest_first]

    # A message in the oldest room moves it to the top; it comes with just the new event.
    oldest = newest_first[-1]
    await send_text(http, token, oldest, "bump")
    body = await conn.sync({"l": shape.list_config(3, range_=(0, 9))})
    assert set(rooms_of(body)) == {oldest}
    room = rooms_of(body)[oldest]
    assert [e["content"].get("body") for e in room["timeline"]] == ["bump"]
    assert room["num_live"] == 1
    assert room.get("initial") is None
    assert room["limited"] is False
    if not shape.v4:
        assert shape.ops_ids(body, "l") == [[oldest, *newest_first[:-1]]]

    # The top of the list is now that room.
    top = Conn(http, token, shape)
    _, ids = await window(top, shape.list_config(1, range_=(0, 0)))
    assert ids == {oldest}


@both_shapes
async def test_a_room_entering_the_window_is_initial_with_live_events(
        http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    newest_first = await rooms_in_order(http, token, 3)
    conn = Conn(http, token, shape)
    _, ids = await window(conn, shape.list_config(5, range_=(0, 0)))
    assert ids == {newest_first[0]}
    outside = newest_first[2]
    await send_text(http, token, outside, "mention")
    body, ids = await window(conn, shape.list_config(5, range_=(0, 0)))
    assert ids == {outside}
    room = rooms_of(body)[outside]
    assert room["initial"] is True
    assert timeline_bodies(room) == ["mention"]
    assert len(room["timeline"]) == 5  # older events too (the limit), one of them live
    assert room["num_live"] == 1


async def test_unstable_multiple_ranges_and_their_ops(http: httpx.AsyncClient) -> None:
    shape = UNSTABLE
    token = (await register(http))["access_token"]
    newest_first = await rooms_in_order(http, token, 5)
    conn = Conn(http, token, shape)
    config = shape.list_config(1)
    config["ranges"] = [[0, 0], [2, 3], [10, 20]]
    body = await conn.sync({"l": config})
    assert body["lists"]["l"]["count"] == 5
    assert shape.ops_ids(body, "l") == [[newest_first[0]], newest_first[2:4], []]
    assert [op["range"] for op in body["lists"]["l"]["ops"]] == [[0, 0], [2, 3], [10, 20]]
    assert set(rooms_of(body)) == {newest_first[0], *newest_first[2:4]}
    # `ranges: []` is an empty window: the count, but no rooms.
    empty = shape.list_config(1)
    empty["ranges"] = []
    body = await Conn(http, token, shape).sync({"l": empty})
    assert body["lists"]["l"]["count"] == 5
    assert rooms_of(body) == {}


@both_shapes
async def test_no_range_means_every_room(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    newest_first = await rooms_in_order(http, token, 3)
    body = await Conn(http, token, shape).sync({"l": shape.list_config(1)})
    assert set(rooms_of(body)) == set(newest_first)
    assert body["lists"]["l"]["count"] == 3
    if not shape.v4:
        assert shape.ops_ids(body, "l") == [newest_first]
        # slow_get_all_rooms wins over `ranges`.
        config = shape.list_config(1, range_=(0, 0))
        config["slow_get_all_rooms"] = True
        body = await Conn(http, token, shape).sync({"l": config})
        assert set(rooms_of(body)) == set(newest_first)


# -- filters -------------------------------------------------------------------------------


async def filtered(conn: Conn, filters: Body) -> tuple[int, set[str]]:
    """A fresh request with one filtered list (whole range): its count and rooms."""
    conn.pos = None
    body, ids = await window(conn, conn.shape.list_config(1, filters=filters))
    assert len(ids) == body["lists"]["l"]["count"]
    return body["lists"]["l"]["count"], ids


@both_shapes
async def test_is_dm_filter_and_flag(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, dm = await two_users_in_a_room(http)
    a = alice["access_token"]
    other = await create_room(http, a)
    await set_account_data(http, a, alice["user_id"], "m.direct", {bob["user_id"]: [dm]})
    conn = Conn(http, a, shape)
    assert await filtered(conn, {"is_dm": True}) == (1, {dm})
    assert await filtered(conn, {"is_dm": False}) == (1, {other})
    conn.pos = None
    body = await conn.sync({"l": shape.list_config(1)})
    assert rooms_of(body)[dm]["is_dm"] is True
    assert "is_dm" not in rooms_of(body)[other]
    # No longer a DM: the change is sent.
    await set_account_data(http, a, alice["user_id"], "m.direct", {})
    body = await conn.sync({"l": shape.list_config(1)})
    assert rooms_of(body)[dm]["is_dm"] is False


@both_shapes
async def test_spaces_filter(http: httpx.AsyncClient, shape: Shape) -> None:
    reg = await register(http)
    token, server = reg["access_token"], reg["user_id"].split(":", 1)[1]
    space = await create_room(http, token, creation_content={"type": "m.space"})
    child = await create_room(http, token)
    unlinked = await create_room(http, token)  # m.space.child without `via`: not a child
    grandchild = await create_room(http, token)  # child of a child: not followed
    await create_room(http, token)
    for room, parent, via in ((child, space, [server]), (unlinked, space, []),
                              (grandchild, child, [server])):
        r = await put_state(http, token, parent, "m.space.child", {"via": via}, room)
        assert r.status_code == 200, r.text
    conn = Conn(http, token, shape)
    assert await filtered(conn, {"spaces": [space]}) == (1, {child})
    assert await filtered(conn, {"spaces": [space, child]}) == (2, {child, grandchild})
    # Unknown spaces, and spaces the user is not in, are ignored.
    assert await filtered(conn, {"spaces": ["!nowhere:" + server]}) == (0, set())
    outsider = (await register(http))["access_token"]
    assert await filtered(Conn(http, outsider, shape), {"spaces": [space]}) == (0, set())


@both_shapes
async def test_is_encrypted_filter(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    encrypted = await create_room(http, token, initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    plain = await create_room(http, token)
    conn = Conn(http, token, shape)
    assert await filtered(conn, {"is_encrypted": True}) == (1, {encrypted})
    assert await filtered(conn, {"is_encrypted": False}) == (1, {plain})
    # Encryption enabled later counts too.
    r = await put_state(http, token, plain, "m.room.encryption",
                        {"algorithm": "m.megolm.v1.aes-sha2"})
    assert r.status_code == 200, r.text
    assert await filtered(conn, {"is_encrypted": True}) == (2, {encrypted, plain})


@both_shapes
async def test_is_invited_filter(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, joined = await two_users_in_a_room(http)
    invited = await create_room(http, alice["access_token"])
    await invite(http, alice["access_token"], invited, bob["user_id"])
    conn = Conn(http, bob["access_token"], shape)
    key = shape.invited_filter
    assert await filtered(conn, {key: True}) == (1, {invited})
    assert await filtered(conn, {key: False}) == (1, {joined})
    if not shape.v4:  # the unstable endpoint takes the final name too
        assert await filtered(conn, {"is_invited": True}) == (1, {invited})


@both_shapes
async def test_room_types_filters(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    space = await create_room(http, token, creation_content={"type": "m.space"})
    custom = await create_room(http, token, creation_content={"type": "org.example.kind"})
    plain = await create_room(http, token)
    conn = Conn(http, token, shape)
    assert await filtered(conn, {"room_types": ["m.space"]}) == (1, {space})
    assert await filtered(conn, {"room_types": [None]}) == (1, {plain})
    assert await filtered(conn, {"room_types": [None, "org.example.kind"]}) == (2, {plain, custom})
    assert await filtered(conn, {"not_room_types": ["m.space"]}) == (2, {plain, custom})
    assert await filtered(conn, {"not_room_types": [None]}) == (2, {space, custom})
    # not_room_types wins.
    assert await filtered(conn, {"room_types": ["m.space"], "not_room_types": ["m.space"]}) \
        == (0, set())


@both_shapes
async def test_tags_filters(http: httpx.AsyncClient, shape: Shape) -> None:
    reg = await register(http)
    token, user = reg["access_token"], reg["user_id"]
    fav = await create_room(http, token)
    fav_low = await create_room(http, token)
    low = await create_room(http, token)
    untagged = await create_room(http, token)
    await set_tag(http, token, user, fav, "m.favourite")
    await set_tag(http, token, user, fav_low, "m.favourite")
    await set_tag(http, token, user, fav_low, "m.lowpriority")
    await set_tag(http, token, user, low, "m.lowpriority")
    conn = Conn(http, token, shape)
    assert await filtered(conn, {"tags": ["m.favourite"]}) == (2, {fav, fav_low})
    assert await filtered(conn, {"tags": ["m.favourite", "m.lowpriority"]}) == \
        (3, {fav, fav_low, low})
    assert await filtered(conn, {"not_tags": ["m.lowpriority"]}) == (2, {fav, untagged})
    # not_tags wins over tags.
    assert await filtered(conn, {"tags": ["m.favourite"], "not_tags": ["m.lowpriority"]}) == \
        (1, {fav})

    # A room tagged later enters the filtered list on the same connection.
    conn.pos = None
    fav_list: dict[str, Any] = {"l": shape.list_config(1, filters={"tags": ["m.favourite"]})}
    await conn.sync(fav_list)
    await set_tag(http, token, user, untagged, "m.favourite")
    body = await conn.sync(fav_list)
    assert body["lists"]["l"]["count"] == 3
    assert set(rooms_of(body)) == {untagged}
