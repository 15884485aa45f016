"""POST /v1/login/get_token (UIA-protected) and logging in with m.login.token."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import assert_error, bearer, password_auth, register, whoami

GET_TOKEN = "/_matrix/client/v1/login/get_token"
LOGIN = "/_matrix/client/v3/login"


async def _get_token(http: httpx.AsyncClient, reg: dict[str, Any]) -> dict[str, Any]:
    """Mint a login token, completing the password UIA if asked."""
    token = reg["access_token"]
    r = await http.post(GET_TOKEN, json={}, headers=bearer(token))
    if r.status_code == 401:
        session = r.json()["session"]
        r = await http.post(GET_TOKEN, headers=bearer(token),
                            json={"auth": password_auth(reg["user_id"], session=session)})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_login_flows_advertise_token_login(http: httpx.AsyncClient) -> None:
    flows = (await http.get(LOGIN)).json()["flows"]
    assert {"type": "m.login.token", "get_login_token": True} in flows
    assert {"type": "m.login.password"} in flows


async def test_capability_is_advertised(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    caps = (await http.get("/_matrix/client/v3/capabilities",
                           headers=bearer(reg["access_token"]))).json()["capabilities"]
    assert caps["m.get_login_token"] == {"enabled": True}
    assert "m.account_moderation" not in caps


async def test_get_token_requires_uia_then_logs_in_once(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(GET_TOKEN, json={}, headers=bearer(reg["access_token"]))
    assert r.status_code == 401, r.text
    assert r.json()["flows"] == [{"stages": ["m.login.password"]}]

    minted = await _get_token(http, reg)
    assert isinstance(minted["login_token"], str)
    assert 0 < minted["expires_in_ms"] <= 120_000

    r = await http.post(LOGIN, json={"type": "m.login.token", "token": minted["login_token"]})
    assert r.status_code == 200, r.text
    session = r.json()
    assert session["user_id"] == reg["user_id"]
    assert session["device_id"] != reg["device_id"]
    assert (await whoami(http, session["access_token"])).json()["user_id"] == reg["user_id"]

    # Single use.
    r = await http.post(LOGIN, json={"type": "m.login.token", "token": minted["login_token"]})
    assert_error(r, 403, "M_FORBIDDEN")


async def test_fresh_reauth_skips_uia_for_a_while(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    await _get_token(http, reg)
    r = await http.post(GET_TOKEN, json={}, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text


async def test_wrong_password_is_refused(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(GET_TOKEN, json={}, headers=bearer(reg["access_token"]))
    session = r.json()["session"]
    r = await http.post(GET_TOKEN, headers=bearer(reg["access_token"]),
                        json={"auth": password_auth(reg["user_id"], "wrong pass", session)})
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_FORBIDDEN"


async def test_bad_or_missing_token_is_refused(http: httpx.AsyncClient) -> None:
    assert_error(await http.post(LOGIN, json={"type": "m.login.token", "token": "nope"}),
                 403, "M_FORBIDDEN")
    assert_error(await http.post(LOGIN, json={"type": "m.login.token"}), 400, "M_MISSING_PARAM")


async def test_get_token_needs_authentication(http: httpx.AsyncClient) -> None:
    r = await http.post(GET_TOKEN, json={})
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
