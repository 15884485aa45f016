"""Rooms end to end: createRoom, room state, aliases, the published room directory, room
summaries and reports (Client-Server API "Room creation", "Room aliases", "Room directory",
"Published room directory", "Reporting content"; create_room.yaml, room_state.yaml,
directory.yaml, list_public_rooms.yaml, room_summary.yaml, report_content.yaml)."""

from __future__ import annotations

import re
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

V12_ROOM_ID = re.compile(r"^![A-Za-z0-9_-]{43}$")


async def _state_content(http: httpx.AsyncClient, token: str, room_id: str, event_type: str,
                         state_key: str = "") -> dict[str, Any]:
    r = await get_state(http, token, room_id, event_type, state_key)
    assert r.status_code == 200, r.text
    content: dict[str, Any] = r.json()
    return content


def _alias_path(alias: str) -> str:
    return f"{CLIENT}/directory/room/{quote(alias, safe='')}"


# -- createRoom: room versions -------------------------------------------------------------


async def test_default_room_version_is_12_with_hash_room_id(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    room_id = await create_room(http, token)
    # v12 room IDs are "!" + the create event's reference hash (unpadded URL-safe base64).
    assert V12_ROOM_ID.match(room_id), room_id
    assert ":" not in room_id
    create = await _state_content(http, token, room_id, "m.room.create")
    assert create["room_version"] == "12"
    # The create event is sent by the creator; its ID is the room ID with "$" for "!".
    r = await http.get(room_path(room_id, "state", "m.room.create", ""),
                       params={"format": "event"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["sender"] == user
    assert event["event_id"] == "$" + room_id[1:]
    assert event["state_key"] == ""
    r = await http.get(f"{CLIENT}/joined_rooms", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert room_id in r.json()["joined_rooms"]


@pytest.mark.parametrize("version", ["10", "11"])
async def test_room_versions_10_and_11(http: httpx.AsyncClient, version: str) -> None:
    user, token = await user_and_token(http)
    room_id = await create_room(http, token, room_version=version)
    assert room_id.startswith("!")
    assert room_id.endswith(":localhost"), room_id
    create = await _state_content(http, token, room_id, "m.room.create")
    assert create["room_version"] == version
    if version == "10":
        assert create["creator"] == user
    else:
        assert "creator" not in create  # v11 removed `creator` from the create event
    power = await _state_content(http, token, room_id, "m.room.power_levels")
    assert power["users"] == {user: 100}
    assert power["events"]["m.room.tombstone"] == 100


@pytest.mark.parametrize("version", ["9", "1", "foo", "13"])
async def test_unsupported_room_version(http: httpx.AsyncClient, version: str) -> None:
    _, token = await user_and_token(http)
    r = await http.post(f"{CLIENT}/createRoom", json={"room_version": version},
                        headers=bearer(token))
    assert_error(r, 400, "M_UNSUPPORTED_ROOM_VERSION")


async def test_capabilities_room_versions(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    r = await http.get(f"{CLIENT}/capabilities", headers=bearer(token))
    assert r.status_code == 200, r.text
    versions = r.json()["capabilities"]["m.room_versions"]
    assert versions["default"] == "12"
    for v in ("10", "11", "12"):
        assert versions["available"][v] == "stable"
    assert versions["default"] in versions["available"]


async def test_creation_content_is_kept_and_room_version_overwritten(
        http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    room_id = await create_room(
        http, token, room_version="10",
        creation_content={"m.federate": False, "room_version": "1", "creator": "@x:example.org"})
    create = await _state_content(http, token, room_id, "m.room.create")
    assert create == {"m.federate": False, "room_version": "10", "creator": user}


# -- createRoom: presets and initial state -------------------------------------------------


async def _preset_state(http: httpx.AsyncClient, token: str, room_id: str
                        ) -> tuple[str, str, str]:
    jr = await _state_content(http, token, room_id, "m.room.join_rules")
    hv = await _state_content(http, token, room_id, "m.room.history_visibility")
    ga = await _state_content(http, token, room_id, "m.room.guest_access")
    return jr["join_rule"], hv["history_visibility"], ga["guest_access"]


@pytest.mark.parametrize(("body", "expected", "published"), [
    ({}, ("invite", "shared", "can_join"), "private"),
    ({"preset": "private_chat"}, ("invite", "shared", "can_join"), "private"),
    ({"preset": "trusted_private_chat"}, ("invite", "shared", "can_join"), "private"),
    ({"preset": "public_chat"}, ("public", "shared", "forbidden"), "private"),
    ({"visibility": "public"}, ("public", "shared", "forbidden"), "public"),
    ({"visibility": "private"}, ("invite", "shared", "can_join"), "private"),
    ({"visibility": "public", "preset": "private_chat"}, ("invite", "shared", "can_join"),
     "public"),
])
async def test_presets(http: httpx.AsyncClient, body: dict[str, Any],
                       expected: tuple[str, str, str], published: str) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token, **body)
    assert await _preset_state(http, token, room_id) == expected
    r = await http.get(f"{CLIENT}/directory/list/room/{room_id}")
    assert r.status_code == 200, r.text
    assert r.json() == {"visibility": published}


async def test_initial_state_then_name_and_topic(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(
        http, token, preset="private_chat", name="Final name", topic="Final topic",
        initial_state=[
            {"type": "m.room.name", "content": {"name": "Initial name"}},
            {"type": "m.room.topic", "state_key": "", "content": {"topic": "Initial"}},
            # initial_state takes precedence over the preset
            {"type": "m.room.join_rules", "content": {"join_rule": "public"}},
            {"type": "org.example.setting", "state_key": "k1", "content": {"v": 1}},
            {"type": "org.example.setting", "state_key": "k1", "content": {"v": 2}},
        ])
    assert await _state_content(http, token, room_id, "m.room.name") == {"name": "Final name"}
    topic = await _state_content(http, token, room_id, "m.room.topic")
    assert topic["topic"] == "Final topic"
    assert (await _state_content(http, token, room_id, "m.room.join_rules"))["join_rule"] == \
        "public"
    assert await _state_content(http, token, room_id, "org.example.setting", "k1") == {"v": 2}
    # Name, topic and the initial state all come after the preset's events, in order.
    r = await http.get(room_path(room_id, "messages"), params={"dir": "f", "limit": "50"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    types = [(e["type"], e.get("state_key")) for e in r.json()["chunk"]]
    assert types[0] == ("m.room.create", "")
    assert types[2] == ("m.room.power_levels", "")
    order = [t for t in types if t[0] in (
        "m.room.guest_access", "m.room.name", "m.room.topic", "org.example.setting")]
    assert order == [("m.room.guest_access", ""), ("m.room.name", ""), ("m.room.topic", ""),
                     ("org.example.setting", "k1"), ("org.example.setting", "k1"),
                     ("m.room.name", ""), ("m.room.topic", "")]


async def test_room_alias_name(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    local = unique("alias")
    room_id = await create_room(http, token, room_alias_name=local)
    alias = f"#{local}:localhost"
    r = await http.get(_alias_path(alias))  # no auth needed
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == room_id
    assert "localhost" in r.json()["servers"]
    assert await _state_content(http, token, room_id, "m.room.canonical_alias") == \
        {"alias": alias}
    r = await http.get(room_path(room_id, "aliases"), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"aliases": [alias]}

    _, other = await user_and_token(http)
    r = await http.post(f"{CLIENT}/createRoom", json={"room_alias_name": local},
                        headers=bearer(other))
    assert_error(r, 400, "M_ROOM_IN_USE")


async def test_power_levels_v12_creator_not_listed(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    room_id = await create_room(http, token)
    power = await _state_content(http, token, room_id, "m.room.power_levels")
    assert user not in power.get("users", {})
    assert power["events"]["m.room.tombstone"] == 150
    assert power["events"]["m.room.tombstone"] > power.get("state_default", 0)
    assert power["state_default"] == 50
    assert power["ban"] == power["kick"] == power["redact"] == 50
    assert power["invite"] == 0
    assert power["events"]["m.room.power_levels"] == 100
    # The creator still has (infinite) power: changing power levels needs 100.
    r = await put_state(http, token, room_id, "m.room.power_levels", {**power, "kick": 60})
    assert r.status_code == 200, r.text


async def test_power_level_content_override(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    other, _ = await user_and_token(http)
    room_id = await create_room(
        http, token, room_version="11",
        power_level_content_override={"invite": 50, "events_default": 10,
                                      "users": {user: 100, other: 42}})
    power = await _state_content(http, token, room_id, "m.room.power_levels")
    assert power["invite"] == 50
    assert power["events_default"] == 10
    assert power["users"] == {user: 100, other: 42}
    assert power["kick"] == 50  # untouched defaults are kept


async def test_trusted_private_chat_v12_additional_creators(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    invitee, invitee_token = await user_and_token(http)
    room_id = await create_room(http, token, preset="trusted_private_chat", invite=[invitee])
    create = await _state_content(http, token, room_id, "m.room.create")
    assert create["additional_creators"] == [invitee]
    power = await _state_content(http, token, room_id, "m.room.power_levels")
    assert invitee not in power.get("users", {})
    assert user not in power.get("users", {})
    member = await _state_content(http, token, room_id, "m.room.member", invitee)
    assert member["membership"] == "invite"
    await join_room(http, invitee_token, room_id)
    # As an additional creator the invitee may do what needs level 100.
    r = await put_state(http, invitee_token, room_id, "m.room.history_visibility",
                        {"history_visibility": "joined"})
    assert r.status_code == 200, r.text


async def test_trusted_private_chat_v11_gives_invitees_creator_level(
        http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    invitee, _ = await user_and_token(http)
    room_id = await create_room(http, token, preset="trusted_private_chat", invite=[invitee],
                                room_version="11")
    power = await _state_content(http, token, room_id, "m.room.power_levels")
    assert power["users"] == {user: 100, invitee: 100}
    create = await _state_content(http, token, room_id, "m.room.create")
    assert "additional_creators" not in create


@pytest.mark.parametrize("is_direct", [True, False])
async def test_invite_list(http: httpx.AsyncClient, is_direct: bool) -> None:
    user, token = await user_and_token(http)
    b, b_token = await user_and_token(http)
    c, _ = await user_and_token(http)
    room_id = await create_room(http, token, invite=[b, c], is_direct=is_direct)
    for invitee in (b, c):
        r = await http.get(room_path(room_id, "state", "m.room.member", invitee),
                           params={"format": "event"}, headers=bearer(token))
        assert r.status_code == 200, r.text
        event = r.json()
        assert event["sender"] == user
        assert event["content"]["membership"] == "invite"
        if is_direct:
            assert event["content"]["is_direct"] is True
        else:
            assert "is_direct" not in event["content"]
    await join_room(http, b_token, room_id)
    r = await http.get(room_path(room_id, "joined_members"), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert set(r.json()["joined"]) == {user, b}


@pytest.mark.parametrize("body", [
    {"invite": "@a:localhost"},
    {"invite": [1]},
    {"initial_state": [{"content": {}}]},
    {"initial_state": [{"type": "m.room.topic"}]},
    {"initial_state": [{"type": "m.room.topic", "content": {}, "state_key": 5}]},
    {"initial_state": "nope"},
    {"visibility": "x"},
    {"preset": "nope"},
    {"name": 5},
    {"is_direct": "yes"},
    {"creation_content": []},
    {"power_level_content_override": 1},
])
async def test_malformed_create_bodies(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    _, token = await user_and_token(http)
    r = await http.post(f"{CLIENT}/createRoom", json=body, headers=bearer(token))
    assert_error(r, 400, "M_BAD_JSON")


@pytest.mark.parametrize(("version", "override", "extra", "errcodes"), [
    # The creator's own level is set below what the preset's and name's events need.
    ("11", {"users": {"$creator": 10}}, {"name": "x"}, {"M_INVALID_ROOM_STATE"}),
    # In v12 creators cannot be listed in m.room.power_levels users.
    ("12", {"users": {"$creator": 100}}, {}, {"M_INVALID_ROOM_STATE"}),
    # Power levels must be integers (v10+).
    ("12", {"kick": "50"}, {}, {"M_BAD_JSON", "M_INVALID_ROOM_STATE"}),
])
async def test_invalid_initial_state_is_400(http: httpx.AsyncClient, version: str,
                                            override: dict[str, Any], extra: dict[str, Any],
                                            errcodes: set[str]) -> None:
    """create_room.yaml 400: "The initial state implied by the parameters to the request is
    invalid: for example, the user's `power_level` is set below that necessary to set the room
    name (`errcode` set to `M_INVALID_ROOM_STATE`)"."""
    user, token = await user_and_token(http)
    if "users" in override:
        override = {"users": {user: next(iter(override["users"].values()))}}
    r = await http.post(f"{CLIENT}/createRoom", headers=bearer(token), json={
        "room_version": version, "power_level_content_override": override, **extra})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in errcodes, r.json()
    # No half-created room is left behind.
    r = await http.get(f"{CLIENT}/joined_rooms", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"joined_rooms": []}


async def test_create_room_not_json_and_unauthenticated(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    r = await http.post(f"{CLIENT}/createRoom", content=b"{nope",
                        headers={**bearer(token), "Content-Type": "application/json"})
    assert_error(r, 400, "M_NOT_JSON")
    r = await http.post(f"{CLIENT}/createRoom", json={})
    assert_error(r, 401, "M_MISSING_TOKEN")
    r = await http.post(f"{CLIENT}/createRoom", json={}, headers=bearer("not-a-token"))
    assert_error(r, 401, "M_UNKNOWN_TOKEN")


# -- room state ----------------------------------------------------------------------------


async def test_state_empty_key_with_and_without_trailing_slash(http: httpx.AsyncClient) -> None:
    """room_state.yaml / rooms.yaml: "If the state key is an empty string, the trailing slash
    on this endpoint is optional" (for both PUT and GET)."""
    _, token = await user_and_token(http)
    room_id = await create_room(http, token)
    base = room_path(room_id, "state", "m.room.topic")
    r = await http.put(base + "/", json={"topic": "slash"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    first = r.json()["event_id"]
    assert first.startswith("$")
    r = await http.get(base + "/", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"topic": "slash"}
    r = await http.get(base, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"topic": "slash"}
    r = await http.put(base, json={"topic": "no slash"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["event_id"] != first
    for path in (base, base + "/"):
        r = await http.get(path, headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.json() == {"topic": "no slash"}


async def test_state_with_keys(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    room_id = await create_room(http, token)
    for key in ("plain", user, "with space", "a/b"):
        r = await put_state(http, token, room_id, "org.example.keyed", {"key": key}, key)
        assert r.status_code == 200, r.text
    for key in ("plain", user, "with space", "a/b"):
        assert await _state_content(http, token, room_id, "org.example.keyed", key) == \
            {"key": key}
    r = await http.get(room_path(room_id, "state"), headers=bearer(token))
    assert r.status_code == 200, r.text
    keyed = {e["state_key"]: e["content"] for e in r.json() if e["type"] == "org.example.keyed"}
    assert keyed == {k: {"key": k} for k in ("plain", user, "with space", "a/b")}
    types = {e["type"] for e in r.json()}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules"} <= types


async def test_state_format_event(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    room_id = await create_room(http, token)
    r = await put_state(http, token, room_id, "m.room.name", {"name": "Formats"})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    r = await http.get(room_path(room_id, "state", "m.room.name", ""),
                       params={"format": "event"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["event_id"] == event_id
    assert event["type"] == "m.room.name"
    assert event["state_key"] == ""
    assert event["sender"] == user
    assert event["room_id"] == room_id
    assert event["content"] == {"name": "Formats"}
    assert isinstance(event["origin_server_ts"], int)
    r = await http.get(room_path(room_id, "state", "m.room.name", ""),
                       params={"format": "content"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "Formats"}


async def test_identical_state_returns_same_event_id(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token)
    content = {"name": "Same"}
    r1 = await put_state(http, token, room_id, "m.room.name", content)
    r2 = await put_state(http, token, room_id, "m.room.name", content)
    assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
    assert r1.json()["event_id"] == r2.json()["event_id"]
    r3 = await put_state(http, token, room_id, "m.room.name", {"name": "Different"})
    assert r3.status_code == 200, r3.text
    assert r3.json()["event_id"] != r1.json()["event_id"]


async def test_unknown_state_is_404(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token)
    r = await get_state(http, token, room_id, "m.room.name")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await get_state(http, token, room_id, "m.room.member", "@nobody:localhost")
    assert_error(r, 404, "M_NOT_FOUND")


async def test_state_needs_membership(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room_id = await create_room(http, token, preset="public_chat")
    r = await http.get(room_path(room_id, "state"), headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await get_state(http, stranger, room_id, "m.room.create")
    assert_error(r, 403, "M_FORBIDDEN")
    r = await put_state(http, stranger, room_id, "org.example.x", {"a": 1})
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(room_path("!unknown:localhost", "state"), headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")


async def test_state_power_levels(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    b, b_token = await user_and_token(http)
    c, c_token = await user_and_token(http)
    room_id = await create_room(http, token, preset="public_chat")
    await join_room(http, b_token, room_id)
    await join_room(http, c_token, room_id)

    # PL 0 may send messages (events_default 0) but not m.room.name (50).
    await send_text(http, b_token, room_id, "hello")
    r = await put_state(http, b_token, room_id, "m.room.name", {"name": "B's"})
    assert_error(r, 403, "M_FORBIDDEN")
    r = await put_state(http, b_token, room_id, "org.example.any", {})  # state_default 50
    assert_error(r, 403, "M_FORBIDDEN")

    power = await _state_content(http, token, room_id, "m.room.power_levels")
    power["users"] = {**power.get("users", {}), b: 50}
    r = await put_state(http, token, room_id, "m.room.power_levels", power)
    assert r.status_code == 200, r.text
    r = await put_state(http, b_token, room_id, "m.room.name", {"name": "B's"})
    assert r.status_code == 200, r.text
    assert await _state_content(http, c_token, room_id, "m.room.name") == {"name": "B's"}

    # Changing power levels needs 100: B (50) cannot, and could not exceed its own level anyway.
    power["events"]["m.room.power_levels"] = 50
    r = await put_state(http, token, room_id, "m.room.power_levels", power)
    assert r.status_code == 200, r.text
    for users in ({b: 50, c: 75}, {b: 100}):
        r = await put_state(http, b_token, room_id, "m.room.power_levels",
                            {**power, "users": users})
        assert_error(r, 403, "M_FORBIDDEN")
    r = await put_state(http, b_token, room_id, "m.room.power_levels", {**power, "kick": 75})
    assert_error(r, 403, "M_FORBIDDEN")
    # Up to its own level is fine.
    r = await put_state(http, b_token, room_id, "m.room.power_levels",
                        {**power, "users": {b: 50, c: 50}})
    assert r.status_code == 200, r.text
    r = await put_state(http, c_token, room_id, "m.room.topic", {"topic": "C's"})
    assert r.status_code == 200, r.text
    # B may not demote C, whose level equals its own, but may demote itself.
    r = await put_state(http, b_token, room_id, "m.room.power_levels",
                        {**power, "users": {b: 50, c: 0}})
    assert_error(r, 403, "M_FORBIDDEN")
    r = await put_state(http, b_token, room_id, "m.room.power_levels",
                        {**power, "users": {b: 0, c: 50}})
    assert r.status_code == 200, r.text
    r = await put_state(http, b_token, room_id, "m.room.topic", {"topic": "B again"})
    assert_error(r, 403, "M_FORBIDDEN")


@pytest.mark.parametrize("change", [
    {"kick": "50"},
    {"users_default": 1.5},
    {"events": {"m.room.name": "50"}},
    {"users": {"@someone:localhost": "100"}},
    {"notifications": {"room": True}},
])
async def test_power_levels_must_be_integers(http: httpx.AsyncClient,
                                             change: dict[str, Any]) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token)
    power = await _state_content(http, token, room_id, "m.room.power_levels")
    r = await put_state(http, token, room_id, "m.room.power_levels", {**power, **change})
    assert_error(r, 400, "M_BAD_JSON")


async def test_canonical_alias_must_point_to_room(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    local = unique("canon")
    other_room = await create_room(http, token, room_alias_name=local)
    room_id = await create_room(http, token)
    other_alias = f"#{local}:localhost"
    r = await put_state(http, token, room_id, "m.room.canonical_alias", {"alias": other_alias})
    assert_error(r, 400, "M_BAD_ALIAS")
    r = await put_state(http, token, room_id, "m.room.canonical_alias",
                        {"alt_aliases": [f"#{unique('missing')}:localhost"]})
    assert_error(r, 400, "M_BAD_ALIAS")
    r = await put_state(http, token, room_id, "m.room.canonical_alias", {"alias": "not-alias"})
    assert_error(r, 400, "M_INVALID_PARAM")
    # An alias of this room is accepted.
    own = f"#{unique('own')}:localhost"
    r = await http.put(_alias_path(own), json={"room_id": room_id}, headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await put_state(http, token, room_id, "m.room.canonical_alias",
                        {"alias": own, "alt_aliases": [own]})
    assert r.status_code == 200, r.text
    assert other_room != room_id


# -- aliases -------------------------------------------------------------------------------


async def test_alias_put_get_delete(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token)
    alias = f"#{unique('dir')}:localhost"
    r = await http.put(_alias_path(alias), json={"room_id": room_id}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.get(_alias_path(alias))
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id, "servers": ["localhost"]}
    r = await http.put(_alias_path(alias), json={"room_id": room_id}, headers=bearer(token))
    assert_error(r, 409, "M_UNKNOWN")
    r = await http.get(room_path(room_id, "aliases"), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"aliases": [alias]}

    r = await http.delete(_alias_path(alias), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.get(_alias_path(alias))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.delete(_alias_path(alias), headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(room_path(room_id, "aliases"), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"aliases": []}


async def test_alias_errors(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token)
    r = await http.put(_alias_path("#nocolon"), json={"room_id": room_id},
                       headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await http.get(_alias_path(f"#{unique('nope')}:localhost"))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.put(_alias_path(f"#{unique('x')}:localhost"),
                       json={"room_id": "!unknown:localhost"}, headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.put(_alias_path(f"#{unique('x')}:localhost"), json={"room_id": room_id})
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_alias_delete_permissions(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, b_token = await user_and_token(http)
    room_id = await create_room(http, token, preset="public_chat")
    await join_room(http, b_token, room_id)
    admins = f"#{unique('admins')}:localhost"
    members = f"#{unique('members')}:localhost"
    for alias, tok in ((admins, token), (members, b_token)):
        r = await http.put(_alias_path(alias), json={"room_id": room_id}, headers=bearer(tok))
        assert r.status_code == 200, r.text
    r = await http.get(room_path(room_id, "aliases"), headers=bearer(b_token))
    assert r.status_code == 200, r.text
    assert sorted(r.json()["aliases"]) == sorted([admins, members])
    # A PL-0 member may not delete someone else's alias...
    r = await http.delete(_alias_path(admins), headers=bearer(b_token))
    assert_error(r, 403, "M_FORBIDDEN")
    # ...but the room admin may delete the member's, and the alias still resolves until then.
    r = await http.get(_alias_path(admins))
    assert r.status_code == 200, r.text
    r = await http.delete(_alias_path(members), headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await http.get(_alias_path(members))
    assert_error(r, 404, "M_NOT_FOUND")


async def test_room_aliases_needs_membership(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room_id = await create_room(http, token, room_alias_name=unique("hidden"))
    r = await http.get(room_path(room_id, "aliases"), headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")


# -- published room directory --------------------------------------------------------------


async def test_directory_visibility(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, b_token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room_id = await create_room(http, token, preset="public_chat")
    await join_room(http, b_token, room_id)
    path = f"{CLIENT}/directory/list/room/{room_id}"
    r = await http.get(path)
    assert r.status_code == 200, r.text
    assert r.json() == {"visibility": "private"}
    r = await http.put(path, json={"visibility": "public"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.get(path)
    assert r.status_code == 200, r.text
    assert r.json() == {"visibility": "public"}
    r = await http.put(path, json={"visibility": "private"}, headers=bearer(b_token))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.put(path, json={"visibility": "private"}, headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.put(path, json={"visibility": "hidden"}, headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await http.get(path)
    assert r.status_code == 200, r.text
    assert r.json() == {"visibility": "public"}
    r = await http.put(path, json={"visibility": "private"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await http.get(path)
    assert r.json() == {"visibility": "private"}
    r = await http.get(f"{CLIENT}/directory/list/room/!unknown:localhost")
    assert_error(r, 404, "M_NOT_FOUND")


async def test_public_rooms(http: httpx.AsyncClient) -> None:
    user, token = await user_and_token(http)
    _, b_token = await user_and_token(http)
    term = unique("needle")
    rooms = []
    for i in range(3):
        rooms.append(await create_room(
            http, token, visibility="public", name=f"Room {i} {term}", topic=f"Topic {i}",
            room_alias_name=f"{term}_{i}"))
    # Not in the directory: a public room that was not published.
    await create_room(http, token, preset="public_chat", name=f"Hidden {term}")
    await join_room(http, b_token, rooms[1])

    r = await http.post(f"{CLIENT}/publicRooms",
                        json={"filter": {"generic_search_term": term.upper()}},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    chunk = body["chunk"]
    by_id = {c["room_id"]: c for c in chunk}
    assert set(by_id) == set(rooms)
    for i, room_id in enumerate(rooms):
        c = by_id[room_id]
        assert c["name"] == f"Room {i} {term}"
        assert c["topic"] == f"Topic {i}"
        assert c["canonical_alias"] == f"#{term}_{i}:localhost"
        assert c["num_joined_members"] == (2 if i == 1 else 1)
        assert c["world_readable"] is False
        assert c["guest_can_join"] is False
        assert c["join_rule"] == "public"
    assert "next_batch" not in body

    # Pagination with limit and next_batch.
    seen: list[str] = []
    since = None
    for _ in range(3):
        query: dict[str, Any] = {"limit": 2, "filter": {"generic_search_term": term}}
        if since:
            query["since"] = since
        r = await http.post(f"{CLIENT}/publicRooms", json=query, headers=bearer(token))
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["chunk"]) <= 2
        seen += [c["room_id"] for c in page["chunk"]]
        since = page.get("next_batch")
        if since is None:
            break
    assert sorted(seen) == sorted(rooms)
    assert since is None

    # GET needs no access token; with limit it pages too.
    r = await http.get(f"{CLIENT}/publicRooms")
    assert r.status_code == 200, r.text
    ids = {c["room_id"] for c in r.json()["chunk"]}
    assert set(rooms) <= ids
    assert r.json()["total_room_count_estimate"] >= 3
    r = await http.get(f"{CLIENT}/publicRooms", params={"limit": "1"})
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["chunk"]) == 1
    r = await http.get(f"{CLIENT}/publicRooms",
                       params={"limit": "1", "since": first["next_batch"]})
    assert r.status_code == 200, r.text
    assert r.json()["chunk"][0]["room_id"] != first["chunk"][0]["room_id"]

    # Unpublishing removes a room.
    r = await http.put(f"{CLIENT}/directory/list/room/{rooms[0]}", json={"visibility": "private"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await http.post(f"{CLIENT}/publicRooms", json={"filter": {"generic_search_term": term}},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    assert {c["room_id"] for c in r.json()["chunk"]} == set(rooms[1:])
    assert user  # the creator is not otherwise needed


async def test_public_rooms_errors(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{CLIENT}/publicRooms", json={})
    assert_error(r, 401, "M_MISSING_TOKEN")
    _, token = await user_and_token(http)
    r = await http.post(f"{CLIENT}/publicRooms", json={"limit": "2"}, headers=bearer(token))
    assert_error(r, 400, "M_BAD_JSON")
    r = await http.get(f"{CLIENT}/publicRooms", params={"limit": "x"})
    assert_error(r, 400, "M_INVALID_PARAM")


# -- room summary --------------------------------------------------------------------------


async def test_room_summary_public_room(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    local = unique("summary")
    room_id = await create_room(http, token, preset="public_chat", name="Summary room",
                                topic="About summaries", room_alias_name=local)
    expected = {
        "room_id": room_id,
        "name": "Summary room",
        "topic": "About summaries",
        "canonical_alias": f"#{local}:localhost",
        "num_joined_members": 1,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
        "room_version": "12",
    }
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}")  # no auth
    assert r.status_code == 200, r.text
    assert r.json() == expected
    r = await http.get(f"/_matrix/client/v1/room_summary/{quote(f'#{local}:localhost')}")
    assert r.status_code == 200, r.text
    assert r.json() == expected
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {**expected, "membership": "join"}
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}", headers=bearer(stranger))
    assert r.status_code == 200, r.text
    assert r.json() == expected


async def test_room_summary_private_room(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    invitee, invitee_token = await user_and_token(http)
    room_id = await create_room(http, token, name="Secret")
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["membership"] == "join"
    assert r.json()["join_rule"] == "invite"
    # An invited user may see the summary, with its membership.
    r = await http.post(room_path(room_id, "invite"), json={"user_id": invitee},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}",
                       headers=bearer(invitee_token))
    assert r.status_code == 200, r.text
    assert r.json()["membership"] == "invite"
    assert r.json()["name"] == "Secret"
    # room_summary.yaml documents only 404 M_NOT_FOUND ("The room could not be found") for
    # rooms the requester cannot see; Synapse answers the same.
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}", headers=bearer(stranger))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}")
    assert_error(r, 404, "M_NOT_FOUND")


async def test_room_summary_knock_room_without_auth(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room_id = await create_room(http, token, name="Knock here")
    r = await put_state(http, token, room_id, "m.room.join_rules", {"join_rule": "knock"})
    assert r.status_code == 200, r.text
    r = await http.get(f"/_matrix/client/v1/room_summary/{room_id}")
    assert r.status_code == 200, r.text
    assert r.json()["join_rule"] == "knock"
    assert r.json()["name"] == "Knock here"
    assert "membership" not in r.json()


async def test_room_summary_unknown(http: httpx.AsyncClient) -> None:
    r = await http.get("/_matrix/client/v1/room_summary/!unknown:localhost")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"/_matrix/client/v1/room_summary/{quote(f'#{unique()}:localhost')}")
    assert_error(r, 404, "M_NOT_FOUND")


# -- reporting -----------------------------------------------------------------------------


async def test_report_event(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    b, b_token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room_id = await create_room(http, token)
    r = await http.post(room_path(room_id, "invite"), json={"user_id": b},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    await join_room(http, b_token, room_id)
    event_id = await send_text(http, token, room_id, "offensive")
    r = await http.post(room_path(room_id, "report", event_id), json={"reason": "rude"},
                        headers=bearer(b_token))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.post(room_path(room_id, "report", event_id), json={}, headers=bearer(b_token))
    assert r.status_code == 200, r.text
    r = await http.post(room_path(room_id, "report", "$unknown"), json={"reason": "x"},
                        headers=bearer(b_token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.post(room_path(room_id, "report", event_id), json={"reason": "x"},
                        headers=bearer(stranger))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.post(room_path(room_id, "report", event_id), json={"reason": "x"})
    assert_error(r, 401, "M_MISSING_TOKEN")
