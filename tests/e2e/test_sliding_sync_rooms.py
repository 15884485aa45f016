"""Simplified Sliding Sync (MSC4186) room results over HTTP.

MSC4186 "Room results", `RoomResult`, "Combining room configs", "Changing room configs",
`RequiredStateRequest` (and the unstable `[type, state_key]` form with `*`, `$ME`, `$LAZY`),
"Lazy loaded memberships" and "Subscriptions". Invites and rooms left are in
`test_sliding_sync_memberships.py`. Every test runs on both wire shapes.
"""

from __future__ import annotations

import time

import httpx

from tests.e2e.helpers import (
    CLIENT,
    bearer,
    create_room,
    join_room,
    put_state,
    register,
    room_path,
    send_text,
    two_users_in_a_room,
)
from tests.e2e.sliding_helpers import (
    V4,
    Body,
    Conn,
    Shape,
    both_shapes,
    invite,
    membership_action,
    put_ok,
    rooms_of,
    state_keys,
    timeline_bodies,
)

MEMBER = "m.room.member"


def one_list(shape: Shape, timeline_limit: int, *pairs: tuple[str, str]) -> Body:
    return {"l": shape.list_config(timeline_limit, *pairs, range_=(0, 19))}


async def set_displayname(http: httpx.AsyncClient, user: Body, name: str) -> None:
    path = f"{CLIENT}/profile/{user['user_id']}/displayname"
    await put_ok(http, user["access_token"], path, {"displayname": name})


# -- what a room result holds --------------------------------------------------------------


@both_shapes
async def test_initial_room_fields_and_prev_batch(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, _, room = await two_users_in_a_room(http)
    a = alice["access_token"]
    carol = await register(http)
    await invite(http, a, room, carol["user_id"])
    await put_state(http, a, room, "m.room.name", {"name": "The room"})
    await put_state(http, a, room, "m.room.avatar", {"url": "mxc://localhost/avatar"})
    for i in range(6):
        await send_text(http, a, room, f"m{i}")
    body = await Conn(http, a, shape).sync(one_list(shape, 3, ("m.room.name", "")))
    result = rooms_of(body)[room]
    assert result["initial"] is True
    assert result["name"] == "The room"
    assert result["avatar"] == "mxc://localhost/avatar"
    assert "heroes" not in result  # the room has a name
    assert (result["joined_count"], result["invited_count"]) == (2, 1)
    assert isinstance(result["bump_stamp"], int)
    assert timeline_bodies(result) == ["m3", "m4", "m5"]  # oldest first, the last 3
    assert all("room_id" not in e for e in result["timeline"])
    assert result["limited"] is True
    assert result["num_live"] == 0  # nothing "just happened" on a new connection
    assert state_keys(result) == {("m.room.name", "")}
    if shape.v4:
        assert result["membership"] == "join"
        assert result["lists"] == ["l"]

    # prev_batch continues backwards from the oldest event of the timeline.
    r = await http.get(room_path(room, "messages"), headers=bearer(a),
                       params={"dir": "b", "from": result["prev_batch"], "limit": "3"})
    assert r.status_code == 200, r.text
    older = [e["content"]["body"] for e in r.json()["chunk"] if e["type"] == "m.room.message"]
    assert older == ["m2", "m1", "m0"]

    # The response's pos is a /messages token too (MSC4186 "Connections").
    r = await http.get(room_path(room, "messages"), headers=bearer(a),
                       params={"dir": "b", "from": body["pos"], "limit": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["chunk"][0]["content"]["body"] == "m5"


@both_shapes
async def test_bump_stamp_moves_on_messages_only(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    room = await create_room(http, token)
    other = await create_room(http, token)
    conn = Conn(http, token, shape)
    lists = one_list(shape, 1)
    stamps = {r: x["bump_stamp"] for r, x in rooms_of(await conn.sync(lists)).items()}
    assert stamps[other] > stamps[room]  # created later
    # A state change is activity (the room moves to the top) but not "proper" activity.
    await put_state(http, token, room, "m.room.topic", {"topic": "t"})
    result = rooms_of(await conn.sync(lists))[room]
    assert result.get("bump_stamp", stamps[room]) == stamps[room]
    top = await Conn(http, token, shape, conn_id="top").sync(
        {"l": shape.list_config(1, range_=(0, 0))})
    assert set(rooms_of(top)) == {room}
    # A message is.
    await send_text(http, token, room, "proper")
    assert rooms_of(await conn.sync(lists))[room]["bump_stamp"] > stamps[other]


@both_shapes
async def test_heroes_when_the_room_has_no_name(http: httpx.AsyncClient, shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    carol = await register(http)
    await set_displayname(http, bob, "Bobby")
    await set_displayname(http, carol, "Carrie")
    room = await create_room(http, alice["access_token"], preset="public_chat")
    await join_room(http, bob["access_token"], room)
    await invite(http, alice["access_token"], room, carol["user_id"])
    body = await Conn(http, alice["access_token"], shape).sync(one_list(shape, 1))
    result = rooms_of(body)[room]
    assert "name" not in result
    # Joined members first, then invited ones; not the user themselves.
    assert result["heroes"] == [
        {"user_id": bob["user_id"], "displayname": "Bobby"},
        {"user_id": carol["user_id"], "displayname": "Carrie"},
    ]
    assert (result["joined_count"], result["invited_count"]) == (2, 1)


@both_shapes
async def test_incremental_deltas(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    a = alice["access_token"]
    await put_state(http, a, room, "m.room.name", {"name": "Before"})
    conn = Conn(http, a, shape)
    lists = one_list(shape, 5, ("m.room.topic", ""))
    first = rooms_of(await conn.sync(lists))[room]
    assert first["name"] == "Before"

    # Only what is new: the event, no initial flag, no repeated name or counts.
    await send_text(http, a, room, "new")
    delta = rooms_of(await conn.sync(lists))[room]
    assert [e["content"].get("body") for e in delta["timeline"]] == ["new"]
    assert "initial" not in delta
    assert not {"name", "joined_count", "invited_count", "heroes"} & set(delta)
    assert "required_state" not in delta  # no requested state changed

    # A renamed room sends the new name; a requested state change comes in required_state.
    await put_state(http, a, room, "m.room.name", {"name": "After"})
    await put_state(http, a, room, "m.room.topic", {"topic": "Topic!"})
    delta = rooms_of(await conn.sync(lists))[room]
    assert delta["name"] == "After"
    assert [e["type"] for e in delta["timeline"]] == ["m.room.name", "m.room.topic"]
    # Requested state that changed is in required_state, even when also in the timeline.
    assert state_keys(delta) == {("m.room.topic", "")}

    # A member leaving updates the counts.
    await membership_action(http, bob["access_token"], room, "leave")
    delta = rooms_of(await conn.sync(lists))[room]
    assert delta["joined_count"] == 1

    # A removed name: `null` in the final shape; the unstable shape leaves it out.
    await put_state(http, a, room, "m.room.name", {})
    delta = rooms_of(await conn.sync(lists))[room]
    if shape.v4:
        assert delta["name"] is None
    else:
        assert "name" not in delta


# -- required_state ------------------------------------------------------------------------


@both_shapes
async def test_required_state_wildcards_and_me(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    a, me = alice["access_token"], alice["user_id"]
    await put_state(http, a, room, "org.example.thing", {"k": 1}, "one")
    await put_state(http, a, room, "org.example.thing", {"k": 2}, "two")

    async def state(*pairs: tuple[str, str]) -> set[tuple[str, str]]:
        body = await Conn(http, a, shape).sync(one_list(shape, 1, *pairs))
        return state_keys(rooms_of(body)[room])

    everything = await state(("*", "*"))
    assert {("m.room.create", ""), (MEMBER, me), (MEMBER, bob["user_id"]),
            ("org.example.thing", "one"), ("org.example.thing", "two")} <= everything
    assert await state((MEMBER, "*")) == {(MEMBER, me), (MEMBER, bob["user_id"])}
    assert await state((MEMBER, "$ME")) == {(MEMBER, me)}
    assert await state(("org.example.thing", "*"), ("m.room.create", "")) == {
        ("org.example.thing", "one"), ("org.example.thing", "two"), ("m.room.create", "")}
    assert await state(("*", "one")) == {("org.example.thing", "one")}
    assert await state(("*", "")) == {k for k in everything if k[1] == ""}
    assert await state() == set()


async def test_v4_required_state_exclude(http: httpx.AsyncClient) -> None:
    alice, _, room = await two_users_in_a_room(http)
    lists = {"l": {"timeline_limit": 1, "required_state": {
        "include": [{}], "exclude": [{"type": MEMBER}, {"type": "m.room.create"}]}}}
    body = await Conn(http, alice["access_token"], V4).sync(lists)
    keys = state_keys(rooms_of(body)[room])
    assert ("m.room.power_levels", "") in keys
    assert not any(t in (MEMBER, "m.room.create") for t, _ in keys)


@both_shapes
async def test_lazy_members(http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    carol = await register(http)
    await join_room(http, carol["access_token"], room)
    await send_text(http, alice["access_token"], room, "from alice")
    await send_text(http, bob["access_token"], room, "from bob")
    conn = Conn(http, alice["access_token"], shape)
    lists = one_list(shape, 1, ("m.room.create", ""), (MEMBER, "$LAZY"))
    result = rooms_of(await conn.sync(lists))[room]
    # Only the timeline's sender (Bob), not Alice or Carol.
    assert state_keys(result) == {("m.room.create", ""), (MEMBER, bob["user_id"])}

    # Bob again: his membership is not sent again; Carol's first message brings hers.
    await send_text(http, bob["access_token"], room, "bob again")
    result = rooms_of(await conn.sync(lists))[room]
    assert state_keys(result) == set()
    await send_text(http, carol["access_token"], room, "from carol")
    result = rooms_of(await conn.sync(lists))[room]
    assert state_keys(result) == {(MEMBER, carol["user_id"])}


@both_shapes
async def test_required_state_expansion_sends_the_new_state_at_once(http: httpx.AsyncClient,
                                                                   shape: Shape) -> None:
    token = (await register(http))["access_token"]
    room = await create_room(http, token, name="Name", topic="Topic")
    await send_text(http, token, room, "latest")
    conn = Conn(http, token, shape)
    first = rooms_of(await conn.sync(one_list(shape, 1, ("m.room.name", ""))))[room]
    assert state_keys(first) == {("m.room.name", "")}
    started = time.monotonic()
    body = await conn.sync(one_list(shape, 1, ("m.room.name", ""), ("m.room.topic", "")),
                           timeout_ms=5000)
    assert time.monotonic() - started < 2.0
    result = rooms_of(body)[room]
    assert state_keys(result) == {("m.room.topic", "")}  # only what newly matches
    assert result.get("timeline", []) == []  # nothing new in the timeline


# -- timeline_limit and room configs -------------------------------------------------------


@both_shapes
async def test_timeline_limit_expansion_returns_at_once(http: httpx.AsyncClient,
                                                        shape: Shape) -> None:
    token = (await register(http))["access_token"]
    room = await create_room(http, token)
    for i in range(5):
        await send_text(http, token, room, f"m{i}")
    conn = Conn(http, token, shape)
    first = rooms_of(await conn.sync(one_list(shape, 1)))[room]
    assert timeline_bodies(first) == ["m4"]
    assert first["limited"] is True
    started = time.monotonic()
    body = await conn.sync(one_list(shape, 3), timeout_ms=5000)
    assert time.monotonic() - started < 2.0  # no new event, but returned at once
    result = rooms_of(body)[room]
    assert result[shape.expanded_key] is True
    assert timeline_bodies(result) == ["m2", "m3", "m4"]
    assert "initial" not in result
    # Back to 1 and up to 3 again: the client has those 3 already, nothing to send.
    await conn.sync(one_list(shape, 1))
    assert rooms_of(await conn.sync(one_list(shape, 3))) == {}


@both_shapes
async def test_room_in_two_lists_gets_the_combined_config(http: httpx.AsyncClient,
                                                          shape: Shape) -> None:
    token = (await register(http))["access_token"]
    room = await create_room(http, token, name="Both")
    for i in range(4):
        await send_text(http, token, room, f"m{i}")
    lists = {"short": shape.list_config(1, ("m.room.name", ""), range_=(0, 0)),
             "long": shape.list_config(3, ("m.room.create", ""), range_=(0, 0))}
    result = rooms_of(await Conn(http, token, shape).sync(lists))[room]
    assert timeline_bodies(result) == ["m1", "m2", "m3"]  # the larger timeline_limit
    assert state_keys(result) == {("m.room.name", ""), ("m.room.create", "")}  # the union
    if shape.v4:
        assert sorted(result["lists"]) == ["long", "short"]


@both_shapes
async def test_room_subscriptions(http: httpx.AsyncClient, shape: Shape) -> None:
    token = (await register(http))["access_token"]
    old = await create_room(http, token, name="old")
    new = await create_room(http, token, name="new")
    stranger_room = await create_room(http, (await register(http))["access_token"])
    conn = Conn(http, token, shape)
    lists = {"top": shape.list_config(1, range_=(0, 0))}
    subs = {old: shape.room_config(2, ("m.room.name", "")),
            stranger_room: shape.room_config(2),  # not the user's: silently ignored
            "!unknown:localhost": shape.room_config(2)}
    body = await conn.sync(lists, subs)
    assert set(rooms_of(body)) == {new, old}
    sub = rooms_of(body)[old]
    assert state_keys(sub) == {("m.room.name", "")}
    assert len(sub["timeline"]) == 2
    assert "lists" not in sub  # only there through the subscription
    # Updates come through the subscription too.
    await send_text(http, token, old, "hi")
    body = await conn.sync(lists, subs)
    assert set(rooms_of(body)) == {old}
    assert timeline_bodies(rooms_of(body)[old]) == ["hi"]
