"""Dehydrated devices (MSC3814, unstable prefix) against a real server: create, read, replace,
delete, and reading the device's to-device messages in batches."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.helpers import CLIENT, assert_error, bearer, register
from tests.e2e.olm_device import OlmDevice

PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"
DATA = {"algorithm": "org.matrix.msc3814.v1.olm", "device_pickle": "opaque"}


def events_path(device_id: str) -> str:
    return f"{PREFIX}/{quote(device_id, safe='')}/events"


class User:
    def __init__(self, http: httpx.AsyncClient, account: dict[str, Any]) -> None:
        self.http = http
        self.user_id: str = account["user_id"]
        self.auth = bearer(account["access_token"])

    async def put(self, device: OlmDevice, **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {"device_id": device.device_id, "device_data": DATA,
                                "initial_device_display_name": "Dehydrated",
                                **device.upload_body(one_time_keys=2, fallback=True), **extra}
        return await self.http.put(PREFIX, json=body, headers=self.auth)

    async def dehydrate(self) -> OlmDevice:
        # The MSC asks for the Curve25519 identity key as device id: base64, may contain '/'.
        device = OlmDevice(self.user_id, "")
        device.device_id = device.curve25519
        r = await self.put(device)
        assert r.status_code == 200, r.text
        assert r.json() == {"device_id": device.device_id}
        return device

    async def events(self, device_id: str, next_batch: str | None = None) -> httpx.Response:
        body = {} if next_batch is None else {"next_batch": next_batch}
        return await self.http.post(events_path(device_id), json=body, headers=self.auth)


@pytest.fixture
async def alice(http: httpx.AsyncClient) -> User:
    return User(http, await register(http))


@pytest.fixture
async def bob(http: httpx.AsyncClient) -> User:
    return User(http, await register(http))


async def send_to_device(sender: User, user_id: str, device_id: str, txn: str,
                         contents: list[dict[str, Any]]) -> None:
    for i, content in enumerate(contents):
        r = await sender.http.put(
            f"{CLIENT}/sendToDevice/m.test/{txn}-{i}",
            json={"messages": {user_id: {device_id: content}}}, headers=sender.auth)
        assert r.status_code == 200, r.text


async def query_devices(user: User, user_id: str) -> dict[str, Any]:
    r = await user.http.post(f"{CLIENT}/keys/query", json={"device_keys": {user_id: []}},
                             headers=user.auth)
    assert r.status_code == 200, r.text
    devices: dict[str, Any] = r.json()["device_keys"].get(user_id, {})
    return devices


async def test_none_is_404(alice: User) -> None:
    assert_error(await alice.http.get(PREFIX, headers=alice.auth), 404, "M_NOT_FOUND")
    assert_error(await alice.http.delete(PREFIX, headers=alice.auth), 404, "M_NOT_FOUND")
    assert_error(await alice.events("NOPE"), 404, "M_NOT_FOUND")


async def test_requires_auth(http: httpx.AsyncClient) -> None:
    assert_error(await http.get(PREFIX), 401, "M_MISSING_TOKEN")


async def test_put_get_delete(alice: User, bob: User) -> None:
    device = await alice.dehydrate()
    r = await alice.http.get(PREFIX, headers=alice.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"device_id": device.device_id, "device_data": DATA}
    # The device is a real device: listed, with queryable keys.
    r = await alice.http.get(f"{CLIENT}/devices", headers=alice.auth)
    listed = {d["device_id"]: d for d in r.json()["devices"]}
    assert listed[device.device_id]["display_name"] == "Dehydrated"
    keys = await query_devices(bob, alice.user_id)
    assert keys[device.device_id]["keys"][f"ed25519:{device.device_id}"] == device.ed25519
    r = await bob.http.post(f"{CLIENT}/keys/claim", json={
        "one_time_keys": {alice.user_id: {device.device_id: "signed_curve25519"}}},
        headers=bob.auth)
    assert r.status_code == 200, r.text
    assert r.json()["one_time_keys"][alice.user_id][device.device_id]

    r = await alice.http.delete(PREFIX, headers=alice.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"device_id": device.device_id}
    assert_error(await alice.http.get(PREFIX, headers=alice.auth), 404, "M_NOT_FOUND")
    assert_error(await alice.http.delete(PREFIX, headers=alice.auth), 404, "M_NOT_FOUND")
    assert device.device_id not in await query_devices(bob, alice.user_id)
    assert_error(await alice.events(device.device_id), 404, "M_NOT_FOUND")


async def test_put_replaces_previous(alice: User, bob: User) -> None:
    first = await alice.dehydrate()
    await send_to_device(bob, alice.user_id, first.device_id, "old", [{"n": 1}])
    second = await alice.dehydrate()
    r = await alice.http.get(PREFIX, headers=alice.auth)
    assert r.json()["device_id"] == second.device_id
    keys = await query_devices(bob, alice.user_id)
    assert first.device_id not in keys
    assert second.device_id in keys
    assert_error(await alice.events(first.device_id), 404, "M_NOT_FOUND")
    r = await alice.events(second.device_id)
    assert r.status_code == 200, r.text
    assert r.json()["events"] == []
    # Re-uploading the same device id starts it afresh.
    await send_to_device(bob, alice.user_id, second.device_id, "same", [{"n": 2}])
    r = await alice.put(second, device_keys=second.device_keys(), one_time_keys=None,
                        fallback_keys=None)
    assert r.status_code == 200, r.text
    assert (await alice.events(second.device_id)).json()["events"] == []


async def test_put_rejects_existing_normal_device(alice: User) -> None:
    r = await alice.http.get(f"{CLIENT}/devices", headers=alice.auth)
    own = r.json()["devices"][0]["device_id"]
    device = OlmDevice(alice.user_id, own)
    assert_error(await alice.put(device), 400, "M_INVALID_PARAM")


async def test_rejected_keys_keep_previous_device(alice: User) -> None:
    first = await alice.dehydrate()
    other = OlmDevice(alice.user_id, "NEWDEVICE")
    wrong = OlmDevice(alice.user_id, "NEWDEVICE").device_keys()
    wrong["keys"]["ed25519:NEWDEVICE"] = other.ed25519  # signed by another key
    r = await alice.put(other, device_keys=wrong)
    assert r.status_code == 400, r.text
    r = await alice.http.get(PREFIX, headers=alice.auth)
    assert r.json()["device_id"] == first.device_id
    r = await alice.http.get(f"{CLIENT}/devices", headers=alice.auth)
    assert "NEWDEVICE" not in {d["device_id"] for d in r.json()["devices"]}


async def test_events_paginate_and_are_deleted(alice: User, bob: User) -> None:
    device = await alice.dehydrate()
    await send_to_device(bob, alice.user_id, device.device_id, "a", [{"n": i} for i in range(3)])
    # Messages to the wildcard reach it too; 100 more to force a second batch.
    r = await bob.http.put(f"{CLIENT}/sendToDevice/m.test/star",
                           json={"messages": {alice.user_id: {"*": {"n": 3}}}},
                           headers=bob.auth)
    assert r.status_code == 200, r.text
    await send_to_device(bob, alice.user_id, device.device_id, "b",
                         [{"n": i} for i in range(4, 104)])

    r = await alice.events(device.device_id)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [e["content"]["n"] for e in first["events"]] == list(range(100))
    assert first["events"][0] == {"type": "m.test", "sender": bob.user_id, "content": {"n": 0}}
    assert isinstance(first["next_batch"], str)
    # Without presenting the token, nothing is deleted: the first batch comes back.
    again = (await alice.events(device.device_id)).json()
    assert again == first

    second = (await alice.events(device.device_id, first["next_batch"])).json()
    assert [e["content"]["n"] for e in second["events"]] == list(range(100, 104))
    last = (await alice.events(device.device_id, second["next_batch"])).json()
    assert last == {"events": [], "next_batch": second["next_batch"]}
    # Presenting a token deleted everything before it: a fresh start sees nothing old.
    fresh = (await alice.events(device.device_id)).json()
    assert fresh["events"] == []

    await send_to_device(bob, alice.user_id, device.device_id, "c", [{"n": 104}])
    newer = (await alice.events(device.device_id, last["next_batch"])).json()
    assert [e["content"]["n"] for e in newer["events"]] == [104]


async def test_other_users_device_is_404(alice: User, bob: User) -> None:
    device = await alice.dehydrate()
    assert_error(await bob.events(device.device_id), 404, "M_NOT_FOUND")
    await bob.dehydrate()
    assert_error(await bob.events(device.device_id), 404, "M_NOT_FOUND")
    assert_error(await alice.events("SOMETHINGELSE"), 404, "M_NOT_FOUND")


async def test_malformed_bodies(alice: User) -> None:
    device = OlmDevice(alice.user_id, "DEHYDRATED")
    put = alice.http.put
    assert_error(await put(PREFIX, json={"device_data": DATA}, headers=alice.auth),
                 400, "M_MISSING_PARAM")
    assert_error(await put(PREFIX, json={"device_id": "D"}, headers=alice.auth),
                 400, "M_MISSING_PARAM")
    assert_error(await put(PREFIX, json={"device_id": 5, "device_data": DATA},
                           headers=alice.auth), 400, "M_BAD_JSON")
    assert_error(await put(PREFIX, json={"device_id": "D", "device_data": "x"},
                           headers=alice.auth), 400, "M_BAD_JSON")
    assert_error(await put(PREFIX, json={"device_id": "D", "device_data": DATA,
                                         "initial_device_display_name": 3},
                           headers=alice.auth), 400, "M_BAD_JSON")
    assert_error(await put(PREFIX, json=[1], headers=alice.auth), 400, "M_BAD_JSON")
    assert_error(await put(PREFIX, content=b"{", headers=alice.auth), 400, "M_NOT_JSON")
    assert_error(await alice.put(device, device_keys="nope"), 400, "M_BAD_JSON")
    assert_error(await alice.http.get(PREFIX, headers=alice.auth), 404, "M_NOT_FOUND")

    await alice.dehydrate()
    r = await alice.http.get(PREFIX, headers=alice.auth)
    device_id = r.json()["device_id"]
    post = alice.http.post
    assert_error(await post(events_path(device_id), json={"next_batch": 1},
                            headers=alice.auth), 400, "M_BAD_JSON")
    assert_error(await post(events_path(device_id), json={"next_batch": "abc"},
                            headers=alice.auth), 400, "M_INVALID_PARAM")
    assert_error(await post(events_path(device_id), json=[], headers=alice.auth),
                 400, "M_BAD_JSON")
    # An empty body is allowed (next_batch is optional).
    r = await post(events_path(device_id), headers=alice.auth)
    assert r.status_code == 200, r.text



async def test_device_ids_with_slashes_route(alice: User) -> None:
    """Dehydrated device IDs are Curve25519 keys in base64, which may contain '/': the
    percent-encoded path must route, and never be "merged" into a redirect."""
    for device_id in ("ends-with-slash/", "in//the/middle"):
        assert_error(await alice.events(device_id), 404, "M_NOT_FOUND")


async def test_device_id_beginning_with_a_slash(alice: User, bob: User) -> None:
    """One Curve25519 key in 64 begins with '/': such a device routes like any other."""
    assert_error(await alice.events("/starts-with-slash"), 404, "M_NOT_FOUND")
    device = OlmDevice(alice.user_id, "")
    device.device_id = "/" + device.curve25519[1:]
    r = await alice.put(device)
    assert r.status_code == 200, r.text
    await send_to_device(bob, alice.user_id, device.device_id, "slash", [{"n": 1}])
    r = await alice.events(device.device_id)
    assert r.status_code == 200, r.text
    assert [e["content"] for e in r.json()["events"]] == [{"n": 1}]
