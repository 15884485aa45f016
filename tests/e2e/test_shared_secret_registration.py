"""Synapse's shared-secret registration (POST /_synapse/admin/v1/register), which
register_new_matrix_user and Complement use: one-use nonces, HMAC-SHA1 over nonce, username,
password and admin flag; off unless `registration.shared_secret` is set."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx

from tests.conftest import ServerFactory
from tests.e2e.helpers import PASSWORD, assert_error, bearer, login, unique, whoami

URL = "/_synapse/admin/v1/register"
SECRET = "a shared secret for the tests"


def _mac(nonce: str, username: str, password: str, admin: bool, secret: str = SECRET,
         user_type: str | None = None) -> str:
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type is not None:
        parts.append(user_type)
    return hmac.new(secret.encode(), "\x00".join(parts).encode(), hashlib.sha1).hexdigest()


async def _nonce(http: httpx.AsyncClient) -> str:
    r = await http.get(URL)
    assert r.status_code == 200, r.text
    nonce: str = r.json()["nonce"]
    return nonce


async def test_register_with_the_shared_secret(server_factory: ServerFactory) -> None:
    srv = server_factory("--no-rate-limits", config_text=(
        f'[registration]\nshared_secret = "{SECRET}"\n'))
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        name = unique("boss")
        nonce = await _nonce(http)
        body: dict[str, Any] = {"nonce": nonce, "username": name, "password": PASSWORD,
                                "admin": True, "displayname": "The Boss",
                                "mac": _mac(nonce, name, PASSWORD, True)}
        r = await http.post(URL, json=body)
        assert r.status_code == 200, r.text
        session = r.json()
        assert session["user_id"] == f"@{name}:localhost"
        assert (await whoami(http, session["access_token"])).status_code == 200
        # An admin, with the display name asked for, and a password that logs in.
        r = await http.get("/_synapse/admin/v2/users", headers=bearer(session["access_token"]))
        assert r.status_code == 200, r.text
        r = await http.get(f"/_matrix/client/v3/profile/@{name}:localhost/displayname")
        assert r.json() == {"displayname": "The Boss"}
        assert (await login(http, f"@{name}:localhost", PASSWORD)).status_code == 200

        # The nonce is used up; a wrong MAC or secret is refused; so is a taken name.
        assert_error(await http.post(URL, json=body), 400, "M_UNKNOWN")
        other = unique("user")
        nonce = await _nonce(http)
        r = await http.post(URL, json={"nonce": nonce, "username": other,
                                       "password": PASSWORD, "admin": True,
                                       "mac": _mac(nonce, other, PASSWORD, False)})
        assert_error(r, 403, "M_FORBIDDEN")  # signed as notadmin, asking for admin
        nonce = await _nonce(http)
        r = await http.post(URL, json={"nonce": nonce, "username": other,
                                       "password": PASSWORD,
                                       "mac": _mac(nonce, other, PASSWORD, False, "wrong")})
        assert_error(r, 403, "M_FORBIDDEN")
        nonce = await _nonce(http)
        r = await http.post(URL, json={"nonce": nonce, "username": name, "password": PASSWORD,
                                       "mac": _mac(nonce, name, PASSWORD, False)})
        assert_error(r, 400, "M_USER_IN_USE")
        # A plain user, with a user_type in the MAC (register_new_matrix_user -t bot).
        nonce = await _nonce(http)
        r = await http.post(URL, json={"nonce": nonce, "username": other, "password": PASSWORD,
                                       "user_type": "bot",
                                       "mac": _mac(nonce, other, PASSWORD, False,
                                                   user_type="bot")})
        assert r.status_code == 200, r.text
        r = await http.get("/_synapse/admin/v2/users", headers=bearer(r.json()["access_token"]))
        assert_error(r, 403, "M_FORBIDDEN")


async def test_off_without_a_secret(server_factory: ServerFactory) -> None:
    srv = server_factory("--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        assert_error(await http.get(URL), 400, "M_UNKNOWN")
        r = await http.post(URL, json={"nonce": "x", "username": "x", "password": PASSWORD,
                                       "mac": "0" * 40})
        assert_error(r, 400, "M_UNKNOWN")
