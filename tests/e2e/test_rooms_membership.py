"""Room membership end to end: invite, join, knock, leave, kick, ban, unban, forget, and the
member lists (Client-Server API "Room membership"; joining.yaml, inviting.yaml, knocking.yaml,
leaving.yaml, kicking.yaml, banning.yaml, list_joined_rooms.yaml, rooms.yaml)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    get_state,
    join_room,
    put_state,
    room_path,
    send_text,
    unique,
    user_and_token,
)


async def _user(http: httpx.AsyncClient, displayname: str | None = None) -> tuple[str, str]:
    user_id, token = await user_and_token(http)
    if displayname is not None:
        r = await http.put(f"{CLIENT}/profile/{quote(user_id, safe='@:')}/displayname",
                           json={"displayname": displayname}, headers=bearer(token))
        assert r.status_code == 200, r.text
    return user_id, token


async def _member(http: httpx.AsyncClient, token: str, room_id: str, user: str
                  ) -> dict[str, Any]:
    """The full m.room.member event of `user`, read by `token`."""
    r = await http.get(room_path(room_id, "state", "m.room.member", user),
                       params={"format": "event"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    event: dict[str, Any] = r.json()
    return event


async def _membership(http: httpx.AsyncClient, token: str, room_id: str, user: str) -> str:
    membership: str = (await _member(http, token, room_id, user))["content"]["membership"]
    return membership


async def _post(http: httpx.AsyncClient, token: str, path: str,
                body: dict[str, Any] | None = None) -> httpx.Response:
    return await http.post(path, json={} if body is None else body, headers=bearer(token))


async def _invite(http: httpx.AsyncClient, token: str, room_id: str, user: str,
                  **body: Any) -> httpx.Response:
    return await _post(http, token, room_path(room_id, "invite"), {"user_id": user, **body})


async def _joined_rooms(http: httpx.AsyncClient, token: str) -> list[str]:
    r = await http.get(f"{CLIENT}/joined_rooms", headers=bearer(token))
    assert r.status_code == 200, r.text
    rooms: list[str] = r.json()["joined_rooms"]
    return rooms


async def _set_power(http: httpx.AsyncClient, token: str, room_id: str,
                     **changes: Any) -> None:
    r = await get_state(http, token, room_id, "m.room.power_levels")
    assert r.status_code == 200, r.text
    r = await put_state(http, token, room_id, "m.room.power_levels", {**r.json(), **changes})
    assert r.status_code == 200, r.text


# -- invite and join -----------------------------------------------------------------------


async def test_invite_then_join(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token)
    r = await _invite(http, a_token, room_id, b, reason="come along")
    assert r.status_code == 200, r.text
    assert r.json() == {}
    event = await _member(http, a_token, room_id, b)
    assert event["sender"] == a
    assert event["content"]["membership"] == "invite"
    assert event["content"]["reason"] == "come along"
    assert room_id not in await _joined_rooms(http, b_token)

    await join_room(http, b_token, room_id, reason="thanks")
    event = await _member(http, b_token, room_id, b)
    assert event["sender"] == b
    assert event["content"]["membership"] == "join"
    assert event["content"]["reason"] == "thanks"
    assert room_id in await _joined_rooms(http, b_token)
    r = await http.get(room_path(room_id, "joined_members"), headers=bearer(b_token))
    assert r.status_code == 200, r.text
    assert set(r.json()["joined"]) == {a, b}


async def test_join_public_room_by_id_and_alias(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    c, c_token = await _user(http)
    local = unique("joinme")
    room_id = await create_room(http, a_token, preset="public_chat", room_alias_name=local)
    # /join/{roomIdOrAlias} with a URL-encoded alias
    r = await _post(http, b_token, f"{CLIENT}/join/{quote(f'#{local}:localhost', safe='')}")
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id}
    # /join/{roomIdOrAlias} with a room ID
    r = await _post(http, c_token, f"{CLIENT}/join/{quote(room_id, safe='')}")
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id}
    for user in (b, c):
        assert await _membership(http, a_token, room_id, user) == "join"
    # Joining again is allowed (idempotent for clients).
    await join_room(http, b_token, room_id)
    assert room_id in await _joined_rooms(http, b_token)


async def test_join_invite_only_room_without_invite(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token)
    r = await _post(http, b_token, room_path(room_id, "join"))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _post(http, b_token, f"{CLIENT}/join/{quote(room_id, safe='')}")
    assert_error(r, 403, "M_FORBIDDEN")
    r = await get_state(http, a_token, room_id, "m.room.member", b)
    assert_error(r, 404, "M_NOT_FOUND")
    assert room_id not in await _joined_rooms(http, b_token)


async def test_join_unknown_room_or_alias(http: httpx.AsyncClient) -> None:
    _, token = await _user(http)
    r = await _post(http, token, room_path("!unknown:localhost", "join"))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await _post(http, token, f"{CLIENT}/join/{quote('!unknown:localhost', safe='')}")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await _post(http, token, f"{CLIENT}/join/{quote(f'#{unique()}:localhost', safe='')}")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.post(f"{CLIENT}/join/{quote('!unknown:localhost', safe='')}", json={})
    assert_error(r, 401, "M_MISSING_TOKEN")


# -- leave, forget -------------------------------------------------------------------------


async def test_leave_and_rejoin_public_room(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    assert room_id in await _joined_rooms(http, b_token)
    r = await _post(http, b_token, room_path(room_id, "leave"), {"reason": "bye"})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    event = await _member(http, a_token, room_id, b)
    assert event["content"]["membership"] == "leave"
    assert event["content"]["reason"] == "bye"
    assert event["sender"] == b
    assert room_id not in await _joined_rooms(http, b_token)
    r = await http.get(room_path(room_id, "joined_members"), headers=bearer(a_token))
    assert r.status_code == 200, r.text
    assert set(r.json()["joined"]) == {a}

    await join_room(http, b_token, room_id)
    assert await _membership(http, a_token, room_id, b) == "join"
    assert room_id in await _joined_rooms(http, b_token)


async def test_reject_invite_by_leaving(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token)
    r = await _invite(http, a_token, room_id, b)
    assert r.status_code == 200, r.text
    r = await _post(http, b_token, room_path(room_id, "leave"))
    assert r.status_code == 200, r.text
    assert await _membership(http, a_token, room_id, b) == "leave"
    # The invite is gone: joining is refused again.
    r = await _post(http, b_token, room_path(room_id, "join"))
    assert_error(r, 403, "M_FORBIDDEN")


async def test_forget(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    _, b_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    r = await _post(http, b_token, room_path(room_id, "forget"))
    assert_error(r, 400, "M_UNKNOWN")
    r = await _post(http, b_token, room_path(room_id, "leave"))
    assert r.status_code == 200, r.text
    r = await _post(http, b_token, room_path(room_id, "forget"))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    assert room_id not in await _joined_rooms(http, b_token)
    # A forgotten room can be joined again.
    await join_room(http, b_token, room_id)
    assert room_id in await _joined_rooms(http, b_token)


async def test_joined_rooms_tracks_membership(http: httpx.AsyncClient) -> None:
    _, token = await _user(http)
    assert await _joined_rooms(http, token) == []
    rooms = [await create_room(http, token) for _ in range(3)]
    assert sorted(await _joined_rooms(http, token)) == sorted(rooms)
    r = await _post(http, token, room_path(rooms[1], "leave"))
    assert r.status_code == 200, r.text
    assert sorted(await _joined_rooms(http, token)) == sorted([rooms[0], rooms[2]])
    r = await http.get(f"{CLIENT}/joined_rooms")
    assert_error(r, 401, "M_MISSING_TOKEN")


# -- kick, ban, unban ----------------------------------------------------------------------


async def test_kick(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    c, c_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    await join_room(http, c_token, room_id)

    r = await _post(http, b_token, room_path(room_id, "kick"), {"user_id": c, "reason": "no"})
    assert_error(r, 403, "M_FORBIDDEN")
    assert await _membership(http, a_token, room_id, c) == "join"

    r = await _post(http, a_token, room_path(room_id, "kick"),
                    {"user_id": c, "reason": "spamming"})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    event = await _member(http, a_token, room_id, c)
    assert event["sender"] == a
    assert event["state_key"] == c
    assert event["content"]["membership"] == "leave"
    assert event["content"]["reason"] == "spamming"
    assert room_id not in await _joined_rooms(http, c_token)
    # A kick is not a ban: the public room can be joined again.
    await join_room(http, c_token, room_id)

    r = await _post(http, a_token, room_path(room_id, "kick"), {"reason": "who?"})
    assert_error(r, 400, "M_MISSING_PARAM")
    r = await _post(http, b_token, room_path(room_id, "kick"), {"user_id": a})
    assert_error(r, 403, "M_FORBIDDEN")
    assert b  # b stays a member throughout


@pytest.mark.parametrize("version", ["11", "12"])
async def test_cannot_kick_or_ban_equal_or_higher(http: httpx.AsyncClient, version: str) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    c, c_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat", room_version=version)
    await join_room(http, b_token, room_id)
    await join_room(http, c_token, room_id)
    users = {a: 100} if version == "11" else {}
    # B gets 100: the v11 creator's level, below the v12 creator's infinite one.
    await _set_power(http, a_token, room_id, users={**users, b: 100, c: 100})
    for action in ("kick", "ban"):
        r = await _post(http, b_token, room_path(room_id, action), {"user_id": a})
        assert_error(r, 403, "M_FORBIDDEN")
        r = await _post(http, b_token, room_path(room_id, action), {"user_id": c})
        assert_error(r, 403, "M_FORBIDDEN")
    assert await _membership(http, b_token, room_id, a) == "join"
    assert await _membership(http, b_token, room_id, c) == "join"
    r = await _post(http, a_token, room_path(room_id, "kick"), {"user_id": c})
    if version == "11":
        # The v11 creator is at 100 like C: an equal level is not enough.
        assert_error(r, 403, "M_FORBIDDEN")
        assert await _membership(http, a_token, room_id, c) == "join"
    else:
        # The v12 creator's power is infinite: it outranks everyone.
        assert r.status_code == 200, r.text
        assert await _membership(http, a_token, room_id, c) == "leave"


async def test_ban_and_unban(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    _, c_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    await join_room(http, c_token, room_id)

    r = await _post(http, c_token, room_path(room_id, "ban"), {"user_id": b})
    assert_error(r, 403, "M_FORBIDDEN")

    r = await _post(http, a_token, room_path(room_id, "ban"), {"user_id": b, "reason": "troll"})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    event = await _member(http, a_token, room_id, b)
    assert event["sender"] == a
    assert event["content"]["membership"] == "ban"
    assert event["content"]["reason"] == "troll"
    assert room_id not in await _joined_rooms(http, b_token)

    r = await _post(http, b_token, room_path(room_id, "join"))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _invite(http, a_token, room_id, b)
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _post(http, c_token, room_path(room_id, "unban"), {"user_id": b})
    assert_error(r, 403, "M_FORBIDDEN")

    r = await _post(http, a_token, room_path(room_id, "unban"),
                    {"user_id": b, "reason": "forgiven"})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    event = await _member(http, a_token, room_id, b)
    assert event["content"]["membership"] == "leave"
    assert event["content"]["reason"] == "forgiven"
    await join_room(http, b_token, room_id)
    assert await _membership(http, a_token, room_id, b) == "join"


async def test_ban_user_not_in_room(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    r = await _post(http, a_token, room_path(room_id, "ban"), {"user_id": b})
    assert r.status_code == 200, r.text
    assert await _membership(http, a_token, room_id, b) == "ban"
    r = await _post(http, b_token, f"{CLIENT}/join/{quote(room_id, safe='')}")
    assert_error(r, 403, "M_FORBIDDEN")


# -- invite errors -------------------------------------------------------------------------


async def test_invite_already_joined(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    r = await _invite(http, a_token, room_id, b)
    assert_error(r, 403, "M_FORBIDDEN")
    assert await _membership(http, a_token, room_id, b) == "join"


async def test_invite_by_non_member(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    _, b_token = await _user(http)
    c, _ = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    r = await _invite(http, b_token, room_id, c)
    assert_error(r, 403, "M_FORBIDDEN")
    r = await get_state(http, a_token, room_id, "m.room.member", c)
    assert_error(r, 404, "M_NOT_FOUND")


async def test_invite_needs_invite_level(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    _, b_token = await _user(http)
    c, _ = await _user(http)
    d, _ = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    # Default invite level 0: a PL-0 member may invite.
    r = await _invite(http, b_token, room_id, c)
    assert r.status_code == 200, r.text
    await _set_power(http, a_token, room_id, invite=50)
    r = await _invite(http, b_token, room_id, d)
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _invite(http, a_token, room_id, d)
    assert r.status_code == 200, r.text


async def test_invite_bad_requests(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    room_id = await create_room(http, a_token)
    r = await _post(http, a_token, room_path(room_id, "invite"), {})
    assert_error(r, 400, "M_MISSING_PARAM")
    r = await _post(http, a_token, room_path(room_id, "invite"), {"user_id": 5})
    assert_error(r, 400, "M_BAD_JSON")
    r = await _invite(http, a_token, "!unknown:localhost", "@someone:localhost")
    assert_error(r, 404, "M_NOT_FOUND")


# -- knocking ------------------------------------------------------------------------------


async def test_knock_then_invite_and_join(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token)  # v12
    r = await put_state(http, a_token, room_id, "m.room.join_rules", {"join_rule": "knock"})
    assert r.status_code == 200, r.text

    r = await _post(http, b_token, f"{CLIENT}/knock/{quote(room_id, safe='')}",
                    {"reason": "let me in"})
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id}
    event = await _member(http, a_token, room_id, b)
    assert event["sender"] == b
    assert event["content"]["membership"] == "knock"
    assert event["content"]["reason"] == "let me in"
    assert room_id not in await _joined_rooms(http, b_token)
    # A knock is not an invite.
    r = await _post(http, b_token, room_path(room_id, "join"))
    assert_error(r, 403, "M_FORBIDDEN")

    r = await _invite(http, a_token, room_id, b)
    assert r.status_code == 200, r.text
    assert await _membership(http, a_token, room_id, b) == "invite"
    await join_room(http, b_token, room_id)
    assert await _membership(http, a_token, room_id, b) == "join"
    assert a != b


async def test_knock_by_alias_and_kick_to_deny(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    local = unique("knock")
    room_id = await create_room(http, a_token, room_alias_name=local)
    r = await put_state(http, a_token, room_id, "m.room.join_rules", {"join_rule": "knock"})
    assert r.status_code == 200, r.text
    r = await _post(http, b_token, f"{CLIENT}/knock/{quote(f'#{local}:localhost', safe='')}")
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id}
    # Denying a knock is a kick of the knocking user.
    r = await _post(http, a_token, room_path(room_id, "kick"), {"user_id": b, "reason": "no"})
    assert r.status_code == 200, r.text
    assert await _membership(http, a_token, room_id, b) == "leave"


@pytest.mark.parametrize("preset", ["private_chat", "public_chat"])
async def test_knock_refused_unless_join_rule_knock(http: httpx.AsyncClient,
                                                    preset: str) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http)
    room_id = await create_room(http, a_token, preset=preset)
    r = await _post(http, b_token, f"{CLIENT}/knock/{quote(room_id, safe='')}")
    assert_error(r, 403, "M_FORBIDDEN")
    r = await get_state(http, a_token, room_id, "m.room.member", b)
    assert_error(r, 404, "M_NOT_FOUND")


async def test_knock_errors(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    room_id = await create_room(http, a_token)
    r = await put_state(http, a_token, room_id, "m.room.join_rules", {"join_rule": "knock"})
    assert r.status_code == 200, r.text
    # Already joined: a knock is refused.
    r = await _post(http, a_token, f"{CLIENT}/knock/{quote(room_id, safe='')}")
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _post(http, a_token, f"{CLIENT}/knock/{quote('!unknown:localhost', safe='')}")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await _post(http, a_token, f"{CLIENT}/knock/{quote(f'#{unique()}:localhost', safe='')}")
    assert_error(r, 404, "M_NOT_FOUND")


# -- member lists --------------------------------------------------------------------------


async def test_members_and_joined_members(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http, "Alice Example")
    b, b_token = await _user(http, "Bob Example")
    c, _ = await _user(http)
    d, d_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    r = await _invite(http, a_token, room_id, c)
    assert r.status_code == 200, r.text
    await join_room(http, d_token, room_id)
    r = await _post(http, d_token, room_path(room_id, "leave"))
    assert r.status_code == 200, r.text

    r = await http.get(room_path(room_id, "members"), headers=bearer(b_token))
    assert r.status_code == 200, r.text
    chunk = r.json()["chunk"]
    assert all(e["type"] == "m.room.member" and e["room_id"] == room_id for e in chunk)
    by_user = {e["state_key"]: e["content"] for e in chunk}
    assert {u: m["membership"] for u, m in by_user.items()} == {
        a: "join", b: "join", c: "invite", d: "leave"}
    assert by_user[a]["displayname"] == "Alice Example"
    assert by_user[b]["displayname"] == "Bob Example"

    r = await http.get(room_path(room_id, "members"), params={"membership": "join"},
                       headers=bearer(b_token))
    assert r.status_code == 200, r.text
    assert {e["state_key"] for e in r.json()["chunk"]} == {a, b}
    r = await http.get(room_path(room_id, "members"), params={"not_membership": "leave"},
                       headers=bearer(b_token))
    assert r.status_code == 200, r.text
    assert {e["state_key"] for e in r.json()["chunk"]} == {a, b, c}

    r = await http.get(room_path(room_id, "joined_members"), headers=bearer(a_token))
    assert r.status_code == 200, r.text
    joined = r.json()["joined"]
    assert set(joined) == {a, b}
    assert joined[a]["display_name"] == "Alice Example"
    assert joined[b]["display_name"] == "Bob Example"


async def test_member_lists_need_membership(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    _, stranger = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    r = await http.get(room_path(room_id, "joined_members"), headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(room_path(room_id, "members"), headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(room_path(room_id, "members"))
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_left_member_sees_members_at_leave(http: httpx.AsyncClient) -> None:
    a, a_token = await _user(http)
    b, b_token = await _user(http)
    c, c_token = await _user(http)
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    r = await _post(http, b_token, room_path(room_id, "leave"))
    assert r.status_code == 200, r.text
    await join_room(http, c_token, room_id)
    # joined_members needs current membership; /members and /state show the state of the
    # room "when they left" (rooms.yaml getMembersByRoom / getRoomState), which includes the
    # leave itself (as Synapse answers).
    r = await http.get(room_path(room_id, "joined_members"), headers=bearer(b_token))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await get_state(http, b_token, room_id, "m.room.member", c)
    assert_error(r, 404, "M_NOT_FOUND")
    r = await get_state(http, b_token, room_id, "m.room.member", b)
    assert r.status_code == 200, r.text
    assert r.json()["membership"] == "leave"
    r = await http.get(room_path(room_id, "members"), headers=bearer(b_token))
    assert r.status_code == 200, r.text
    members = {e["state_key"]: e["content"]["membership"] for e in r.json()["chunk"]}
    assert members == {a: "join", b: "leave"}
    assert c not in members


async def test_display_name_of_later_joiner_and_messages(http: httpx.AsyncClient) -> None:
    _, a_token = await _user(http)
    b, b_token = await _user(http, "Bee")
    room_id = await create_room(http, a_token, preset="public_chat")
    await join_room(http, b_token, room_id)
    event_id = await send_text(http, b_token, room_id, "hi from Bee")
    member = await _member(http, a_token, room_id, b)
    assert member["content"] == {"membership": "join", "displayname": "Bee"}
    r = await http.get(room_path(room_id, "event", event_id), headers=bearer(a_token))
    assert r.status_code == 200, r.text
    assert r.json()["sender"] == b
