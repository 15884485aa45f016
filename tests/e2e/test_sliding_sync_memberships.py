"""Simplified Sliding Sync (MSC4186): rooms the user is invited to, was kicked or banned from, or
left, over HTTP.

MSC4186 "Lists" (which rooms the server list holds), "Subscriptions" (rooms the user may see),
"Invite/knock/rejections" (`stripped_state`, `invite_state` in the unstable shape) and
`membership`. Every test runs on both wire shapes.
"""

from __future__ import annotations

import httpx

from tests.e2e.helpers import (
    create_room,
    join_room,
    register,
    send_text,
    two_users_in_a_room,
)
from tests.e2e.sliding_helpers import (
    Body,
    Conn,
    Shape,
    both_shapes,
    invite,
    membership_action,
    rooms_of,
    set_account_data,
    state_keys,
    timeline_bodies,
)

MEMBER = "m.room.member"


def one_list(shape: Shape, timeline_limit: int = 1, *pairs: tuple[str, str]) -> Body:
    return {"l": shape.list_config(timeline_limit, *pairs, range_=(0, 19))}


@both_shapes
async def test_invite_has_stripped_state_then_the_join_is_initial(http: httpx.AsyncClient,
                                                                  shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    room = await create_room(http, alice["access_token"], name="Invite me")
    await send_text(http, alice["access_token"], room, "secret history")
    await invite(http, alice["access_token"], room, bob["user_id"])
    # A DM invite (in m.direct) too: the flag must not make the room look changed.
    await set_account_data(http, bob["access_token"], bob["user_id"], "m.direct",
                           {alice["user_id"]: [room]})
    conn = Conn(http, bob["access_token"], shape)
    lists = one_list(shape, 5, ("*", "*"))
    result = rooms_of(await conn.sync(lists))[room]
    stripped = result[shape.stripped_state_key]
    by_type = {e["type"]: e for e in stripped}
    assert by_type["m.room.name"]["content"] == {"name": "Invite me"}
    assert by_type[MEMBER]["content"]["membership"] == "invite"
    assert "timeline" not in result
    assert "required_state" not in result
    assert result["initial"] is True
    if shape.v4:
        assert result["membership"] == "invite"

    # Sent once: the next request has nothing to say and waits (a pending invite must not
    # make every long-poll return at once).
    body = await conn.sync(lists, timeout_ms=300)
    assert rooms_of(body) == {}

    await join_room(http, bob["access_token"], room)
    result = rooms_of(await conn.sync(lists))[room]
    assert result["initial"] is True
    assert shape.stripped_state_key not in result
    assert (MEMBER, bob["user_id"]) in state_keys(result)
    assert result["timeline"][-1]["type"] == MEMBER
    assert "secret history" in timeline_bodies(result)  # shared history is visible now
    if shape.v4:
        assert result["membership"] == "join"


@both_shapes
async def test_rejected_invite(http: httpx.AsyncClient, shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    room = await create_room(http, alice["access_token"], name="No thanks")
    await invite(http, alice["access_token"], room, bob["user_id"])
    conn = Conn(http, bob["access_token"], shape)
    await conn.sync(one_list(shape))
    await membership_action(http, bob["access_token"], room, "leave")
    result = rooms_of(await conn.sync(one_list(shape)))[room]
    # Never joined: still only stripped state, now with the leave.
    assert "timeline" not in result
    by_type = {e["type"]: e for e in result[shape.stripped_state_key]}
    assert by_type[MEMBER]["content"]["membership"] == "leave"
    if shape.v4:
        assert result["membership"] == "leave"
    # A new connection does not list it: the user left it themselves.
    fresh = await Conn(http, bob["access_token"], shape, conn_id="fresh").sync(one_list(shape))
    assert room not in rooms_of(fresh)


@both_shapes
async def test_kicked_and_banned_rooms_stay_self_left_rooms_go(http: httpx.AsyncClient,
                                                               shape: Shape) -> None:
    alice = await register(http)
    bob = await register(http)
    a, b = alice["access_token"], bob["access_token"]
    kicked, banned, left, banned_never_joined = [
        await create_room(http, a, preset="public_chat") for _ in range(4)]
    for room in (kicked, banned, left):
        await join_room(http, b, room)
    await membership_action(http, a, banned_never_joined, "ban", bob["user_id"])
    conn = Conn(http, b, shape)
    lists = one_list(shape)
    assert set(rooms_of(await conn.sync(lists))) == {kicked, banned, left}

    await membership_action(http, a, kicked, "kick", bob["user_id"])
    await membership_action(http, a, banned, "ban", bob["user_id"])
    await membership_action(http, b, left, "leave")
    body = await conn.sync(lists)
    # All three were sent on this connection: all three come with the news.
    assert set(rooms_of(body)) == {kicked, banned, left}
    assert body["lists"]["l"]["count"] == 3
    if shape.v4:
        assert {r: x["membership"] for r, x in rooms_of(body).items()} == {
            kicked: "leave", banned: "ban", left: "leave"}
    for room in (kicked, banned, left):
        assert rooms_of(body)[room]["timeline"][-1]["type"] == MEMBER

    # A new connection: the kicked and banned rooms are listed, the one Bob left is not.
    fresh = await Conn(http, b, shape, conn_id="fresh").sync(lists)
    assert set(rooms_of(fresh)) == {kicked, banned}
    assert fresh["lists"]["l"]["count"] == 2
    # What happens in a room after the user left is not sent.
    await send_text(http, a, kicked, "after the kick")
    assert rooms_of(await conn.sync(lists)) == {}


@both_shapes
async def test_subscription_to_a_room_left_shows_history_up_to_the_leave(
        http: httpx.AsyncClient, shape: Shape) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    await send_text(http, alice["access_token"], room, "before")
    await membership_action(http, bob["access_token"], room, "leave")
    await send_text(http, alice["access_token"], room, "after")
    body = await Conn(http, bob["access_token"], shape).sync(
        None, {room: shape.room_config(3)})
    result = rooms_of(body)[room]
    assert timeline_bodies(result) == ["before"]
    assert result["timeline"][-1]["type"] == MEMBER  # the leave is the last thing seen
    if shape.v4:
        assert result["membership"] == "leave"
