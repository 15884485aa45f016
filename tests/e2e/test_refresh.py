"""Refresh tokens (spec: POST /_matrix/client/v3/refresh) and expiring access tokens."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.e2e.helpers import assert_error, bearer, login, register, whoami

REFRESH = "/_matrix/client/v3/refresh"
WHOAMI = "/_matrix/client/v3/account/whoami"
LOGOUT = "/_matrix/client/v3/logout"
DEFAULT_LIFETIME_MS = 300_000  # auth.refreshable_access_token_lifetime_s default, in ms


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post(REFRESH, json={"refresh_token": refresh_token})


def assert_refreshed(r: httpx.Response, expires_in_ms: int = DEFAULT_LIFETIME_MS
                     ) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body["access_token"], str)
    assert body["access_token"]
    assert isinstance(body["refresh_token"], str)
    assert body["refresh_token"]
    assert body["expires_in_ms"] == expires_in_ms
    return body


async def test_register_with_refresh_token(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=True)
    assert isinstance(reg["refresh_token"], str)
    assert reg["refresh_token"] != reg["access_token"]
    assert reg["expires_in_ms"] == DEFAULT_LIFETIME_MS
    who = await whoami(http, reg["access_token"])
    assert who.status_code == 200, who.text


async def test_login_with_refresh_token(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await login(http, reg["user_id"], refresh_token=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["refresh_token"], str)
    assert body["refresh_token"] != body["access_token"]
    assert body["expires_in_ms"] == DEFAULT_LIFETIME_MS

    plain = await login(http, reg["user_id"])
    assert plain.status_code == 200, plain.text
    assert "refresh_token" not in plain.json()
    assert "expires_in_ms" not in plain.json()


async def test_refresh_returns_new_tokens(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=True)
    new = assert_refreshed(await refresh(http, reg["refresh_token"]))
    assert new["access_token"] != reg["access_token"]
    assert new["refresh_token"] != reg["refresh_token"]

    who = await whoami(http, new["access_token"])
    assert who.status_code == 200, who.text
    # Same session: same user and device.
    assert who.json() == {"user_id": reg["user_id"], "device_id": reg["device_id"]}


async def test_old_access_token_stops_working_after_refresh(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=True)
    assert (await whoami(http, reg["access_token"])).status_code == 200
    new = assert_refreshed(await refresh(http, reg["refresh_token"]))
    body = assert_error(await whoami(http, reg["access_token"]), 401, "M_UNKNOWN_TOKEN")
    assert body.get("soft_logout", False) is False
    assert (await whoami(http, new["access_token"])).status_code == 200


async def test_old_refresh_token_revoked_once_new_access_token_used(
    http: httpx.AsyncClient,
) -> None:
    reg = await register(http, refresh_token=True)
    new = assert_refreshed(await refresh(http, reg["refresh_token"]))
    assert (await whoami(http, new["access_token"])).status_code == 200
    assert_error(await refresh(http, reg["refresh_token"]), 401, "M_UNKNOWN_TOKEN")
    # The new refresh token is unaffected.
    newer = assert_refreshed(await refresh(http, new["refresh_token"]))
    assert (await whoami(http, newer["access_token"])).status_code == 200


async def test_old_refresh_token_usable_until_new_tokens_used(http: httpx.AsyncClient) -> None:
    # A client whose /refresh response was lost retries with the old refresh token.
    reg = await register(http, refresh_token=True)
    lost = assert_refreshed(await refresh(http, reg["refresh_token"]))
    retry = assert_refreshed(await refresh(http, reg["refresh_token"]))
    assert retry["access_token"] != lost["access_token"]
    assert retry["refresh_token"] != lost["refresh_token"]

    who = await whoami(http, retry["access_token"])
    assert who.status_code == 200, who.text
    assert who.json() == {"user_id": reg["user_id"], "device_id": reg["device_id"]}
    # Now that the newest access token was used, the old refresh token is revoked.
    assert_error(await refresh(http, reg["refresh_token"]), 401, "M_UNKNOWN_TOKEN")
    assert_refreshed(await refresh(http, retry["refresh_token"]))


async def test_old_refresh_token_revoked_once_new_refresh_token_used(
    http: httpx.AsyncClient,
) -> None:
    reg = await register(http, refresh_token=True)
    second = assert_refreshed(await refresh(http, reg["refresh_token"]))
    third = assert_refreshed(await refresh(http, second["refresh_token"]))
    assert_error(await refresh(http, reg["refresh_token"]), 401, "M_UNKNOWN_TOKEN")
    who = await whoami(http, third["access_token"])
    assert who.json() == {"user_id": reg["user_id"], "device_id": reg["device_id"]}


async def test_unknown_refresh_token(http: httpx.AsyncClient) -> None:
    assert_error(await refresh(http, "tsrt_not_a_real_token"), 401, "M_UNKNOWN_TOKEN")


async def test_access_token_is_not_a_refresh_token(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=True)
    assert_error(await refresh(http, reg["access_token"]), 401, "M_UNKNOWN_TOKEN")
    assert (await whoami(http, reg["access_token"])).status_code == 200


async def test_refresh_missing_field(http: httpx.AsyncClient) -> None:
    assert_error(await http.post(REFRESH, json={}), 400, "M_MISSING_PARAM")


async def test_refresh_wrong_field_type(http: httpx.AsyncClient) -> None:
    assert_error(await http.post(REFRESH, json={"refresh_token": 42}), 400, "M_BAD_JSON")


async def test_refresh_token_revoked_by_logout(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=True)
    r = await http.post(LOGOUT, headers=bearer(reg["access_token"]), json={})
    assert r.status_code == 200, r.text
    assert_error(await refresh(http, reg["refresh_token"]), 401, "M_UNKNOWN_TOKEN")


async def test_expired_access_token_is_soft_logged_out(server_factory) -> None:
    srv = server_factory(
        "--open-registration",
        config_text="[auth]\nrefreshable_access_token_lifetime_s = 1\n",
    )
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        expiring = await register(http, refresh_token=True)
        assert expiring["expires_in_ms"] == 1000
        permanent = await register(http)
        assert "expires_in_ms" not in permanent
        permanent_login = await login(http, permanent["user_id"])
        assert permanent_login.status_code == 200, permanent_login.text
        assert (await whoami(http, expiring["access_token"])).status_code == 200

        await trio.sleep(1.5)

        body = assert_error(await whoami(http, expiring["access_token"]), 401,
                            "M_UNKNOWN_TOKEN")
        assert body["soft_logout"] is True
        # Tokens issued without a refresh token never expire.
        for token in (permanent["access_token"], permanent_login.json()["access_token"]):
            who = await whoami(http, token)
            assert who.status_code == 200, who.text

        new = assert_refreshed(await refresh(http, expiring["refresh_token"]),
                               expires_in_ms=1000)
        who = await whoami(http, new["access_token"])
        assert who.status_code == 200, who.text
        assert who.json() == {"user_id": expiring["user_id"],
                              "device_id": expiring["device_id"]}


async def test_logout_accepts_an_expired_token(server_factory) -> None:
    srv = server_factory("--open-registration",
                         config_text="[auth]\nrefreshable_access_token_lifetime_s = 1\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        reg = await register(client, refresh_token=True)
        await trio.sleep(1.5)
        r = await client.get("/_matrix/client/v3/account/whoami",
                             headers=bearer(reg["access_token"]))
        assert r.status_code == 401
        assert r.json()["soft_logout"] is True
        r = await client.post("/_matrix/client/v3/logout", headers=bearer(reg["access_token"]))
        assert r.status_code == 200, r.text
        # The device is gone, so its refresh token is gone too.
        r = await client.post("/_matrix/client/v3/refresh",
                              json={"refresh_token": reg["refresh_token"]})
        assert r.status_code == 401
        assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
