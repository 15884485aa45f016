"""End-to-end encryption key management, end to end, with real Olm/Megolm (vodozemac).

Spec: Client-Server API "End-to-End Encryption" (keys.yaml: /keys/upload, /keys/query,
/keys/claim, /keys/changes; "Extensions to /sync": device_lists, device_one_time_keys_count,
device_unused_fallback_key_types; "Tracking the device list for a user"), and the
m.olm.v1.curve25519-aes-sha2 / m.megolm.v1.aes-sha2 messaging algorithms.

By default the tests run against our server (the session `server` fixture). To check the tests
themselves against a reference homeserver (open registration, no rate limits), point them at it:

    E2EE_REFERENCE_HOMESERVER=http://127.0.0.1:18008 .venv/bin/pytest -q tests/e2e/test_e2ee.py

Tests of behaviour in which the reference (Synapse) is known to deviate from the spec are
marked `reference_deviation`: expected to fail there, and required to pass here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.e2e.helpers import (
    CLIENT,
    PASSWORD,
    bearer,
    create_room,
    login,
    password_auth,
    register,
    room_path,
    unique,
)
from tests.e2e.olm_device import (
    MEGOLM,
    OLM,
    SIGNED_CURVE25519,
    MegolmInbound,
    MegolmOutbound,
    OlmDevice,
    random_curve25519_key,
    verify_signed_json,
)
from tests.e2e.test_sync_rooms import sync

REFERENCE_URL = os.environ.get("E2EE_REFERENCE_HOMESERVER", "").rstrip("/")
# Usernames must not collide with earlier runs when the reference server keeps its database.
PREFIX = f"e2e{secrets.token_hex(3)}"

BAD_REQUEST_CODES = {"M_BAD_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM", "M_NOT_JSON"}


def reference_deviation(reason: str) -> pytest.MarkDecorator:
    """Expected to fail on the reference homeserver (it deviates from the spec); must pass here."""
    return pytest.mark.xfail(bool(REFERENCE_URL), reason=f"reference server: {reason}",
                             strict=True)


# -- fixtures and client helpers ----------------------------------------------------------------


@pytest.fixture
def base_url(request: pytest.FixtureRequest) -> str:
    if REFERENCE_URL:
        return REFERENCE_URL
    url: str = request.getfixturevalue("server").url
    return url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        yield client


@dataclass
class Person:
    user_id: str
    token: str
    device: OlmDevice

    @property
    def device_id(self) -> str:
        return self.device.device_id


async def person(http: httpx.AsyncClient, display_name: str = "Test device") -> Person:
    reg = await register(http, unique(PREFIX), initial_device_display_name=display_name)
    return Person(reg["user_id"], reg["access_token"], OlmDevice(reg["user_id"], reg["device_id"]))


async def second_device(http: httpx.AsyncClient, who: Person) -> Person:
    r = await login(http, who.user_id, initial_device_display_name="Second device")
    assert r.status_code == 200, r.text
    body = r.json()
    return Person(who.user_id, body["access_token"], OlmDevice(who.user_id, body["device_id"]))


async def delete_device(http: httpx.AsyncClient, who: Person, device_id: str) -> None:
    path = f"{CLIENT}/devices/{quote(device_id, safe='')}"
    r = await http.request("DELETE", path, headers=bearer(who.token))
    assert r.status_code == 401, r.text
    auth = password_auth(who.user_id, PASSWORD, r.json()["session"])
    r = await http.request("DELETE", path, headers=bearer(who.token), json={"auth": auth})
    assert r.status_code == 200, r.text


async def upload(http: httpx.AsyncClient, who: Person, body: Any) -> httpx.Response:
    return await http.post(f"{CLIENT}/keys/upload", json=body, headers=bearer(who.token))


async def upload_ok(http: httpx.AsyncClient, who: Person, body: dict[str, Any]
                    ) -> dict[str, int]:
    r = await upload(http, who, body)
    assert r.status_code == 200, r.text
    counts: dict[str, int] = r.json()["one_time_key_counts"]
    assert isinstance(counts, dict)
    return counts


async def query(http: httpx.AsyncClient, who: Person, wanted: dict[str, list[str]],
                **extra: Any) -> dict[str, Any]:
    r = await http.post(f"{CLIENT}/keys/query", json={"device_keys": wanted, **extra},
                        headers=bearer(who.token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body["device_keys"], dict)
    return body


async def claim(http: httpx.AsyncClient, who: Person, wanted: dict[str, dict[str, str]],
                **extra: Any) -> dict[str, Any]:
    r = await http.post(f"{CLIENT}/keys/claim", json={"one_time_keys": wanted, **extra},
                        headers=bearer(who.token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body["one_time_keys"], dict)
    return body


async def claim_one(http: httpx.AsyncClient, who: Person, owner: Person
                    ) -> tuple[str, dict[str, Any]]:
    """Claim one signed_curve25519 key of `owner`'s device; return (key ID, key object)."""
    body = await claim(http, who, {owner.user_id: {owner.device_id: SIGNED_CURVE25519}})
    keys = body["one_time_keys"][owner.user_id][owner.device_id]
    assert len(keys) == 1, keys
    [(key_id, key)] = keys.items()
    assert key_id.startswith(f"{SIGNED_CURVE25519}:")
    assert verify_signed_json(key, owner.user_id, owner.device.signing_key_id,
                              owner.device.ed25519), key
    return key_id, key


async def keys_changes(http: httpx.AsyncClient, who: Person, from_token: str, to_token: str
                       ) -> dict[str, list[str]]:
    r = await http.get(f"{CLIENT}/keys/changes", params={"from": from_token, "to": to_token},
                       headers=bearer(who.token))
    assert r.status_code == 200, r.text
    body: dict[str, list[str]] = r.json()
    return body


async def join(http: httpx.AsyncClient, who: Person, room_id: str) -> None:
    r = await http.post(room_path(room_id, "join"), json={}, headers=bearer(who.token))
    assert r.status_code == 200, r.text


async def leave(http: httpx.AsyncClient, who: Person, room_id: str) -> None:
    r = await http.post(room_path(room_id, "leave"), json={}, headers=bearer(who.token))
    assert r.status_code == 200, r.text


async def encrypted_room(http: httpx.AsyncClient, owner: Person, *members: Person) -> str:
    """A private room with m.room.encryption (Megolm) that `members` have joined."""
    room_id = await create_room(
        http, owner.token, preset="private_chat", invite=[m.user_id for m in members],
        initial_state=[{"type": "m.room.encryption", "state_key": "",
                        "content": {"algorithm": MEGOLM}}])
    for member in members:
        await join(http, member, room_id)
    return room_id


async def fresh_initial_sync(http: httpx.AsyncClient, who: Person) -> dict[str, Any]:
    """Another initial sync. `full_state=true` changes nothing for an initial sync, but makes it
    a different request: Synapse answers a repeated identical initial sync from a cache."""
    return await sync(http, who.token, full_state="true")


def device_lists(body: dict[str, Any], field: str) -> list[str]:
    """`device_lists.changed` / `.left` of a sync response (absent means empty)."""
    value: list[str] = body.get("device_lists", {}).get(field, [])
    return value


def otk_count(body: dict[str, Any]) -> int:
    """signed_curve25519 in `device_one_time_keys_count` (servers MAY omit zero counts)."""
    count: int = body.get("device_one_time_keys_count", {}).get(SIGNED_CURVE25519, 0)
    return count


def unused_fallback_types(body: dict[str, Any]) -> list[str]:
    assert "device_unused_fallback_key_types" in body, "required in every /sync response"
    types: list[str] = body["device_unused_fallback_key_types"]
    return types


def fallback_key_value(upload_body: dict[str, Any]) -> str:
    [key] = upload_body["fallback_keys"].values()
    value: str = key["key"]
    return value


def otk_values(upload_body: dict[str, Any]) -> set[str]:
    return {k["key"] for k in upload_body["one_time_keys"].values()}


# -- /keys/upload -------------------------------------------------------------------------------


async def test_upload_device_one_time_and_fallback_keys(http: httpx.AsyncClient) -> None:
    alice = await person(http)
    # An empty upload just reports the counts: nothing held yet.
    assert (await upload_ok(http, alice, {})).get(SIGNED_CURVE25519, 0) == 0
    body = alice.device.upload_body(one_time_keys=5, fallback=True)
    assert await upload_ok(http, alice, body) == {SIGNED_CURVE25519: 5}
    # Re-uploading exactly the same keys is idempotent.
    assert await upload_ok(http, alice, body) == {SIGNED_CURVE25519: 5}
    # More one-time keys add up; fallback keys are not counted.
    more = alice.device.upload_body(one_time_keys=3, device_keys=False)
    assert await upload_ok(http, alice, more) == {SIGNED_CURVE25519: 8}
    assert (await upload_ok(http, alice, {})) == {SIGNED_CURVE25519: 8}


async def test_upload_a_different_one_time_key_under_an_existing_key_id_is_rejected(
        http: httpx.AsyncClient) -> None:
    alice = await person(http)
    body = alice.device.upload_body(one_time_keys=2)
    await upload_ok(http, alice, body)
    key_id = next(iter(body["one_time_keys"]))
    other = alice.device.signed_key(random_curve25519_key())
    r = await upload(http, alice, {"one_time_keys": {key_id: other}})
    # The spec names no errcode; Synapse answers 400 M_UNKNOWN.
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in {"M_UNKNOWN", "M_INVALID_PARAM", "M_BAD_JSON"}, r.text
    # Nothing changed: the original key is still the one handed out.
    claimer = await person(http)
    claimed = {(await claim_one(http, claimer, alice))[1]["key"] for _ in range(2)}
    assert claimed == otk_values(body)


async def test_upload_device_keys_for_another_user_or_device_is_rejected(
        http: httpx.AsyncClient) -> None:
    alice = await person(http)
    other_user = OlmDevice("@somebody:" + alice.user_id.split(":", 1)[1], alice.device_id)
    r = await upload(http, alice, {"device_keys": other_user.device_keys()})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in BAD_REQUEST_CODES, r.text
    other_device = OlmDevice(alice.user_id, "NOTMYDEVICE")
    r = await upload(http, alice, {"device_keys": other_device.device_keys()})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in BAD_REQUEST_CODES, r.text
    # Neither was stored.
    keys = (await query(http, alice, {alice.user_id: []}))["device_keys"]
    assert keys.get(alice.user_id, {}) == {}


@reference_deviation("Synapse stores device keys without checking their self-signature")
async def test_upload_device_keys_with_a_forged_self_signature_is_rejected(
        http: httpx.AsyncClient) -> None:
    alice = await person(http)
    forged = alice.device.device_keys()
    forged["keys"][f"curve25519:{alice.device_id}"] = random_curve25519_key()  # after signing
    r = await upload(http, alice, {"device_keys": forged})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in {"M_INVALID_SIGNATURE", *BAD_REQUEST_CODES}, r.text
    # Signed by some other key than the one it publishes.
    impostor = OlmDevice(alice.user_id, alice.device_id).device_keys()
    impostor["keys"] = alice.device.device_keys()["keys"]
    r = await upload(http, alice, {"device_keys": impostor})
    assert r.status_code == 400, r.text
    # No signature at all.
    unsigned = alice.device.device_keys()
    del unsigned["signatures"]
    r = await upload(http, alice, {"device_keys": unsigned})
    assert r.status_code == 400, r.text
    keys = (await query(http, alice, {alice.user_id: []}))["device_keys"]
    assert keys.get(alice.user_id, {}) == {}


@reference_deviation("Synapse stores one-time and fallback keys without checking signatures")
async def test_upload_one_time_or_fallback_key_with_a_bad_signature_is_rejected(
        http: httpx.AsyncClient) -> None:
    alice = await person(http)
    await upload_ok(http, alice, {"device_keys": alice.device.device_keys()})
    stranger = OlmDevice(alice.user_id, alice.device_id)  # same IDs, another Ed25519 key
    r = await upload(http, alice, {"one_time_keys": stranger.generate_one_time_keys(1)})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in {"M_INVALID_SIGNATURE", *BAD_REQUEST_CODES}, r.text
    tampered = alice.device.generate_one_time_keys(1)
    for key in tampered.values():
        key["key"] = random_curve25519_key()
    r = await upload(http, alice, {"one_time_keys": tampered})
    assert r.status_code == 400, r.text
    r = await upload(http, alice, {"fallback_keys": stranger.generate_fallback_key()})
    assert r.status_code == 400, r.text
    assert (await upload_ok(http, alice, {})).get(SIGNED_CURVE25519, 0) == 0
    assert unused_fallback_types(await sync(http, alice.token)) == []


def _without(obj: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != field}


MALFORMED: dict[str, Any] = {
    "device_keys_not_an_object": lambda d: {"device_keys": "nope"},
    "device_keys_without_algorithms": lambda d: {"device_keys": _without(d.device_keys(),
                                                                         "algorithms")},
    "device_keys_without_keys": lambda d: {"device_keys": _without(d.device_keys(), "keys")},
    "device_keys_algorithms_not_a_list": lambda d: {
        "device_keys": d.sign_json({**_without(d.device_keys(), "signatures"),
                                    "algorithms": OLM})},
    "one_time_key_value_not_an_object": lambda d: {
        "one_time_keys": {f"{SIGNED_CURVE25519}:AAAAAQ": 5}},
    "body_not_an_object": lambda d: [1, 2, 3],
}
SYNAPSE_500 = {
    "one_time_keys_not_an_object": lambda d: {"one_time_keys": "nope"},
    "fallback_keys_not_an_object": lambda d: {"fallback_keys": []},
}


@pytest.mark.parametrize(
    "case",
    [*MALFORMED,
     *(pytest.param(name, marks=reference_deviation("Synapse answers 500 to this body"))
       for name in SYNAPSE_500)])
async def test_upload_malformed_keys_is_rejected(http: httpx.AsyncClient, case: str) -> None:
    alice = await person(http)
    make = {**MALFORMED, **SYNAPSE_500}[case]
    r = await upload(http, alice, make(alice.device))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in BAD_REQUEST_CODES, r.text


# -- /keys/query --------------------------------------------------------------------------------


async def test_query_returns_another_users_signed_device_keys(http: httpx.AsyncClient) -> None:
    alice = await person(http)
    bob = await person(http, display_name="Bob's phone")
    bob_keys = bob.device.device_keys()
    await upload_ok(http, bob, {"device_keys": bob_keys})
    keyless = await second_device(http, bob)  # a device that never uploaded identity keys

    body = await query(http, alice, {bob.user_id: []}, timeout=10000)
    assert body.get("failures", {}) == {}
    devices = body["device_keys"][bob.user_id]
    assert set(devices) == {bob.device_id}, "devices without identity keys are not listed"
    assert keyless.device_id not in devices
    device = devices[bob.device_id]
    unsigned = device.pop("unsigned")
    assert unsigned["device_display_name"] == "Bob's phone"
    assert device == bob_keys  # exactly as uploaded (+ unsigned)
    ed25519 = device["keys"][f"ed25519:{bob.device_id}"]
    assert ed25519 == bob.device.ed25519
    assert verify_signed_json(device, bob.user_id, f"ed25519:{bob.device_id}", ed25519)

    # Asking for a named device; asking for an unknown one.
    body = await query(http, alice, {bob.user_id: [bob.device_id, "NOSUCHDEVICE"]})
    assert set(body["device_keys"][bob.user_id]) == {bob.device_id}
    # Renaming the device shows in unsigned.device_display_name.
    r = await http.put(f"{CLIENT}/devices/{bob.device_id}", json={"display_name": "Renamed"},
                       headers=bearer(bob.token))
    assert r.status_code == 200, r.text
    body = await query(http, bob, {bob.user_id: []})
    assert body["device_keys"][bob.user_id][bob.device_id]["unsigned"] == {
        "device_display_name": "Renamed"}


async def test_query_unknown_users_and_unreachable_servers(http: httpx.AsyncClient) -> None:
    alice = await person(http)
    server_name = alice.user_id.split(":", 1)[1]
    unknown_local = f"@{unique(PREFIX)}nobody:{server_name}"
    remote = "@somebody:unreachable.invalid"
    body = await query(http, alice, {unknown_local: [], remote: []}, timeout=2000)
    # A reachable server's unknown user is simply missing (Synapse lists it as `{}`).
    assert body["device_keys"].get(unknown_local, {}) == {}
    assert unknown_local.split(":", 1)[1] not in body.get("failures", {})
    # An unreachable server is recorded under failures.
    assert body["device_keys"].get(remote, {}) == {}
    assert "unreachable.invalid" in body["failures"]
    assert isinstance(body["failures"]["unreachable.invalid"], dict)


# -- /keys/claim --------------------------------------------------------------------------------


async def test_claim_hands_out_each_one_time_key_once_in_upload_order_then_the_fallback(
        http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    first = bob.device.upload_body(one_time_keys=3)
    await upload_ok(http, bob, first)
    await trio.sleep(0.01)  # distinct upload times for servers that order by timestamp
    second = bob.device.upload_body(one_time_keys=3, fallback=True, device_keys=False)
    await upload_ok(http, bob, second)
    fallback = fallback_key_value(second)

    claimed = [(await claim_one(http, alice, bob))[1] for _ in range(6)]
    values = [k["key"] for k in claimed]
    assert len(set(values)) == 6, "never the same one-time key twice"
    assert set(values[:3]) == otk_values(first), "older uploads are handed out first"
    assert set(values[3:]) == otk_values(second)
    assert not any(k.get("fallback") for k in claimed)
    assert fallback not in values

    # Out of one-time keys: the fallback key, as often as asked, marked as such.
    for _ in range(2):
        key_id, key = await claim_one(http, alice, bob)
        assert key["key"] == fallback
        assert key["fallback"] is True
        assert key_id in second["fallback_keys"]
    assert (await upload_ok(http, bob, {})).get(SIGNED_CURVE25519, 0) == 0


async def test_claim_several_devices_and_unknown_ones(http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    bob2 = await second_device(http, bob)
    keyless = await second_device(http, bob)
    up1 = bob.device.upload_body(one_time_keys=2)
    up2 = bob2.device.upload_body(one_time_keys=2)
    await upload_ok(http, bob, up1)
    await upload_ok(http, bob2, up2)
    unknown_local = f"@{unique(PREFIX)}nobody:{alice.user_id.split(':', 1)[1]}"
    body = await claim(http, alice, {
        bob.user_id: {bob.device_id: SIGNED_CURVE25519, bob2.device_id: SIGNED_CURVE25519,
                      keyless.device_id: SIGNED_CURVE25519, "NOSUCHDEVICE": SIGNED_CURVE25519},
        unknown_local: {"WHATEVER": SIGNED_CURVE25519},
    }, timeout=10000)
    assert body.get("failures", {}) == {}
    got = body["one_time_keys"][bob.user_id]
    assert set(got) == {bob.device_id, bob2.device_id}, got
    [k1] = got[bob.device_id].values()
    [k2] = got[bob2.device_id].values()
    assert k1["key"] in otk_values(up1)
    assert k2["key"] in otk_values(up2)
    assert body["one_time_keys"].get(unknown_local, {}) == {}
    # An algorithm the device has no keys for: nothing.
    body = await claim(http, alice, {bob.user_id: {bob.device_id: "curve25519"}})
    assert body["one_time_keys"].get(bob.user_id, {}).get(bob.device_id, {}) == {}


async def test_fallback_key_use_shows_in_sync_and_a_new_one_resets_it(
        http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    first = await sync(http, bob.token)
    assert unused_fallback_types(first) == []
    up = bob.device.upload_body(one_time_keys=1, fallback=True)
    await upload_ok(http, bob, up)
    body = await sync(http, bob.token, first["next_batch"])
    assert unused_fallback_types(body) == [SIGNED_CURVE25519]
    assert otk_count(body) == 1

    # The one-time key goes first; the fallback key is still unused.
    _, key = await claim_one(http, alice, bob)
    assert key["key"] in otk_values(up)
    body = await sync(http, bob.token, body["next_batch"])
    assert otk_count(body) == 0
    assert unused_fallback_types(body) == [SIGNED_CURVE25519]

    # Now the fallback key is handed out: no longer unused.
    _, key = await claim_one(http, alice, bob)
    assert key["key"] == fallback_key_value(up)
    body = await sync(http, bob.token, body["next_batch"])
    assert unused_fallback_types(body) == []
    assert unused_fallback_types(await fresh_initial_sync(http, bob)) == []  # initial sync too

    # Re-uploading the same used key does not make it unused again (Synapse and the spec's
    # "replacement key"); a new fallback key replaces it and is unused.
    await upload_ok(http, bob, {"fallback_keys": up["fallback_keys"]})
    replacement = bob.device.generate_fallback_key()
    await upload_ok(http, bob, {"fallback_keys": replacement})
    body = await sync(http, bob.token, body["next_batch"])
    assert unused_fallback_types(body) == [SIGNED_CURVE25519]
    _, key = await claim_one(http, alice, bob)
    [new] = replacement.values()
    assert key["key"] == new["key"], "the server keeps only the newest fallback key"


async def test_concurrent_claims_never_hand_out_a_one_time_key_twice(
        http: httpx.AsyncClient, base_url: str) -> None:
    bob = await person(http)
    up = bob.device.upload_body(one_time_keys=10, fallback=True)
    await upload_ok(http, bob, up)
    fallback = fallback_key_value(up)
    claimers = [await person(http) for _ in range(5)]
    results: list[dict[str, Any]] = []

    async def claim_with(client: httpx.AsyncClient, who: Person) -> None:
        _, key = await claim_one(client, who, bob)
        results.append(key)

    clients = [httpx.AsyncClient(base_url=base_url, timeout=30.0) for _ in claimers]
    try:
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(claim_with, clients[i % 5], claimers[i % 5])
    finally:
        for client in clients:
            await client.aclose()

    assert len(results) == 50
    otks = [k["key"] for k in results if k["key"] != fallback]
    assert len(otks) == 10
    assert set(otks) == otk_values(up), "each one-time key exactly once"
    fallbacks = [k for k in results if k["key"] == fallback]
    assert len(fallbacks) == 40
    assert all(k.get("fallback") is True for k in fallbacks)
    body = await sync(http, bob.token)
    assert otk_count(body) == 0
    assert unused_fallback_types(body) == []


# -- /sync and /keys/changes --------------------------------------------------------------------


async def test_sync_one_time_key_count_follows_uploads_and_claims(
        http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    body = await sync(http, bob.token)
    assert otk_count(body) == 0
    await upload_ok(http, bob, bob.device.upload_body(one_time_keys=4))
    body = await sync(http, bob.token, body["next_batch"])
    assert otk_count(body) == 4
    body = await sync(http, bob.token, body["next_batch"])  # nothing new
    assert otk_count(body) == 4
    # Only one-time keys this time (no device keys, nothing else changes).
    await upload_ok(http, bob, bob.device.upload_body(one_time_keys=2, device_keys=False))
    body = await sync(http, bob.token, body["next_batch"])
    assert otk_count(body) == 6
    await claim_one(http, alice, bob)
    body = await sync(http, bob.token, body["next_batch"])
    assert otk_count(body) == 5
    assert otk_count(await fresh_initial_sync(http, bob)) == 5  # initial sync too


async def test_device_lists_changed_for_room_members_on_key_upload_and_device_changes(
        http: httpx.AsyncClient) -> None:
    alice, bob, carol = await person(http), await person(http), await person(http)
    await encrypted_room(http, alice, bob)
    start = (await sync(http, alice.token))["next_batch"]

    # Bob publishes device keys: Alice is told.
    await upload_ok(http, bob, bob.device.upload_body())
    # Carol shares no room with Alice: Alice is not told about her.
    await upload_ok(http, carol, carol.device.upload_body())
    body = await sync(http, alice.token, start)
    assert bob.user_id in device_lists(body, "changed")
    assert carol.user_id not in device_lists(body, "changed")
    assert bob.user_id not in device_lists(body, "left")
    after_upload = body["next_batch"]

    # Nothing new: Bob is not repeated.
    body = await sync(http, alice.token, after_upload)
    assert bob.user_id not in device_lists(body, "changed")

    # Bob adds a device with identity keys.
    bob2 = await second_device(http, bob)
    await upload_ok(http, bob2, bob2.device.upload_body(one_time_keys=1))
    body = await sync(http, alice.token, body["next_batch"])
    assert bob.user_id in device_lists(body, "changed")
    after_new_device = body["next_batch"]
    devices = (await query(http, alice, {bob.user_id: []}))["device_keys"][bob.user_id]
    assert set(devices) == {bob.device_id, bob2.device_id}

    # Bob deletes that device.
    await delete_device(http, bob, bob2.device_id)
    body = await sync(http, alice.token, after_new_device)
    assert bob.user_id in device_lists(body, "changed")
    end = body["next_batch"]
    devices = (await query(http, alice, {bob.user_id: []}))["device_keys"][bob.user_id]
    assert set(devices) == {bob.device_id}

    # /keys/changes tells the same story.
    changes = await keys_changes(http, alice, start, end)
    assert bob.user_id in changes["changed"]
    assert carol.user_id not in changes["changed"]
    assert bob.user_id not in changes.get("left", [])
    changes = await keys_changes(http, alice, after_upload, after_new_device)
    assert bob.user_id in changes["changed"]
    changes = await keys_changes(http, alice, end, end)
    assert bob.user_id not in changes["changed"]


async def test_device_lists_changed_when_a_user_starts_sharing_a_room(
        http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    await upload_ok(http, bob, bob.device.upload_body())
    room_id = await encrypted_room(http, alice)
    await upload_ok(http, alice, alice.device.upload_body())
    start = (await sync(http, alice.token))["next_batch"]
    bob_start = (await sync(http, bob.token))["next_batch"]
    r = await http.post(room_path(room_id, "invite"), json={"user_id": bob.user_id},
                        headers=bearer(alice.token))
    assert r.status_code == 200, r.text
    await join(http, bob, room_id)
    body = await sync(http, alice.token, start)
    assert room_id in body["rooms"]["join"]
    assert bob.user_id in device_lists(body, "changed")
    # ...and the joiner learns about the members of the room they joined.
    body = await sync(http, bob.token, bob_start)
    assert room_id in body["rooms"]["join"]
    assert alice.user_id in device_lists(body, "changed")


async def test_device_lists_left_when_no_room_is_shared_any_more(
        http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    await upload_ok(http, bob, bob.device.upload_body())
    room1 = await encrypted_room(http, alice, bob)
    room2 = await encrypted_room(http, alice, bob)
    start = (await sync(http, alice.token))["next_batch"]

    # Still one room in common: not "left".
    await leave(http, bob, room1)
    body = await sync(http, alice.token, start)
    assert bob.user_id not in device_lists(body, "left")

    await leave(http, bob, room2)
    body = await sync(http, alice.token, body["next_batch"])
    assert bob.user_id in device_lists(body, "left")
    assert bob.user_id not in device_lists(body, "changed")
    end = body["next_batch"]
    changes = await keys_changes(http, alice, start, end)
    assert bob.user_id in changes.get("left", [])
    assert bob.user_id not in changes["changed"]

    # Bob's later key changes are not Alice's business.
    bob2 = await second_device(http, bob)
    await upload_ok(http, bob2, bob2.device.upload_body())
    body = await sync(http, alice.token, end)
    assert bob.user_id not in device_lists(body, "changed")


# -- a full Olm + Megolm round trip -------------------------------------------------------------


def to_device_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body.get("to_device", {}).get("events", [])
    return events


async def send_to_device(http: httpx.AsyncClient, sender: Person, recipient: Person,
                         content: dict[str, Any]) -> None:
    r = await http.put(f"{CLIENT}/sendToDevice/m.room.encrypted/{unique('txn')}",
                       json={"messages": {recipient.user_id: {recipient.device_id: content}}},
                       headers=bearer(sender.token))
    assert r.status_code == 200, r.text


async def test_olm_and_megolm_round_trip(http: httpx.AsyncClient) -> None:
    alice, bob = await person(http), await person(http)
    await upload_ok(http, alice, alice.device.upload_body(one_time_keys=5, fallback=True))
    await upload_ok(http, bob, bob.device.upload_body(one_time_keys=5, fallback=True))
    room_id = await encrypted_room(http, alice, bob)
    bob_since = (await sync(http, bob.token))["next_batch"]
    alice_since = (await sync(http, alice.token))["next_batch"]

    # Alice looks Bob's device up, checks its self-signature, claims a one-time key.
    devices = (await query(http, alice, {bob.user_id: []}))["device_keys"][bob.user_id]
    bob_keys = devices[bob.device_id]
    bob_ed25519 = bob_keys["keys"][f"ed25519:{bob.device_id}"]
    assert verify_signed_json(bob_keys, bob.user_id, f"ed25519:{bob.device_id}", bob_ed25519)
    _, otk = await claim_one(http, alice, bob)
    assert "fallback" not in otk

    # Alice shares a Megolm session with Bob over Olm.
    megolm = MegolmOutbound(alice.device, room_id)
    olm_content = alice.device.olm_encrypt(bob_keys, "m.room_key", megolm.room_key_content(),
                                           one_time_key=otk["key"])
    assert olm_content["ciphertext"][bob.device.curve25519]["type"] == 0  # pre-key message
    await send_to_device(http, alice, bob, olm_content)

    # Alice sends an encrypted room message.
    encrypted = megolm.encrypt("m.room.message", {"msgtype": "m.text", "body": "secret text"})
    r = await http.put(room_path(room_id, "send", "m.room.encrypted", unique("txn")),
                       json=encrypted, headers=bearer(alice.token))
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]

    # Bob receives the to-device message, decrypts it and sets up the inbound session.
    body = await sync(http, bob.token, bob_since)
    [to_device] = [e for e in to_device_events(body) if e["type"] == "m.room.encrypted"]
    assert to_device["sender"] == alice.user_id
    assert to_device["content"] == olm_content
    plaintext = bob.device.olm_decrypt(to_device)
    assert plaintext["type"] == "m.room_key"
    assert plaintext["keys"] == {"ed25519": alice.device.ed25519}
    # The sender's Ed25519 key matches what /keys/query says about Alice's device.
    alice_keys = (await query(http, bob, {alice.user_id: [alice.device_id]})
                  )["device_keys"][alice.user_id][alice.device_id]
    assert alice_keys["keys"][f"ed25519:{alice.device_id}"] == plaintext["keys"]["ed25519"]
    assert alice_keys["keys"][f"curve25519:{alice.device_id}"] == to_device["content"][
        "sender_key"]
    inbound = MegolmInbound(plaintext["content"])
    # The one-time key has been used up on the server.
    assert otk_count(body) == 4

    # Bob decrypts the room message.
    [event] = [e for e in body["rooms"]["join"][room_id]["timeline"]["events"]
               if e["event_id"] == event_id]
    assert event["type"] == "m.room.encrypted"
    assert event["sender"] == alice.user_id
    assert event["content"] == encrypted
    decrypted = inbound.decrypt(event, room_id)
    assert decrypted == {"type": "m.room.message", "room_id": room_id,
                         "content": {"msgtype": "m.text", "body": "secret text"}}

    # Bob answers over the now-established Olm session (a normal, type-1 message).
    reply = bob.device.olm_encrypt(alice_keys, "org.example.ack", {"event_id": event_id})
    assert reply["ciphertext"][alice.device.curve25519]["type"] == 1
    await send_to_device(http, bob, alice, reply)
    body = await sync(http, alice.token, alice_since)
    [ack] = [e for e in to_device_events(body) if e["type"] == "m.room.encrypted"]
    assert alice.device.olm_decrypt(ack)["content"] == {"event_id": event_id}
