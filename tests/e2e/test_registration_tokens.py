"""Registration tokens made through the admin API (Synapse's /_synapse/admin/v1/
registration_tokens) on a server with closed registration: the token flow, uses_allowed and
expiry enforced (also under concurrent registrations), and the admin endpoints."""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.cli_process import run_cli
from tests.e2e.helpers import PASSWORD, assert_error, bearer, login, unique
from tests.server_process import ServerProcess

TOKENS = "/_synapse/admin/v1/registration_tokens"
REGISTER = "/_matrix/client/v3/register"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


async def _admin_token(http: httpx.AsyncClient, srv: ServerProcess) -> dict[str, str]:
    name = unique("root")
    out = await run_cli("register-user", name, "--admin", "--data-dir", srv.data_dir,
                        stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    r = await login(http, f"@{name}:localhost", PASSWORD)
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


async def _register(http: httpx.AsyncClient, token: str | None) -> httpx.Response:
    body: dict[str, Any] = {"username": unique("u"), "password": PASSWORD}
    if token is not None:
        body["auth"] = {"type": "m.login.registration_token", "token": token}
    return await http.post(REGISTER, json=body)


async def _valid(http: httpx.AsyncClient, token: str) -> bool:
    r = await http.get(VALIDITY, params={"token": token})
    assert r.status_code == 200, r.text
    valid: bool = r.json()["valid"]
    return valid


async def test_uses_allowed_and_expiry(server_factory: ServerFactory) -> None:
    srv = server_factory("--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        # Closed, and no token anywhere: registration is simply off.
        assert_error(await _register(http, None), 403, "M_FORBIDDEN")
        admin = await _admin_token(http, srv)
        r = await http.post(f"{TOKENS}/new", json={"token": "family_2026", "uses_allowed": 2},
                            headers=admin)
        assert r.status_code == 200, r.text
        assert r.json() == {"token": "family_2026", "uses_allowed": 2, "pending": 0,
                            "completed": 0, "expiry_time": None}
        r = await _register(http, None)
        assert r.status_code == 401, r.text
        assert r.json()["flows"] == [{"stages": ["m.login.registration_token"]}]
        assert await _valid(http, "family_2026")
        assert not await _valid(http, "family_2027")
        for _ in range(2):
            r = await _register(http, "family_2026")
            assert r.status_code == 200, r.text
        assert not await _valid(http, "family_2026")
        assert_error(await _register(http, "family_2026"), 401, "M_UNAUTHORIZED")
        r = await http.get(f"{TOKENS}/family_2026", headers=admin)
        assert r.json()["completed"] == 2
        # Raising the limit makes it usable again; null means unlimited.
        r = await http.put(f"{TOKENS}/family_2026", json={"uses_allowed": None}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["uses_allowed"] is None
        assert await _valid(http, "family_2026")
        # Expiry.
        soon = int(time.time() * 1000) + 1500
        r = await http.post(f"{TOKENS}/new", json={"expiry_time": soon, "length": 20},
                            headers=admin)
        assert r.status_code == 200, r.text
        short = r.json()["token"]
        assert len(short) == 20
        assert await _valid(http, short)
        await trio.sleep(max(0.0, soon / 1000 - time.time()) + 0.2)
        assert not await _valid(http, short)
        assert_error(await _register(http, short), 401, "M_UNAUTHORIZED")
        r = await http.get(TOKENS, params={"valid": "false"}, headers=admin)
        assert [t["token"] for t in r.json()["registration_tokens"]] == [short]
        r = await http.get(TOKENS, params={"valid": "true"}, headers=admin)
        assert [t["token"] for t in r.json()["registration_tokens"]] == ["family_2026"]


async def test_concurrent_registrations_never_exceed_uses_allowed(
        server_factory: ServerFactory) -> None:
    srv = server_factory("--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        admin = await _admin_token(http, srv)
        r = await http.post(f"{TOKENS}/new", json={"token": "one-seat", "uses_allowed": 1},
                            headers=admin)
        assert r.status_code == 200, r.text
        statuses: list[int] = []

        async def attempt() -> None:
            statuses.append((await _register(http, "one-seat")).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(attempt)
        assert sorted(statuses)[0] == 200
        assert statuses.count(200) == 1, statuses
        assert all(s in (200, 401, 403) for s in statuses), statuses
        r = await http.get(f"{TOKENS}/one-seat", headers=admin)
        assert r.json()["completed"] == 1


async def test_admin_endpoints_refuse_bad_input(server_factory: ServerFactory) -> None:
    srv = server_factory("--no-rate-limits", config_text=(
        '[registration]\ntokens = ["from-config"]\n'))
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        admin = await _admin_token(http, srv)
        for body in ({"token": "has space"}, {"token": "x" * 65}, {"uses_allowed": -1},
                     {"uses_allowed": "2"}, {"expiry_time": 1}, {"length": 0},
                     {"length": 65}, {"token": "from-config"}):
            assert_error(await http.post(f"{TOKENS}/new", json=body, headers=admin), 400,
                         "M_INVALID_PARAM")
        r = await http.post(f"{TOKENS}/new", json={"token": "dup"}, headers=admin)
        assert r.status_code == 200, r.text
        assert_error(await http.post(f"{TOKENS}/new", json={"token": "dup"}, headers=admin),
                     400, "M_INVALID_PARAM")
        r = await http.get(TOKENS, headers=admin)
        assert [t["token"] for t in r.json()["registration_tokens"]] == ["from-config", "dup"]
        # The config's token is listed but not editable here.
        assert_error(await http.put(f"{TOKENS}/from-config", json={"uses_allowed": 1},
                                    headers=admin), 400, "M_INVALID_PARAM")
        assert_error(await http.delete(f"{TOKENS}/from-config", headers=admin), 400,
                     "M_INVALID_PARAM")
        r = await http.delete(f"{TOKENS}/dup", headers=admin)
        assert r.status_code == 200, r.text
        assert_error(await http.get(f"{TOKENS}/dup", headers=admin), 404, "M_NOT_FOUND")
        assert_error(await http.delete(f"{TOKENS}/dup", headers=admin), 404, "M_NOT_FOUND")
        assert_error(await http.put(f"{TOKENS}/dup", json={}, headers=admin), 404,
                     "M_NOT_FOUND")
        # Only admins.
        r = await _register(http, "from-config")
        assert r.status_code == 200, r.text
        user = bearer(r.json()["access_token"])
        assert_error(await http.get(TOKENS, headers=user), 403, "M_FORBIDDEN")
        assert_error(await http.post(f"{TOKENS}/new", json={}, headers=user), 403,
                     "M_FORBIDDEN")
