"""Login, access-token authentication, logout, logout/all, deactivation, login rate limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.e2e.helpers import (
    PASSWORD,
    assert_error,
    bearer,
    login,
    password_auth,
    register,
    unique,
    whoami,
)

LOGIN = "/_matrix/client/v3/login"
LOGOUT = "/_matrix/client/v3/logout"
LOGOUT_ALL = "/_matrix/client/v3/logout/all"
WHOAMI = "/_matrix/client/v3/account/whoami"
DEVICES = "/_matrix/client/v3/devices"
DEACTIVATE = "/_matrix/client/v3/account/deactivate"
REGISTER = "/_matrix/client/v3/register"
AVAILABLE = "/_matrix/client/v3/register/available"


async def device_ids(http: httpx.AsyncClient, token: str) -> list[str]:
    r = await http.get(DEVICES, headers=bearer(token))
    assert r.status_code == 200, r.text
    return sorted(d["device_id"] for d in r.json()["devices"])


def assert_logged_in(r: httpx.Response, user_id: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["user_id"] == user_id
    assert isinstance(body["access_token"], str)
    assert body["access_token"]
    assert isinstance(body["device_id"], str)
    assert body["device_id"]
    return body


# -- GET /login -----------------------------------------------------------------------------------


async def test_login_flows(http: httpx.AsyncClient) -> None:
    r = await http.get(LOGIN)
    assert r.status_code == 200, r.text
    flows = r.json()["flows"]
    assert isinstance(flows, list)
    assert all(isinstance(f["type"], str) for f in flows)
    assert "m.login.password" in [f["type"] for f in flows]


# -- POST /login ----------------------------------------------------------------------------------


async def test_login_by_localpart(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    localpart = reg["user_id"][1:].split(":")[0]
    body = assert_logged_in(await login(http, localpart), reg["user_id"])
    assert body["device_id"] != reg["device_id"]
    assert body["access_token"] != reg["access_token"]
    assert "refresh_token" not in body
    assert "expires_in_ms" not in body
    who = await whoami(http, body["access_token"])
    assert who.status_code == 200, who.text
    assert who.json() == {"user_id": reg["user_id"], "device_id": body["device_id"]}


async def test_login_by_full_user_id(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    body = assert_logged_in(await login(http, reg["user_id"]), reg["user_id"])
    assert (await whoami(http, body["access_token"])).json()["user_id"] == reg["user_id"]


async def test_login_by_deprecated_user_field(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    localpart = reg["user_id"][1:].split(":")[0]
    for user in (localpart, reg["user_id"]):
        r = await http.post(LOGIN, json={"type": "m.login.password", "user": user,
                                         "password": PASSWORD})
        body = assert_logged_in(r, reg["user_id"])
        assert (await whoami(http, body["access_token"])).status_code == 200


async def test_login_localpart_is_case_insensitive(http: httpx.AsyncClient) -> None:
    name = unique("case")
    reg = await register(http, name)
    assert_logged_in(await login(http, name.upper()), reg["user_id"])
    assert_logged_in(await login(http, f"@{name.upper()}:localhost"), reg["user_id"])


async def test_login_wrong_password(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await login(http, reg["user_id"], password="not the password")
    assert_error(r, 403, "M_FORBIDDEN")


async def test_login_unknown_user(http: httpx.AsyncClient) -> None:
    r = await login(http, unique("nobody"))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await login(http, "@someone:elsewhere.example")
    assert_error(r, 403, "M_FORBIDDEN")


async def test_login_unknown_type(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(LOGIN, json={
        "type": "m.login.bogus",
        "identifier": {"type": "m.id.user", "user": reg["user_id"]},
        "password": PASSWORD,
    })
    assert_error(r, 400, "M_UNKNOWN")


async def test_login_unsupported_identifier_type(http: httpx.AsyncClient) -> None:
    r = await http.post(LOGIN, json={
        "type": "m.login.password",
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"},
        "password": PASSWORD,
    })
    assert_error(r, 400, "M_UNKNOWN")


async def test_login_missing_type(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(LOGIN, json={"identifier": {"type": "m.id.user", "user": reg["user_id"]},
                                     "password": PASSWORD})
    assert_error(r, 400, "M_MISSING_PARAM")


async def test_login_not_json(http: httpx.AsyncClient) -> None:
    r = await http.post(LOGIN, content="{", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "M_NOT_JSON")


async def test_login_with_device_id_creates_then_reuses_it(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    first = assert_logged_in(
        await login(http, reg["user_id"], device_id="LAPTOP",
                    initial_device_display_name="Laptop"),
        reg["user_id"],
    )
    assert first["device_id"] == "LAPTOP"
    assert (await whoami(http, first["access_token"])).json()["device_id"] == "LAPTOP"
    assert await device_ids(http, reg["access_token"]) == sorted([reg["device_id"], "LAPTOP"])

    second = assert_logged_in(
        await login(http, reg["user_id"], device_id="LAPTOP",
                    initial_device_display_name="Ignored for a known device"),
        reg["user_id"],
    )
    assert second["device_id"] == "LAPTOP"
    assert second["access_token"] != first["access_token"]
    who = await whoami(http, second["access_token"])
    assert who.json() == {"user_id": reg["user_id"], "device_id": "LAPTOP"}

    r = await http.get(DEVICES, headers=bearer(reg["access_token"]))
    devices = {d["device_id"]: d for d in r.json()["devices"]}
    assert sorted(devices) == sorted([reg["device_id"], "LAPTOP"])
    assert devices["LAPTOP"]["display_name"] == "Laptop"


# -- access tokens --------------------------------------------------------------------------------


async def test_missing_token(http: httpx.AsyncClient) -> None:
    assert_error(await http.get(WHOAMI), 401, "M_MISSING_TOKEN")


async def test_unknown_token(http: httpx.AsyncClient) -> None:
    body = assert_error(await whoami(http, "tsat_not_a_real_token"), 401, "M_UNKNOWN_TOKEN")
    assert body.get("soft_logout", False) is False


async def test_token_in_query_string_is_not_accepted(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.get(WHOAMI, params={"access_token": reg["access_token"]})
    assert_error(r, 401, "M_MISSING_TOKEN")


@pytest.mark.parametrize("header", ["Basic x", "Bearer", "Token abc"])
async def test_non_bearer_authorization(http: httpx.AsyncClient, header: str) -> None:
    r = await http.get(WHOAMI, headers={"Authorization": header})
    assert_error(r, 401, "M_MISSING_TOKEN")


# -- logout ---------------------------------------------------------------------------------------


async def test_logout(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    other = assert_logged_in(await login(http, reg["user_id"]), reg["user_id"])
    assert await device_ids(http, reg["access_token"]) == sorted(
        [reg["device_id"], other["device_id"]]
    )

    r = await http.post(LOGOUT, headers=bearer(other["access_token"]), json={})
    assert r.status_code == 200, r.text
    assert r.json() == {}

    assert_error(await whoami(http, other["access_token"]), 401, "M_UNKNOWN_TOKEN")
    r = await http.post(LOGOUT, headers=bearer(other["access_token"]), json={})
    assert_error(r, 401, "M_UNKNOWN_TOKEN")
    # The device is gone; the other session is untouched.
    who = await whoami(http, reg["access_token"])
    assert who.status_code == 200, who.text
    assert who.json()["device_id"] == reg["device_id"]
    assert await device_ids(http, reg["access_token"]) == [reg["device_id"]]


async def test_logout_without_token(http: httpx.AsyncClient) -> None:
    assert_error(await http.post(LOGOUT, json={}), 401, "M_MISSING_TOKEN")


async def test_logout_all(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    bystander = await register(http)
    sessions = [reg["access_token"]]
    for _ in range(2):
        sessions.append(assert_logged_in(await login(http, reg["user_id"]),
                                         reg["user_id"])["access_token"])

    r = await http.post(LOGOUT_ALL, headers=bearer(sessions[1]), json={})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    for token in sessions:
        assert_error(await whoami(http, token), 401, "M_UNKNOWN_TOKEN")
    # Other users are not affected.
    assert (await whoami(http, bystander["access_token"])).status_code == 200

    # The account itself still works, with only the new device.
    fresh = assert_logged_in(await login(http, reg["user_id"]), reg["user_id"])
    assert await device_ids(http, fresh["access_token"]) == [fresh["device_id"]]


# -- deactivation ---------------------------------------------------------------------------------


async def test_deactivated_account_cannot_log_in(http: httpx.AsyncClient) -> None:
    name = unique("gone")
    reg = await register(http, name)
    token = reg["access_token"]
    first = await http.post(DEACTIVATE, headers=bearer(token), json={})
    assert first.status_code == 401, first.text
    ui = first.json()
    assert ui["flows"] == [{"stages": ["m.login.password"]}]
    session = ui["session"]

    r = await http.post(DEACTIVATE, headers=bearer(token),
                        json={"auth": password_auth(reg["user_id"], session=session)})
    assert r.status_code == 200, r.text
    assert r.json()["id_server_unbind_result"] in ("success", "no-support")

    assert_error(await login(http, name), 403, "M_USER_DEACTIVATED")
    assert_error(await whoami(http, token), 401, "M_UNKNOWN_TOKEN")
    # The user ID is never handed out again.
    r = await http.post(REGISTER, json={"username": name, "password": PASSWORD,
                                        "auth": {"type": "m.login.dummy"}})
    assert_error(r, 400, "M_USER_IN_USE")
    assert_error(await http.get(AVAILABLE, params={"username": name}), 400, "M_USER_IN_USE")


async def test_deactivation_needs_the_right_password(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    first = await http.post(DEACTIVATE, headers=bearer(reg["access_token"]), json={})
    session = first.json()["session"]
    r = await http.post(
        DEACTIVATE, headers=bearer(reg["access_token"]),
        json={"auth": password_auth(reg["user_id"], password="wrong password", session=session)},
    )
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    assert r.json()["session"] == session
    assert (await whoami(http, reg["access_token"])).status_code == 200
    assert_logged_in(await login(http, reg["user_id"]), reg["user_id"])


# -- rate limits ----------------------------------------------------------------------------------


async def test_login_rate_limited_per_address(server_factory) -> None:
    srv = server_factory(
        "--open-registration",
        config_text="[rate_limits]\nlogin_per_address = { per_second = 0.01, burst = 3 }\n",
    )
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        reg = await register(http)
        for _ in range(3):
            assert_logged_in(await login(http, reg["user_id"]), reg["user_id"])
        limited = await login(http, reg["user_id"])
        body = assert_error(limited, 429, "M_LIMIT_EXCEEDED")
        # Both forms of the wait: retry_after_ms, and the Retry-After header in whole seconds.
        assert int(limited.headers["Retry-After"]) == -(-body["retry_after_ms"] // 1000)
        assert isinstance(body["retry_after_ms"], int)
        assert not isinstance(body["retry_after_ms"], bool)
        assert body["retry_after_ms"] > 0
        # Any login from this address is limited, whoever the user.
        other = await register(http)
        assert_error(await login(http, other["user_id"]), 429, "M_LIMIT_EXCEEDED")


async def test_login_failures_rate_limited_per_account(server_factory) -> None:
    srv = server_factory(
        "--open-registration",
        config_text=(
            "[rate_limits]\n"
            "login_per_address = { per_second = 100, burst = 100 }\n"
            "login_failures_per_account = { per_second = 0.01, burst = 2 }\n"
        ),
    )
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        victim = await register(http)
        other = await register(http)
        for _ in range(2):
            assert_error(await login(http, victim["user_id"], password="wrong password"), 403,
                         "M_FORBIDDEN")
        body = assert_error(await login(http, victim["user_id"]), 429, "M_LIMIT_EXCEEDED")
        assert isinstance(body["retry_after_ms"], int)
        assert body["retry_after_ms"] > 0
        # Only that account is limited.
        assert_logged_in(await login(http, other["user_id"]), other["user_id"])
        assert (await whoami(http, victim["access_token"])).status_code == 200


async def test_no_rate_limits_on_wrong_passwords(http: httpx.AsyncClient) -> None:
    # The shared server runs with --no-rate-limits.
    reg = await register(http)
    results: list[httpx.Response] = []

    async def attempt() -> None:
        results.append(await login(http, reg["user_id"], password="wrong password"))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(attempt)

    assert len(results) == 20
    for r in results:
        assert_error(r, 403, "M_FORBIDDEN")
    assert_logged_in(await login(http, reg["user_id"]), reg["user_id"])
