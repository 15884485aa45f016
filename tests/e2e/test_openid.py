"""OpenID tokens: requested by a user, checked by a third party through federation userinfo."""

from __future__ import annotations

import httpx

from tests.e2e.helpers import assert_error, bearer, user_and_token


async def test_request_token_then_userinfo(http: httpx.AsyncClient) -> None:
    user_id, token = await user_and_token(http)
    r = await http.post(f"/_matrix/client/v3/user/{user_id}/openid/request_token", json={},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["matrix_server_name"] == user_id.split(":", 1)[1]
    info = await http.get("/_matrix/federation/v1/openid/userinfo",
                          params={"access_token": body["access_token"]})
    assert info.status_code == 200
    assert info.json() == {"sub": user_id}
    # The access token is not an OpenID token, and a forged one is refused.
    for wrong in (token, "forged", ""):
        bad = await http.get("/_matrix/federation/v1/openid/userinfo",
                             params={"access_token": wrong})
        assert_error(bad, 401, "M_UNKNOWN_TOKEN")


async def test_only_for_oneself(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    other, _ = await user_and_token(http)
    r = await http.post(f"/_matrix/client/v3/user/{other}/openid/request_token", json={},
                        headers=bearer(token))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.post(f"/_matrix/client/v3/user/{other}/openid/request_token", json={})
    assert_error(r, 401, "M_MISSING_TOKEN")
