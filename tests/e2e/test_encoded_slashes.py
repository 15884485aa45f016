"""Identifiers holding '/' (base64 session and device IDs, room v3 event IDs, state keys,
account-data types) arrive percent-encoded in one path segment and must route as that
segment, wherever the '/' falls: first, last, doubled or alone."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    get_state,
    put_state,
    register,
    room_path,
    send_text,
)

ODD_IDS = ["/leading", "trailing/", "in//the/middle", "/", "//"]


@pytest.mark.parametrize("state_key", ODD_IDS)
async def test_state_keys(http: httpx.AsyncClient, state_key: str) -> None:
    token = (await register(http))["access_token"]
    room_id = await create_room(http, token)
    r = await put_state(http, token, room_id, "m.test", {"key": state_key}, state_key)
    assert r.status_code == 200, r.text
    r = await get_state(http, token, room_id, "m.test", state_key)
    assert r.status_code == 200, r.text
    assert r.json() == {"key": state_key}
    # The empty state key is a different one.
    assert_error(await get_state(http, token, room_id, "m.test", ""), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("session_id", ODD_IDS)
async def test_backup_session_ids(http: httpx.AsyncClient, session_id: str) -> None:
    auth = bearer((await register(http))["access_token"])
    r = await http.post(f"{CLIENT}/room_keys/version", headers=auth, json={
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo"}})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    path = (f"{CLIENT}/room_keys/keys/{quote('!r:example.org', safe='')}/"
            f"{quote(session_id, safe='')}")
    key = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
           "session_data": {"ciphertext": "c"}}
    r = await http.put(path, params={"version": version}, json=key, headers=auth)
    assert r.status_code == 200, r.text
    r = await http.get(f"{CLIENT}/room_keys/keys", params={"version": version}, headers=auth)
    assert list(r.json()["rooms"]["!r:example.org"]["sessions"]) == [session_id]
    r = await http.get(path, params={"version": version}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["session_data"] == {"ciphertext": "c"}
    r = await http.delete(path, params={"version": version}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 0


@pytest.mark.parametrize("data_type", ["/leading", "trailing/", "a//b"])
async def test_account_data_types(http: httpx.AsyncClient, data_type: str) -> None:
    account = await register(http)
    auth = bearer(account["access_token"])
    path = (f"{CLIENT}/user/{quote(account['user_id'], safe='')}/account_data/"
            f"{quote(data_type, safe='')}")
    r = await http.put(path, json={"t": data_type}, headers=auth)
    assert r.status_code == 200, r.text
    r = await http.get(path, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"t": data_type}


async def test_room_v3_style_event_ids_route(http: httpx.AsyncClient) -> None:
    """Room v3 event IDs (joined over federation) are standard base64 and often hold '/':
    such an ID reaches the handler, which answers M_NOT_FOUND, not M_UNRECOGNIZED."""
    token = (await register(http))["access_token"]
    room_id = await create_room(http, token)
    for event_id in ("$a/b", "$/ab", "$ab/"):
        v3 = room_path(room_id)
        v1 = v3.replace("/v3/", "/v1/")
        encoded = quote(event_id, safe="")
        for path in (f"{v3}/event/{encoded}", f"{v3}/context/{encoded}",
                     f"{v1}/relations/{encoded}", f"{v1}/relations/{encoded}/m.thread"):
            r = await http.get(path, headers=bearer(token))
            assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), (path, r.text)
    assert (await send_text(http, token, room_id, "still routes")).startswith("$")


async def test_unknown_paths_with_encoded_slashes_stay_unrecognized(
        http: httpx.AsyncClient) -> None:
    for path in (f"{CLIENT}/no%2Fsuch", f"{CLIENT}/rooms/%2F/nothing", "/%2F", "/a%2f%2Fb"):
        assert_error(await http.get(path), 404, "M_UNRECOGNIZED")
