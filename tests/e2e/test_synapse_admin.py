"""The Synapse-compatible admin subset under /_synapse/admin."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.cli_process import run_cli
from tests.e2e.helpers import (
    assert_error,
    bearer,
    create_room,
    join_room,
    login,
    register,
    unique,
    whoami,
)
from tests.server_process import ServerProcess

USERS = "/_synapse/admin/v2/users"
ROOMS = "/_synapse/admin/v1/rooms"


def user_url(user_id: str) -> str:
    return f"{USERS}/{quote(user_id)}"


async def _admin(http: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    reg = await register(http, unique("sadmin"))
    out = await run_cli("make-admin", reg["user_id"], "--data-dir", server.data_dir)
    assert out.returncode == 0, out.stderr
    return reg


async def test_non_admins_are_refused(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    h = bearer(reg["access_token"])
    for url in (USERS, user_url(reg["user_id"]), ROOMS, f"{ROOMS}/!x:localhost/members",
                "/_synapse/admin/v1/registration_tokens"):
        assert_error(await http.get(url, headers=h), 403, "M_FORBIDDEN")
    assert_error(await http.put(user_url(reg["user_id"]), json={"admin": True}, headers=h),
                 403, "M_FORBIDDEN")
    assert (await http.get(USERS)).status_code == 401


async def test_list_users_pages(http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    h = bearer(admin["access_token"])
    prefix = unique("pager")
    mine = sorted([(await register(http, f"{prefix}n{i}"))["user_id"] for i in range(3)])
    r = await http.get(USERS, params={"name": prefix, "limit": "2"}, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["total"] == 3
    assert [u["name"] for u in first["users"]] == mine[:2]
    assert first["next_token"] == "2"
    r = await http.get(USERS, params={"name": prefix, "limit": "2", "from": "2"}, headers=h)
    second = r.json()
    assert [u["name"] for u in second["users"]] == mine[2:]
    assert "next_token" not in second
    assert second["users"][0]["admin"] is False
    assert second["users"][0]["deactivated"] is False


async def test_query_reset_password_and_deactivate(
        http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    h = bearer(admin["access_token"])
    user = await register(http)
    r = await http.get(user_url(user["user_id"]), headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == user["user_id"]
    assert body["threepids"] == []
    assert_error(await http.get(user_url("@nobody-here:localhost"), headers=h),
                 404, "M_NOT_FOUND")

    r = await http.put(user_url(user["user_id"]), json={"password": "a new long password"},
                       headers=h)
    assert r.status_code == 200, r.text
    assert (await whoami(http, user["access_token"])).status_code == 401
    assert (await login(http, user["user_id"], "a new long password")).status_code == 200

    r = await http.put(user_url(user["user_id"]), json={"deactivated": True}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["deactivated"] is True
    assert_error(await login(http, user["user_id"], "a new long password"),
                 403, "M_USER_DEACTIVATED")
    r = await http.get(USERS, params={"name": user["user_id"][1:].split(":")[0],
                                      "deactivated": "true"}, headers=h)
    assert [u["deactivated"] for u in r.json()["users"]] == [True]


async def test_rooms_and_members(http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    h = bearer(admin["access_token"])
    user = await register(http)
    room_id = await create_room(http, user["access_token"], preset="public_chat")
    await join_room(http, admin["access_token"], room_id)

    r = await http.get(f"{ROOMS}/{quote(room_id)}/members", headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {"members": sorted([user["user_id"], admin["user_id"]]), "total": 2}

    total = (await http.get(ROOMS, headers=h)).json()["total_rooms"]
    found: dict[str, Any] = {}
    offset: int | None = 0
    while offset is not None:
        page = (await http.get(ROOMS, params={"from": str(offset), "limit": "50"},
                               headers=h)).json()
        found.update({room["room_id"]: room for room in page["rooms"]})
        offset = page.get("next_batch")
    assert len(found) == total
    assert found[room_id]["joined_members"] == 2
    assert found[room_id]["creator"] == user["user_id"]
    assert_error(await http.get(f"{ROOMS}/{quote('!nope:localhost')}/members", headers=h),
                 404, "M_NOT_FOUND")


async def test_registration_tokens_none_by_default(http: httpx.AsyncClient,
                                             server: ServerProcess) -> None:
    admin = await _admin(http, server)
    r = await http.get("/_synapse/admin/v1/registration_tokens",
                       headers=bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"registration_tokens": []}


async def test_delete_room_and_purge_media(http: httpx.AsyncClient,
                                           server: ServerProcess) -> None:
    admin = await _admin(http, server)
    h = bearer(admin["access_token"])
    owner = await register(http, unique("owner"))
    member = await register(http, unique("member"))
    room = await create_room(http, owner["access_token"], preset="public_chat",
                             visibility="public", room_alias_name=unique("doomed"))
    await join_room(http, member["access_token"], room)
    # Non-admins cannot.
    assert_error(await http.delete(f"{ROOMS}/{quote(room)}", headers=bearer(
        owner["access_token"])), 403, "M_FORBIDDEN")
    r = await http.delete(f"{ROOMS}/{quote(room)}", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["kicked_users"]) == {owner["user_id"], member["user_id"]}
    assert len(body["local_aliases"]) == 1
    joined = await http.get("/_matrix/client/v3/joined_rooms",
                            headers=bearer(member["access_token"]))
    assert room not in joined.json()["joined_rooms"]
    public = await http.get("/_matrix/client/v3/publicRooms")
    assert room not in [c["room_id"] for c in public.json()["chunk"]]
    assert_error(await http.delete(f"{ROOMS}/!nowhere:localhost", headers=h), 404,
                 "M_NOT_FOUND")
    # Media purge by date (everything uploaded until now), admins only.
    up = await http.post("/_matrix/media/v3/upload", content=b"old bytes",
                         headers={**h, "Content-Type": "text/plain"})
    media_id = up.json()["content_uri"].rsplit("/", 1)[1]
    assert_error(await http.post("/_synapse/admin/v1/media/delete",
                                 params={"before_ts": "99999999999999"},
                                 headers=bearer(owner["access_token"])), 403, "M_FORBIDDEN")
    r = await http.post("/_synapse/admin/v1/media/delete",
                        params={"before_ts": "99999999999999"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["total"] >= 1
    gone = await http.get(f"/_matrix/client/v1/media/download/localhost/{media_id}",
                          headers=h)
    assert gone.status_code == 404


async def test_put_creates_a_missing_user(http: httpx.AsyncClient,
                                          server: ServerProcess) -> None:
    """As Synapse: PUT /v2/users/{userId} for a user that does not exist creates it (201) with
    the given password, display name and admin flag; then it is an update (200)."""
    admin = await _admin(http, server)
    h = bearer(admin["access_token"])
    new_id = f"@{unique('made')}:localhost"
    r = await http.put(user_url(new_id), headers=h, json={
        "password": "a long enough password", "displayname": "Made By Admin", "admin": True})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == new_id
    assert r.json()["admin"] is True
    assert r.json()["displayname"] == "Made By Admin"
    r = await login(http, new_id, "a long enough password")
    assert r.status_code == 200, r.text
    r = await http.get(f"/_matrix/client/v3/profile/{quote(new_id)}/displayname")
    assert r.json() == {"displayname": "Made By Admin"}
    r = await http.put(user_url(new_id), headers=h, json={"admin": False})
    assert r.status_code == 200, r.text
    assert r.json()["admin"] is False
    # Without a password the account exists but cannot log in with one.
    bare = f"@{unique('bare')}:localhost"
    r = await http.put(user_url(bare), headers=h, json={})
    assert r.status_code == 201, r.text
    assert_error(await login(http, bare, "anything at all"), 403, "M_FORBIDDEN")
    # The rules registration has; nothing is created when they fail.
    for bad, body, errcode in (("@UPPER:localhost", {}, "M_INVALID_USERNAME"),
                               (f"@{unique('short')}:localhost", {"password": "x"},
                                "M_WEAK_PASSWORD")):
        assert_error(await http.put(user_url(bad), headers=h, json=body), 400, errcode)
        assert_error(await http.get(user_url(bad), headers=h), 404, "M_NOT_FOUND")
    far = f"@{unique('far')}:elsewhere.example"
    assert_error(await http.put(user_url(far), headers=h, json={}), 400, "M_INVALID_PARAM")
