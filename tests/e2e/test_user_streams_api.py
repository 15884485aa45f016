"""Account data, room tags, typing, presence and send-to-device endpoints against a real server
(what they answer and refuse; delivery through /sync is tested with the sync engine)."""

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
    login,
    register,
    room_path,
    two_users_in_a_room,
    unique,
)


def user_path(user_id: str, *parts: str) -> str:
    return "/".join([f"{CLIENT}/user/{quote(user_id, safe='')}",
                     *(quote(p, safe="") for p in parts)])


def presence_path(user_id: str) -> str:
    return f"{CLIENT}/presence/{quote(user_id, safe='')}/status"


# -- account data ----------------------------------------------------------------------------


async def test_global_account_data_round_trip(http: httpx.AsyncClient) -> None:
    me = await register(http)
    uid, auth = me["user_id"], bearer(me["access_token"])
    path = user_path(uid, "account_data", "org.example.config")
    assert_error(await http.get(path, headers=auth), 404, "M_NOT_FOUND")
    r = await http.put(path, json={"theme": "dark", "n": [1, 2]}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.get(path, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"theme": "dark", "n": [1, 2]}
    # A second write replaces the first; an empty object is valid content.
    assert (await http.put(path, json={}, headers=auth)).status_code == 200
    assert (await http.get(path, headers=auth)).json() == {}
    # Global data does not leak into a room's data of the same type, nor the other way round.
    room_id = await create_room(http, me["access_token"])
    room = user_path(uid, "rooms", room_id, "account_data", "org.example.config")
    assert_error(await http.get(room, headers=auth), 404, "M_NOT_FOUND")
    assert (await http.put(room, json={"room": True}, headers=auth)).status_code == 200
    assert (await http.get(room, headers=auth)).json() == {"room": True}
    assert (await http.get(path, headers=auth)).json() == {}


async def test_account_data_types_with_slashes_and_users_with_slashes(http: httpx.AsyncClient
                                                                       ) -> None:
    me = await register(http, username=f"{unique()}/slash")
    assert "/" in me["user_id"]
    auth = bearer(me["access_token"])
    path = user_path(me["user_id"], "account_data", "org.example/with/slashes")
    assert (await http.put(path, json={"ok": 1}, headers=auth)).status_code == 200
    r = await http.get(path, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": 1}


async def test_account_data_is_private(http: httpx.AsyncClient) -> None:
    me, other = await register(http), await register(http)
    mine = user_path(me["user_id"], "account_data", "org.example.secret")
    assert (await http.put(mine, json={"s": 1}, headers=bearer(me["access_token"]))
            ).status_code == 200
    theirs = bearer(other["access_token"])
    assert_error(await http.get(mine, headers=theirs), 403, "M_FORBIDDEN")
    assert_error(await http.put(mine, json={"s": 2}, headers=theirs), 403, "M_FORBIDDEN")
    room = user_path(me["user_id"], "rooms", "!any:localhost", "account_data", "x.y")
    assert_error(await http.get(room, headers=theirs), 403, "M_FORBIDDEN")
    assert_error(await http.put(room, json={}, headers=theirs), 403, "M_FORBIDDEN")
    assert_error(await http.get(mine), 401, "M_MISSING_TOKEN")
    assert (await http.get(mine, headers=bearer(me["access_token"]))).json() == {"s": 1}


@pytest.mark.parametrize("data_type", ["m.fully_read", "m.push_rules"])
async def test_server_managed_types_are_refused(http: httpx.AsyncClient, data_type: str
                                                ) -> None:
    me = await register(http)
    auth = bearer(me["access_token"])
    room_id = await create_room(http, me["access_token"])
    for path in (user_path(me["user_id"], "account_data", data_type),
                 user_path(me["user_id"], "rooms", room_id, "account_data", data_type)):
        body = assert_error(await http.put(path, json={"event_id": "$x"}, headers=auth), 405,
                            "M_BAD_JSON")
        assert data_type in body["error"]
        # Reading them is allowed (nothing set yet here).
        assert_error(await http.get(path, headers=auth), 404, "M_NOT_FOUND")


async def test_account_data_bodies_and_room_ids_are_checked(http: httpx.AsyncClient) -> None:
    me = await register(http)
    auth = bearer(me["access_token"])
    path = user_path(me["user_id"], "account_data", "x.y")
    assert_error(await http.put(path, content=b"[1, 2]", headers=auth), 400, "M_BAD_JSON")
    assert_error(await http.put(path, content=b"not json", headers=auth), 400, "M_NOT_JSON")
    bad_room = user_path(me["user_id"], "rooms", "not-a-room", "account_data", "x.y")
    assert_error(await http.put(bad_room, json={}, headers=auth), 400, "M_INVALID_PARAM")
    assert_error(await http.get(bad_room, headers=auth), 400, "M_INVALID_PARAM")
    # Like Synapse, data may be kept for a room the server does not know (yet).
    unknown = user_path(me["user_id"], "rooms", "!unknown:localhost", "account_data", "x.y")
    assert (await http.put(unknown, json={"a": 1}, headers=auth)).status_code == 200
    assert (await http.get(unknown, headers=auth)).json() == {"a": 1}


# -- tags ------------------------------------------------------------------------------------


async def test_tags_round_trip(http: httpx.AsyncClient) -> None:
    me = await register(http)
    uid, auth = me["user_id"], bearer(me["access_token"])
    room_id = await create_room(http, me["access_token"])
    tags = user_path(uid, "rooms", room_id, "tags")
    assert (await http.get(tags, headers=auth)).json() == {"tags": {}}
    for tag, body in [("m.favourite", {"order": 0.25}), ("u.Work", {}),
                      ("u.Edge", {"order": 1}), ("u.Extra", {"order": 0, "colour": "red"})]:
        r = await http.put(f"{tags}/{quote(tag, safe='')}", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {}
    expected = {"m.favourite": {"order": 0.25}, "u.Work": {}, "u.Edge": {"order": 1},
                "u.Extra": {"order": 0, "colour": "red"}}
    assert (await http.get(tags, headers=auth)).json() == {"tags": expected}
    # Tags are the room's m.tag account data.
    r = await http.get(user_path(uid, "rooms", room_id, "account_data", "m.tag"), headers=auth)
    assert r.json() == {"tags": expected}
    # Re-adding replaces a tag's data; deleting removes it; deleting a missing tag is fine.
    assert (await http.put(f"{tags}/u.Work", json={"order": 0.5}, headers=auth)
            ).status_code == 200
    assert (await http.delete(f"{tags}/m.favourite", headers=auth)).status_code == 200
    assert (await http.delete(f"{tags}/u.never", headers=auth)).status_code == 200
    assert (await http.get(tags, headers=auth)).json() == {"tags": {
        "u.Work": {"order": 0.5}, "u.Edge": {"order": 1},
        "u.Extra": {"order": 0, "colour": "red"}}}


async def test_tag_requests_are_checked(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    auth = bearer(alice["access_token"])
    tags = user_path(alice["user_id"], "rooms", room_id, "tags")
    for body in ({"order": 1.5}, {"order": -0.1}):
        assert_error(await http.put(f"{tags}/u.x", json=body, headers=auth), 400,
                     "M_INVALID_PARAM")
    assert_error(await http.put(f"{tags}/u.x", json={"order": "first"}, headers=auth), 400,
                 "M_BAD_JSON")
    assert_error(await http.put(f"{tags}/u.x", content=b"[]", headers=auth), 400, "M_BAD_JSON")
    assert_error(await http.put(f"{tags}/{'u' * 256}", json={}, headers=auth), 400,
                 "M_INVALID_PARAM")
    assert (await http.put(f"{tags}/{'u' * 255}", json={}, headers=auth)).status_code == 200
    # Only for yourself.
    other = bearer(bob["access_token"])
    assert_error(await http.get(tags, headers=other), 403, "M_FORBIDDEN")
    assert_error(await http.put(f"{tags}/u.x", json={}, headers=other), 403, "M_FORBIDDEN")
    assert_error(await http.delete(f"{tags}/u.x", headers=other), 403, "M_FORBIDDEN")
    # Only for rooms you have a membership in.
    stranger = await register(http)
    stranger_tags = user_path(stranger["user_id"], "rooms", room_id, "tags")
    assert_error(await http.put(f"{stranger_tags}/u.x", json={},
                                headers=bearer(stranger["access_token"])), 403, "M_FORBIDDEN")
    unknown = user_path(alice["user_id"], "rooms", "!nope:localhost", "tags", "u.x")
    assert_error(await http.put(unknown, json={}, headers=auth), 403, "M_FORBIDDEN")
    assert (await http.get(tags, headers=auth)).json() == {"tags": {"u" * 255: {}}}


# -- typing ----------------------------------------------------------------------------------


async def test_typing_in_a_joined_room(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    path = room_path(room_id, "typing", alice["user_id"])
    auth = bearer(alice["access_token"])
    for body in ({"typing": True, "timeout": 30000}, {"typing": True},
                 {"typing": True, "timeout": 10**9}, {"typing": False}):
        r = await http.put(path, json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {}
    # A member who joined (rather than created the room) may type too.
    r = await http.put(room_path(room_id, "typing", bob["user_id"]),
                       json={"typing": True, "timeout": 5000},
                       headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text


async def test_typing_is_refused_for_others_and_outsiders(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    body = {"typing": True, "timeout": 1000}
    # Someone else's typing state.
    r = await http.put(room_path(room_id, "typing", bob["user_id"]), json=body,
                       headers=bearer(alice["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")
    # A user who is not joined: never joined, or left.
    stranger = await register(http)
    r = await http.put(room_path(room_id, "typing", stranger["user_id"]), json=body,
                       headers=bearer(stranger["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.post(room_path(room_id, "leave"), json={},
                        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    r = await http.put(room_path(room_id, "typing", bob["user_id"]), json=body,
                       headers=bearer(bob["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")
    # An unknown room.
    r = await http.put(room_path("!nope:localhost", "typing", alice["user_id"]), json=body,
                       headers=bearer(alice["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")


async def test_typing_bodies_are_checked(http: httpx.AsyncClient) -> None:
    alice, _, room_id = await two_users_in_a_room(http)
    path = room_path(room_id, "typing", alice["user_id"])
    auth = bearer(alice["access_token"])
    assert_error(await http.put(path, json={"timeout": 1000}, headers=auth), 400,
                 "M_MISSING_PARAM")
    assert_error(await http.put(path, json={"typing": "yes"}, headers=auth), 400, "M_BAD_JSON")
    assert_error(await http.put(path, json={"typing": True, "timeout": "soon"}, headers=auth),
                 400, "M_BAD_JSON")
    assert_error(await http.put(path, content=b"nope", headers=auth), 400, "M_NOT_JSON")
    r = await http.put(room_path("not-a-room", "typing", alice["user_id"]),
                       json={"typing": True}, headers=auth)
    assert_error(r, 400, "M_INVALID_PARAM")


# -- presence --------------------------------------------------------------------------------


async def test_presence_set_and_get(http: httpx.AsyncClient) -> None:
    alice, bob, _ = await two_users_in_a_room(http)
    path = presence_path(alice["user_id"])
    auth = bearer(alice["access_token"])
    assert (await http.get(path, headers=auth)).json() == {"presence": "offline"}
    r = await http.put(path, json={"presence": "online", "status_msg": "Working"}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    for viewer in (alice, bob):  # yourself, and someone sharing a room
        r = await http.get(path, headers=bearer(viewer["access_token"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["presence"] == "online"
        assert body["status_msg"] == "Working"
        assert body["currently_active"] is True
        assert 0 <= body["last_active_ago"] < 60_000
    # Omitting status_msg clears it; an explicit state is kept as set.
    assert (await http.put(path, json={"presence": "unavailable"}, headers=auth)
            ).status_code == 200
    body = (await http.get(path, headers=bearer(bob["access_token"]))).json()
    assert body["presence"] == "unavailable"
    assert "status_msg" not in body
    assert body["currently_active"] is False
    assert (await http.put(path, json={"presence": "offline", "status_msg": "away"},
                           headers=auth)).status_code == 200
    body = (await http.get(path, headers=auth)).json()
    assert (body["presence"], body["status_msg"]) == ("offline", "away")


async def test_presence_visibility_and_errors(http: httpx.AsyncClient) -> None:
    alice, bob, _ = await two_users_in_a_room(http)
    stranger = await register(http)
    auth = bearer(alice["access_token"])
    r = await http.get(presence_path(stranger["user_id"]), headers=auth)
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(presence_path(f"@{unique('nobody')}:localhost"), headers=auth)
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.put(presence_path(bob["user_id"]), json={"presence": "online"}, headers=auth)
    assert_error(r, 403, "M_FORBIDDEN")
    mine = presence_path(alice["user_id"])
    assert_error(await http.put(mine, json={"presence": "busy"}, headers=auth), 400,
                 "M_INVALID_PARAM")
    assert_error(await http.put(mine, json={}, headers=auth), 400, "M_MISSING_PARAM")
    assert_error(await http.put(mine, json={"presence": "online", "status_msg": 5},
                                headers=auth), 400, "M_BAD_JSON")
    assert_error(await http.get(mine), 401, "M_MISSING_TOKEN")


# -- send-to-device --------------------------------------------------------------------------


async def test_send_to_device_accepts_and_is_idempotent(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    second = await login(http, bob["user_id"])
    assert second.status_code == 200, second.text
    auth = bearer(alice["access_token"])
    body = {"messages": {
        bob["user_id"]: {"*": {"hello": "everyone"}, bob["device_id"]: {"hello": "you"}},
        "@someone:elsewhere.example": {"DEVICE": {"federation": "later"}},
        f"@{unique('nobody')}:localhost": {"*": {}},
    }}
    path = f"{CLIENT}/sendToDevice/m.example/{unique('txn')}"
    r = await http.put(path, json=body, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    # The retransmission gets the same answer.
    r = await http.put(path, json=body, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {}


async def test_send_to_device_bodies_are_checked(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    auth = bearer(alice["access_token"])
    cases: list[tuple[Any, str]] = [
        ({}, "M_MISSING_PARAM"),
        ({"messages": []}, "M_BAD_JSON"),
        ({"messages": {bob["user_id"]: [1]}}, "M_BAD_JSON"),
        ({"messages": {bob["user_id"]: {"*": 5}}}, "M_BAD_JSON"),
        ({"messages": {"not-a-user": {"*": {}}}}, "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        r = await http.put(f"{CLIENT}/sendToDevice/m.example/{unique('txn')}", json=body,
                           headers=auth)
        assert_error(r, 400, errcode)
    r = await http.put(f"{CLIENT}/sendToDevice/m.example/t", json={"messages": {}})
    assert_error(r, 401, "M_MISSING_TOKEN")
