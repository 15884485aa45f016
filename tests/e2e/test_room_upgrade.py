"""POST /rooms/{roomId}/upgrade: replacement room, transferred state, tombstone, aliases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.helpers import assert_error, bearer, register, unique


async def _create(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    r = await http.post("/_matrix/client/v3/createRoom", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _state(http: httpx.AsyncClient, token: str, room: str, event_type: str,
                 key: str = "") -> httpx.Response:
    return await http.get(f"/_matrix/client/v3/rooms/{room}/state/{event_type}/{key}",
                          headers=bearer(token))


@pytest.mark.parametrize(("old", "new"), [("10", "12"), ("11", "12"), ("12", "12"),
                                          ("10", "11")])
async def test_upgrade_replaces_the_room(http: httpx.AsyncClient, old: str, new: str) -> None:
    alice = await register(http)
    token = alice["access_token"]
    alias_name = unique("up")
    room = await _create(http, token, room_version=old, name="Old name", topic="Old topic",
                         room_alias_name=alias_name, preset="public_chat",
                         visibility="public")
    r = await http.post(f"/_matrix/client/v3/rooms/{room}/upgrade",
                        json={"new_version": new}, headers=bearer(token))
    assert r.status_code == 200, r.text
    new_room = r.json()["replacement_room"]
    assert new_room != room

    create = (await _state(http, token, new_room, "m.room.create")).json()
    assert create["room_version"] == new
    assert create["predecessor"]["room_id"] == room
    assert ("event_id" in create["predecessor"]) is (new != "12")
    for event_type, field, value in (("m.room.name", "name", "Old name"),
                                     ("m.room.topic", "topic", "Old topic"),
                                     ("m.room.join_rules", "join_rule", "public")):
        assert (await _state(http, token, new_room, event_type)).json()[field] == value
    power = (await _state(http, token, new_room, "m.room.power_levels")).json()
    assert (alice["user_id"] in power["users"]) is (new != "12")

    tombstone = (await _state(http, token, room, "m.room.tombstone")).json()
    assert tombstone["replacement_room"] == new_room
    old_power = (await _state(http, token, room, "m.room.power_levels")).json()
    assert old_power["events_default"] >= 50
    assert old_power["invite"] >= 50

    alias = f"%23{alias_name}:localhost"
    r = await http.get(f"/_matrix/client/v3/directory/room/{alias}")
    assert r.json()["room_id"] == new_room
    canonical = (await _state(http, token, new_room, "m.room.canonical_alias")).json()
    assert canonical["alias"] == f"#{alias_name}:localhost"
    published = (await http.get("/_matrix/client/v3/publicRooms?limit=500")).json()["chunk"]
    ids = {c["room_id"] for c in published}
    assert new_room in ids
    assert room not in ids

    # A plain member of the old room can no longer talk there.
    bob = await register(http)
    r = await http.post(f"/_matrix/client/v3/join/{room}", headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    r = await http.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1",
                       json={"msgtype": "m.text", "body": "hi"},
                       headers=bearer(bob["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")


async def test_upgrade_needs_tombstone_power_and_a_known_version(http: httpx.AsyncClient
                                                                 ) -> None:
    alice = await register(http)
    bob = await register(http)
    room = await _create(http, alice["access_token"], preset="public_chat")
    r = await http.post(f"/_matrix/client/v3/join/{room}", headers=bearer(bob["access_token"]))
    assert r.status_code == 200
    r = await http.post(f"/_matrix/client/v3/rooms/{room}/upgrade", json={"new_version": "12"},
                        headers=bearer(bob["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")
    for version in ("9", "999"):
        r = await http.post(f"/_matrix/client/v3/rooms/{room}/upgrade",
                            json={"new_version": version},
                            headers=bearer(alice["access_token"]))
        assert_error(r, 400, "M_UNSUPPORTED_ROOM_VERSION")
    r = await http.post(f"/_matrix/client/v3/rooms/{room}/upgrade", json={},
                        headers=bearer(alice["access_token"]))
    assert_error(r, 400, "M_MISSING_PARAM")


async def test_upgrade_to_v12_with_additional_creators(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    room = await _create(http, alice["access_token"], room_version="11")
    r = await http.post(f"/_matrix/client/v3/rooms/{room}/upgrade",
                        json={"new_version": "12", "additional_creators": [bob["user_id"]]},
                        headers=bearer(alice["access_token"]))
    assert r.status_code == 200, r.text
    new_room = r.json()["replacement_room"]
    create = (await _state(http, alice["access_token"], new_room, "m.room.create")).json()
    assert create["additional_creators"] == [bob["user_id"]]
    power = (await _state(http, alice["access_token"], new_room,
                          "m.room.power_levels")).json()
    assert bob["user_id"] not in power["users"]


async def test_upgrade_invites_members_of_a_private_room_and_keeps_bans(
        http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    mallory = await register(http)
    room = await _create(http, alice["access_token"], preset="private_chat",
                         invite=[bob["user_id"]])
    r = await http.post(f"/_matrix/client/v3/join/{room}", headers=bearer(bob["access_token"]))
    assert r.status_code == 200
    r = await http.post(f"/_matrix/client/v3/rooms/{room}/ban",
                        json={"user_id": mallory["user_id"], "reason": "spam"},
                        headers=bearer(alice["access_token"]))
    assert r.status_code == 200
    r = await http.post(f"/_matrix/client/v3/rooms/{room}/upgrade", json={"new_version": "12"},
                        headers=bearer(alice["access_token"]))
    new_room = r.json()["replacement_room"]
    invite = (await _state(http, alice["access_token"], new_room, "m.room.member",
                           bob["user_id"])).json()
    assert invite["membership"] == "invite"
    ban = (await _state(http, alice["access_token"], new_room, "m.room.member",
                        mallory["user_id"])).json()
    assert ban["membership"] == "ban"
    r = await http.post(f"/_matrix/client/v3/join/{new_room}",
                        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    r = await http.post(f"/_matrix/client/v3/join/{new_room}",
                        headers=bearer(mallory["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")
