"""GET /voip/turnServer: coturn use-auth-secret credentials, or {} when unconfigured."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx

from tests.conftest import ServerFactory
from tests.e2e.helpers import bearer, register

TURN = "/_matrix/client/v3/voip/turnServer"
SECRET = "coturn-static-auth-secret"
CONFIG = f"""
[registration]
open = true

[voip]
turn_uris = ["turn:turn.example.org?transport=udp", "turns:turn.example.org:5349"]
turn_shared_secret = "{SECRET}"
turn_user_lifetime_s = 3600
"""


async def test_unconfigured_answers_empty_object(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.get(TURN, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {}


async def test_needs_authentication(http: httpx.AsyncClient) -> None:
    r = await http.get(TURN)
    assert r.status_code == 401


async def test_configured_credentials_match_coturn(server_factory: ServerFactory) -> None:
    srv = server_factory(config_text=CONFIG)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        reg = await register(http)
        before = int(time.time())
        r = await http.get(TURN, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["uris"] == ["turn:turn.example.org?transport=udp", "turns:turn.example.org:5349"]
    assert body["ttl"] == 3600
    expiry, user_id = body["username"].split(":", 1)
    assert user_id == reg["user_id"]
    assert before + 3600 <= int(expiry) <= int(time.time()) + 3600
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), body["username"].encode(), hashlib.sha1).digest()).decode()
    assert body["password"] == expected
