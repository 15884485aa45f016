"""/.well-known/matrix/support, third-party identifier answers, and room initialSync."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.e2e.helpers import assert_error, bearer, create_room, register, room_path

SUPPORT = "/.well-known/matrix/support"
SUPPORT_CONFIG = """
[well_known]
support_page = "https://example.org/help"
support_contacts = [
    { role = "m.role.admin", matrix_id = "@admin:localhost" },
    { role = "m.role.security", email_address = "security@example.org" },
]
"""


async def test_support_is_404_when_unset(http: httpx.AsyncClient) -> None:
    assert_error(await http.get(SUPPORT), 404, "M_NOT_FOUND")


async def test_support_from_config(server_factory: ServerFactory) -> None:
    srv = server_factory(config_text=SUPPORT_CONFIG)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.get(SUPPORT)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "contacts": [
            {"role": "m.role.admin", "matrix_id": "@admin:localhost"},
            {"role": "m.role.security", "email_address": "security@example.org"},
        ],
        "support_page": "https://example.org/help",
    }


async def test_account_lists_no_threepids(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.get("/_matrix/client/v3/account/3pid", headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"threepids": []}


REQUEST_TOKEN_BODY = {"client_secret": "s3cret", "email": "a@example.org", "send_attempt": 1,
                      "country": "GB", "phone_number": "07700900000"}


@pytest.mark.parametrize("path", [
    "/_matrix/client/v3/register/email/requestToken",
    "/_matrix/client/v3/register/msisdn/requestToken",
    "/_matrix/client/v3/account/password/email/requestToken",
    "/_matrix/client/v3/account/3pid/email/requestToken",
])
async def test_request_token_is_denied(http: httpx.AsyncClient, path: str) -> None:
    assert_error(await http.post(path, json=REQUEST_TOKEN_BODY), 403, "M_THREEPID_DENIED")


@pytest.mark.parametrize("suffix", ["", "/add", "/bind", "/delete", "/unbind"])
async def test_threepid_changes_are_denied(http: httpx.AsyncClient, suffix: str) -> None:
    reg = await register(http)
    path = f"/_matrix/client/v3/account/3pid{suffix}"
    assert_error(await http.post(path, json={"medium": "email", "address": "a@example.org"},
                                 headers=bearer(reg["access_token"])), 403, "M_THREEPID_DENIED")
    assert (await http.post(path, json={})).status_code == 401


async def test_room_initial_sync_is_unrecognized(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    room_id = await create_room(http, reg["access_token"])
    r = await http.get(room_path(room_id, "initialSync"), headers=bearer(reg["access_token"]))
    assert_error(r, 404, "M_UNRECOGNIZED")
