"""Account management: password change, deactivation, whoami, capabilities."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import PASSWORD, bearer, login, password_auth, register

PASSWORD_URL = "/_matrix/client/v3/account/password"
DEACTIVATE = "/_matrix/client/v3/account/deactivate"
WHOAMI = "/_matrix/client/v3/account/whoami"
CAPABILITIES = "/_matrix/client/v3/capabilities"
NEW_PASSWORD = "a brand new passphrase"


async def _login_ok(http: httpx.AsyncClient, user: str, password: str = PASSWORD
                    ) -> dict[str, Any]:
    r = await login(http, user, password)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _whoami_status(http: httpx.AsyncClient, token: str) -> tuple[int, dict[str, Any]]:
    r = await http.get(WHOAMI, headers=bearer(token))
    body: dict[str, Any] = r.json()
    return r.status_code, body


async def test_change_password_with_uia(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    token = reg["access_token"]
    body: dict[str, Any] = {"new_password": NEW_PASSWORD}

    r = await http.post(PASSWORD_URL, json=body, headers=bearer(token))
    assert r.status_code == 401, r.text
    challenge = r.json()
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    session = challenge["session"]
    assert isinstance(session, str)

    r = await http.post(
        PASSWORD_URL, headers=bearer(token),
        json={**body, "auth": password_auth(reg["user_id"], PASSWORD, session)},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}

    r = await login(http, reg["user_id"], PASSWORD)
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    await _login_ok(http, reg["user_id"], NEW_PASSWORD)


async def test_change_password_wrong_current_password(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(
        PASSWORD_URL, headers=bearer(reg["access_token"]),
        json={"new_password": NEW_PASSWORD,
              "auth": password_auth(reg["user_id"], "not my password")},
    )
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    assert r.json()["flows"] == [{"stages": ["m.login.password"]}]
    await _login_ok(http, reg["user_id"], PASSWORD)
    r = await login(http, reg["user_id"], NEW_PASSWORD)
    assert r.status_code == 403, r.text


async def test_change_password_logs_out_other_devices_by_default(
    http: httpx.AsyncClient,
) -> None:
    reg = await register(http)
    other = await _login_ok(http, reg["user_id"])
    r = await http.post(
        PASSWORD_URL, headers=bearer(reg["access_token"]),
        json={"new_password": NEW_PASSWORD, "auth": password_auth(reg["user_id"])},
    )
    assert r.status_code == 200, r.text

    status, body = await _whoami_status(http, other["access_token"])
    assert status == 401, body
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    status, body = await _whoami_status(http, reg["access_token"])
    assert status == 200, body
    assert body["device_id"] == reg["device_id"]

    r = await http.get("/_matrix/client/v3/devices", headers=bearer(reg["access_token"]))
    assert [d["device_id"] for d in r.json()["devices"]] == [reg["device_id"]]


async def test_change_password_can_keep_other_devices(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    other = await _login_ok(http, reg["user_id"])
    r = await http.post(
        PASSWORD_URL, headers=bearer(reg["access_token"]),
        json={"new_password": NEW_PASSWORD, "logout_devices": False,
              "auth": password_auth(reg["user_id"])},
    )
    assert r.status_code == 200, r.text
    for token in (reg["access_token"], other["access_token"]):
        status, body = await _whoami_status(http, token)
        assert status == 200, body
        assert body["user_id"] == reg["user_id"]
    await _login_ok(http, reg["user_id"], NEW_PASSWORD)


async def test_change_password_weak(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(
        PASSWORD_URL, headers=bearer(reg["access_token"]),
        json={"new_password": "abc", "auth": password_auth(reg["user_id"])},
    )
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_WEAK_PASSWORD"
    await _login_ok(http, reg["user_id"], PASSWORD)


async def test_change_password_missing_new_password(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(PASSWORD_URL, headers=bearer(reg["access_token"]),
                        json={"auth": password_auth(reg["user_id"])})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_MISSING_PARAM"
    await _login_ok(http, reg["user_id"], PASSWORD)


async def test_change_password_wrong_types(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    for body in ({"new_password": 12345678}, {"new_password": NEW_PASSWORD,
                                               "logout_devices": "no"}):
        r = await http.post(PASSWORD_URL, headers=bearer(reg["access_token"]),
                            json={**body, "auth": password_auth(reg["user_id"])})
        assert r.status_code == 400, (body, r.text)
        assert r.json()["errcode"] == "M_BAD_JSON", (body, r.text)
    await _login_ok(http, reg["user_id"], PASSWORD)


async def test_change_password_uia_as_someone_else_fails(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    # Alice authenticates the stage with Bob's (correct) credentials.
    r = await http.post(
        PASSWORD_URL, headers=bearer(alice["access_token"]),
        json={"new_password": NEW_PASSWORD, "auth": password_auth(bob["user_id"])},
    )
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    assert r.json()["flows"] == [{"stages": ["m.login.password"]}]
    await _login_ok(http, alice["user_id"], PASSWORD)
    await _login_ok(http, bob["user_id"], PASSWORD)


async def test_change_password_needs_token(http: httpx.AsyncClient) -> None:
    r = await http.post(PASSWORD_URL, json={"new_password": NEW_PASSWORD})
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_MISSING_TOKEN"


async def test_deactivate(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    uid = reg["user_id"]
    other = await _login_ok(http, uid)
    r = await http.put(f"/_matrix/client/v3/profile/{uid}/com.example.foo",
                       json={"com.example.foo": 1}, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text

    r = await http.post(DEACTIVATE, json={}, headers=bearer(reg["access_token"]))
    assert r.status_code == 401, r.text
    session = r.json()["session"]
    assert r.json()["flows"] == [{"stages": ["m.login.password"]}]

    r = await http.post(DEACTIVATE, headers=bearer(reg["access_token"]),
                        json={"auth": password_auth(uid, PASSWORD, session)})
    assert r.status_code == 200, r.text
    assert r.json() == {"id_server_unbind_result": "success"}

    for key in ("displayname", "com.example.foo"):
        r = await http.get(f"/_matrix/client/v3/profile/{uid}/{key}")
        assert r.status_code == 404, (key, r.text)
        assert r.json()["errcode"] == "M_NOT_FOUND"
    for token in (reg["access_token"], other["access_token"]):
        status, body = await _whoami_status(http, token)
        assert status == 401, body
        assert body["errcode"] == "M_UNKNOWN_TOKEN"
    r = await login(http, uid, PASSWORD)
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_USER_DEACTIVATED"
    # The user ID stays taken.
    r = await http.get("/_matrix/client/v3/register/available",
                       params={"username": uid[1:].split(":")[0]})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_USER_IN_USE"


async def test_deactivate_wrong_password(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(DEACTIVATE, headers=bearer(reg["access_token"]),
                        json={"auth": password_auth(reg["user_id"], "wrong wrong wrong")})
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    status, body = await _whoami_status(http, reg["access_token"])
    assert status == 200, body


async def test_deactivate_needs_token(http: httpx.AsyncClient) -> None:
    r = await http.post(DEACTIVATE, json={})
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_MISSING_TOKEN"


async def test_whoami(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    logged = await _login_ok(http, reg["user_id"])
    status, body = await _whoami_status(http, logged["access_token"])
    assert status == 200, body
    assert body == {"user_id": reg["user_id"], "device_id": logged["device_id"]}
    assert logged["device_id"] != reg["device_id"]


async def test_whoami_errors(http: httpx.AsyncClient) -> None:
    r = await http.get(WHOAMI)
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
    status, body = await _whoami_status(http, "garbage")
    assert status == 401, body
    assert body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_capabilities(http: httpx.AsyncClient) -> None:
    r = await http.get(CAPABILITIES)
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
    reg = await register(http)
    r = await http.get(CAPABILITIES, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    caps = r.json()["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    for name, cap in caps.items():
        if name.startswith("m.") and name != "m.room_versions":
            assert isinstance(cap["enabled"], bool), name
