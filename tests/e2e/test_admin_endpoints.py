"""Server administration: whois, suspension and locking (spec v1.18); non-admins refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.cli_process import run_cli
from tests.e2e.helpers import (
    assert_error,
    bearer,
    create_room,
    login,
    register,
    room_path,
    send_text,
    unique,
    whoami,
)
from tests.server_process import ServerProcess


def whois_url(user_id: str) -> str:
    return f"/_matrix/client/v3/admin/whois/{quote(user_id)}"


def suspend_url(user_id: str) -> str:
    return f"/_matrix/client/v1/admin/suspend/{quote(user_id)}"


def lock_url(user_id: str) -> str:
    return f"/_matrix/client/v1/admin/lock/{quote(user_id)}"


async def _admin(http: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    reg = await register(http, unique("admin"))
    out = await run_cli("make-admin", reg["user_id"], "--data-dir", server.data_dir)
    assert out.returncode == 0, out.stderr
    return reg


async def test_whois_lists_sessions_for_admin_and_self(
        http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    user = await register(http)
    await http.get("/_matrix/client/v3/account/whoami",
                   headers={**bearer(user["access_token"]), "User-Agent": "whois-test/1.0"})
    for token in (admin["access_token"], user["access_token"]):
        r = await http.get(whois_url(user["user_id"]), headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user_id"] == user["user_id"]
        [conn] = body["devices"][user["device_id"]]["sessions"][0]["connections"]
        assert conn["ip"] == "127.0.0.1"
        assert isinstance(conn["last_seen"], int)
        assert "user_agent" in conn


async def test_whois_refuses_other_users(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    r = await http.get(whois_url(bob["user_id"]), headers=bearer(alice["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")


async def test_admin_capability(http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    caps = (await http.get("/_matrix/client/v3/capabilities",
                           headers=bearer(admin["access_token"]))).json()["capabilities"]
    assert caps["m.account_moderation"] == {"suspend": True, "lock": True}


async def test_non_admins_cannot_suspend_or_lock(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    headers = bearer(alice["access_token"])
    for url, key in ((suspend_url(bob["user_id"]), "suspended"),
                     (lock_url(bob["user_id"]), "locked")):
        assert_error(await http.get(url, headers=headers), 403, "M_FORBIDDEN")
        assert_error(await http.put(url, json={key: True}, headers=headers), 403, "M_FORBIDDEN")


async def test_admin_errors(http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    headers = bearer(admin["access_token"])
    assert_error(await http.get(suspend_url("@nobody-here:localhost"), headers=headers),
                 404, "M_NOT_FOUND")
    assert_error(await http.get(lock_url("@someone:elsewhere.example"), headers=headers),
                 400, "M_INVALID_PARAM")
    assert_error(await http.put(suspend_url(admin["user_id"]), json={"suspended": True},
                                headers=headers), 403, "M_FORBIDDEN")
    assert_error(await http.put(suspend_url(admin["user_id"]), json={}, headers=headers),
                 400, "M_MISSING_PARAM")


async def test_suspended_user_can_read_and_leave_only(
        http: httpx.AsyncClient, server: ServerProcess) -> None:
    admin = await _admin(http, server)
    user = await register(http)
    token = user["access_token"]
    room_id = await create_room(http, token)
    await send_text(http, token, room_id, "before")
    other_room = await create_room(http, admin["access_token"], preset="public_chat")

    url = suspend_url(user["user_id"])
    r = await http.put(url, json={"suspended": True}, headers=bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"suspended": True}
    r = await http.get(url, headers=bearer(admin["access_token"]))
    assert r.json() == {"suspended": True}

    h = bearer(token)
    assert_error(await http.put(room_path(room_id, "send", "m.room.message", "t1"), headers=h,
                                json={"msgtype": "m.text", "body": "no"}), 403, "M_USER_SUSPENDED")
    assert_error(await http.post("/_matrix/client/v3/createRoom", json={}, headers=h),
                 403, "M_USER_SUSPENDED")
    assert_error(await http.post(f"/_matrix/client/v3/join/{quote(other_room)}", json={},
                                 headers=h), 403, "M_USER_SUSPENDED")
    assert_error(await http.post(room_path(room_id, "invite"), headers=h,
                                 json={"user_id": admin["user_id"]}), 403, "M_USER_SUSPENDED")
    assert_error(await http.put(
        f"/_matrix/client/v3/profile/{quote(user['user_id'])}/displayname", headers=h,
        json={"displayname": "x"}), 403, "M_USER_SUSPENDED")
    # Reading still works, and a new login is suspended too.
    r = await http.get(room_path(room_id, "messages"), params={"dir": "b"}, headers=h)
    assert r.status_code == 200, r.text
    relogin = (await login(http, user["user_id"])).json()
    assert_error(await http.post("/_matrix/client/v3/createRoom", json={},
                                 headers=bearer(relogin["access_token"])), 403, "M_USER_SUSPENDED")
    r = await http.post(room_path(room_id, "leave"), json={}, headers=h)
    assert r.status_code == 200, r.text

    r = await http.put(url, json={"suspended": False}, headers=bearer(admin["access_token"]))
    assert r.json() == {"suspended": False}
    r = await http.post("/_matrix/client/v3/createRoom", json={}, headers=h)
    assert r.status_code == 200, r.text


async def test_locked_user_gets_soft_logout(http: httpx.AsyncClient,
                                            server: ServerProcess) -> None:
    admin = await _admin(http, server)
    user = await register(http)
    url = lock_url(user["user_id"])
    r = await http.put(url, json={"locked": True}, headers=bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"locked": True}
    assert (await http.get(url, headers=bearer(admin["access_token"]))).json() == {"locked": True}

    body = assert_error(await whoami(http, user["access_token"]), 401, "M_USER_LOCKED")
    assert body["soft_logout"] is True
    r = await login(http, user["user_id"])
    assert_error(r, 401, "M_USER_LOCKED")

    r = await http.put(url, json={"locked": False}, headers=bearer(admin["access_token"]))
    assert r.json() == {"locked": False}
    # The token was not invalidated: it works again once unlocked.
    assert (await whoami(http, user["access_token"])).status_code == 200
