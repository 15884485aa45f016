"""Device management: list, get, rename, delete (with User-Interactive Authentication)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import PASSWORD, bearer, login, password_auth, register

DEVICES = "/_matrix/client/v3/devices"
DELETE_DEVICES = "/_matrix/client/v3/delete_devices"
WHOAMI = "/_matrix/client/v3/account/whoami"
PASSWORD_FLOWS = [{"stages": ["m.login.password"]}]


async def _second_device(http: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    r = await login(http, user_id)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _assert_uia_challenge(r: httpx.Response) -> str:
    """A 401 UIA answer offering the password flow; return its session id."""
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["flows"] == PASSWORD_FLOWS
    assert isinstance(body["session"], str)
    assert body["session"]
    assert isinstance(body.get("params", {}), dict)
    return str(body["session"])


async def _device_ids(http: httpx.AsyncClient, token: str) -> set[str]:
    r = await http.get(DEVICES, headers=bearer(token))
    assert r.status_code == 200, r.text
    return {d["device_id"] for d in r.json()["devices"]}


async def test_list_devices_shows_current_device(http: httpx.AsyncClient) -> None:
    reg = await register(http, initial_device_display_name="My Phone")
    token = reg["access_token"]
    r = await http.get(WHOAMI, headers=bearer(token))
    assert r.status_code == 200, r.text

    r = await http.get(DEVICES, headers=bearer(token))
    assert r.status_code == 200, r.text
    devices = r.json()["devices"]
    assert [d["device_id"] for d in devices] == [reg["device_id"]]
    device = devices[0]
    assert device["display_name"] == "My Phone"
    assert isinstance(device["last_seen_ts"], int)
    assert device["last_seen_ts"] > 1_600_000_000_000
    assert device["last_seen_ip"] == "127.0.0.1"


async def test_list_devices_shows_every_device_of_the_user_only(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    second = await _second_device(http, reg["user_id"])
    other = await register(http)
    ids = await _device_ids(http, reg["access_token"])
    assert ids == {reg["device_id"], second["device_id"]}
    assert other["device_id"] not in ids


async def test_get_device(http: httpx.AsyncClient) -> None:
    reg = await register(http, initial_device_display_name="Laptop")
    r = await http.get(f"{DEVICES}/{reg['device_id']}", headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device_id"] == reg["device_id"]
    assert body["display_name"] == "Laptop"
    assert isinstance(body["last_seen_ts"], int)


async def test_get_unknown_device_is_404(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.get(f"{DEVICES}/NOSUCHDEVICE", headers=bearer(reg["access_token"]))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_get_other_users_device_is_404(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    r = await http.get(f"{DEVICES}/{bob['device_id']}", headers=bearer(alice["access_token"]))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_rename_device(http: httpx.AsyncClient) -> None:
    reg = await register(http, initial_device_display_name="Old name")
    path = f"{DEVICES}/{reg['device_id']}"
    r = await http.put(path, json={"display_name": "New name"}, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.get(path, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "New name"


async def test_rename_unknown_device_is_404(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.put(f"{DEVICES}/NOSUCHDEVICE", json={"display_name": "x"},
                       headers=bearer(reg["access_token"]))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_rename_other_users_device_is_404(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http, initial_device_display_name="Bob's")
    r = await http.put(f"{DEVICES}/{bob['device_id']}", json={"display_name": "pwned"},
                       headers=bearer(alice["access_token"]))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = await http.get(f"{DEVICES}/{bob['device_id']}", headers=bearer(bob["access_token"]))
    assert r.json()["display_name"] == "Bob's"


async def test_delete_device_with_uia(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    token = reg["access_token"]
    second = await _second_device(http, reg["user_id"])
    path = f"{DEVICES}/{second['device_id']}"

    # No auth: the server asks for the password stage and starts a session.
    r = await http.request("DELETE", path, headers=bearer(token))
    session = _assert_uia_challenge(r)
    assert "errcode" not in r.json()

    # Wrong password: 401 again, with M_FORBIDDEN and the flows.
    r = await http.request(
        "DELETE", path, headers=bearer(token),
        json={"auth": password_auth(reg["user_id"], "wrong password!", session)},
    )
    assert _assert_uia_challenge(r) == session
    assert r.json()["errcode"] == "M_FORBIDDEN"
    assert second["device_id"] in await _device_ids(http, token)

    # Right password with the session: deleted.
    r = await http.request(
        "DELETE", path, headers=bearer(token),
        json={"auth": password_auth(reg["user_id"], PASSWORD, session)},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}

    r = await http.get(WHOAMI, headers=bearer(second["access_token"]))
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert await _device_ids(http, token) == {reg["device_id"]}
    r = await http.get(path, headers=bearer(token))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_uia_session_is_consumed_after_success(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    token = reg["access_token"]
    second = await _second_device(http, reg["user_id"])
    path = f"{DEVICES}/{second['device_id']}"
    session = _assert_uia_challenge(await http.request("DELETE", path, headers=bearer(token)))
    auth = password_auth(reg["user_id"], PASSWORD, session)
    r = await http.request("DELETE", path, headers=bearer(token), json={"auth": auth})
    assert r.status_code == 200, r.text
    # Replaying the completed session must not authorise anything further.
    r = await http.request("DELETE", path, headers=bearer(token), json={"auth": auth})
    assert r.status_code in (400, 401), r.text
    assert isinstance(r.json()["errcode"], str)


async def test_delete_own_current_device_kills_its_token(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    token = reg["access_token"]
    r = await http.request(
        "DELETE", f"{DEVICES}/{reg['device_id']}", headers=bearer(token),
        json={"auth": password_auth(reg["user_id"])},
    )
    assert r.status_code == 200, r.text
    r = await http.get(WHOAMI, headers=bearer(token))
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"


async def test_delete_devices_bulk_with_uia(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    token = reg["access_token"]
    d2 = await _second_device(http, reg["user_id"])
    d3 = await _second_device(http, reg["user_id"])
    d4 = await _second_device(http, reg["user_id"])
    body: dict[str, Any] = {"devices": [d2["device_id"], d3["device_id"], "NEVEREXISTED"]}

    r = await http.post(DELETE_DEVICES, json=body, headers=bearer(token))
    session = _assert_uia_challenge(r)
    assert len(await _device_ids(http, token)) == 4

    r = await http.post(
        DELETE_DEVICES, headers=bearer(token),
        json={**body, "auth": password_auth(reg["user_id"], PASSWORD, session)},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}
    assert await _device_ids(http, token) == {reg["device_id"], d4["device_id"]}
    for dead in (d2, d3):
        r = await http.get(WHOAMI, headers=bearer(dead["access_token"]))
        assert r.status_code == 401, r.text
        assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = await http.get(WHOAMI, headers=bearer(d4["access_token"]))
    assert r.status_code == 200, r.text


async def test_uia_session_cannot_switch_device(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    token = reg["access_token"]
    dev_a = await _second_device(http, reg["user_id"])
    dev_b = await _second_device(http, reg["user_id"])
    path_a = f"{DEVICES}/{dev_a['device_id']}"
    path_b = f"{DEVICES}/{dev_b['device_id']}"

    session = _assert_uia_challenge(await http.request("DELETE", path_a, headers=bearer(token)))
    r = await http.request(
        "DELETE", path_b, headers=bearer(token),
        json={"auth": password_auth(reg["user_id"], PASSWORD, session)},
    )
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    ids = await _device_ids(http, token)
    assert {dev_a["device_id"], dev_b["device_id"]} <= ids


async def test_uia_session_of_another_user_is_refused(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    bob2 = await _second_device(http, bob["user_id"])
    path = f"{DEVICES}/{bob2['device_id']}"
    # Alice starts a session for her own request, then Bob tries to use it.
    alice_session = _assert_uia_challenge(
        await http.request("DELETE", path, headers=bearer(alice["access_token"]))
    )
    r = await http.request(
        "DELETE", path, headers=bearer(bob["access_token"]),
        json={"auth": password_auth(bob["user_id"], PASSWORD, alice_session)},
    )
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    assert bob2["device_id"] in await _device_ids(http, bob["access_token"])


async def test_device_endpoints_need_a_token(http: httpx.AsyncClient) -> None:
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", DEVICES, None),
        ("GET", f"{DEVICES}/ABC", None),
        ("PUT", f"{DEVICES}/ABC", {"display_name": "x"}),
        ("DELETE", f"{DEVICES}/ABC", {}),
        ("POST", DELETE_DEVICES, {"devices": ["ABC"]}),
    ]
    for method, path, body in requests:
        r = await http.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["errcode"] == "M_MISSING_TOKEN", (method, path, r.text)


async def test_device_endpoints_reject_unknown_token(http: httpx.AsyncClient) -> None:
    r = await http.get(DEVICES, headers=bearer("not-a-real-token"))
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"


async def test_delete_devices_with_wrong_type_is_bad_json(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(DELETE_DEVICES, json={"devices": "x"},
                        headers=bearer(reg["access_token"]))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_BAD_JSON"


async def test_delete_devices_without_devices_is_missing_param(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.post(DELETE_DEVICES, json={}, headers=bearer(reg["access_token"]))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON")


async def test_rename_with_wrong_type_is_bad_json(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.put(f"{DEVICES}/{reg['device_id']}", json={"display_name": 5},
                       headers=bearer(reg["access_token"]))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_BAD_JSON"
