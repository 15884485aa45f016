"""End-to-end encryption between two trioservers over TLS: keys queried and claimed across
servers, to-device messages both ways, device-list updates, and a real Olm + Megolm exchange
(vodozemac) between a user on each server."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.cli_process import run_cli
from tests.e2e.helpers import bearer, login, password_auth, register, room_path, unique
from tests.e2e.olm_device import (
    MEGOLM,
    SIGNED_CURVE25519,
    MegolmInbound,
    MegolmOutbound,
    OlmDevice,
    verify_signed_json,
)
from tests.federation_peer import FederationCaller, Peer, q, start_tls_peer

CLIENT = "/_matrix/client/v3"
DEADLINE_S = 15.0


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[Peer, Peer]]:
    a = start_tls_peer(tmp_path / "a", "--open-registration", "--no-rate-limits")
    b = start_tls_peer(tmp_path / "b", "--open-registration", "--no-rate-limits")
    try:
        yield a, b
    finally:
        a.proc.stop()
        b.proc.stop()


@dataclass
class Person:
    user_id: str
    token: str
    device: OlmDevice

    @property
    def device_id(self) -> str:
        return self.device.device_id


async def person(http: httpx.AsyncClient, otks: int = 5) -> Person:
    reg = await register(http, unique("e2e"))
    who = Person(reg["user_id"], reg["access_token"],
                 OlmDevice(reg["user_id"], reg["device_id"]))
    await upload(http, who, who.device.upload_body(one_time_keys=otks, fallback=True))
    return who


async def upload(http: httpx.AsyncClient, who: Person, body: dict[str, Any]) -> None:
    r = await http.post(f"{CLIENT}/keys/upload", json=body, headers=bearer(who.token))
    assert r.status_code == 200, r.text


async def query(http: httpx.AsyncClient, who: Person, wanted: dict[str, list[str]],
                **extra: Any) -> dict[str, Any]:
    r = await http.post(f"{CLIENT}/keys/query", json={"device_keys": wanted, **extra},
                        headers=bearer(who.token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def claim(http: httpx.AsyncClient, who: Person, wanted: dict[str, dict[str, str]],
                **extra: Any) -> dict[str, Any]:
    r = await http.post(f"{CLIENT}/keys/claim", json={"one_time_keys": wanted, **extra},
                        headers=bearer(who.token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def claim_one(http: httpx.AsyncClient, who: Person, target: Person) -> dict[str, Any]:
    body = await claim(http, who, {target.user_id: {target.device_id: SIGNED_CURVE25519}})
    assert body["failures"] == {}, body
    [(key_id, key)] = body["one_time_keys"][target.user_id][target.device_id].items()
    assert key_id.startswith(f"{SIGNED_CURVE25519}:")
    assert verify_signed_json(key, target.user_id, f"ed25519:{target.device_id}",
                              target.device.ed25519)
    return dict(key)


async def sync(http: httpx.AsyncClient, who: Person, since: str | None = None,
               timeout_ms: int = 0) -> dict[str, Any]:
    params = {"timeout": str(timeout_ms)}
    if since is not None:
        params["since"] = since
    r = await http.get(f"{CLIENT}/sync", params=params, headers=bearer(who.token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def send_to_device(http: httpx.AsyncClient, sender: Person, recipient: Person,
                         event_type: str, content: dict[str, Any],
                         txn_id: str | None = None) -> None:
    r = await http.put(f"{CLIENT}/sendToDevice/{event_type}/{txn_id or unique('txn')}",
                       json={"messages": {recipient.user_id: {recipient.device_id: content}}},
                       headers=bearer(sender.token))
    assert r.status_code == 200, r.text


async def wait_for_to_device(http: httpx.AsyncClient, who: Person, since: str,
                             event_type: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Long-poll /sync until to-device events of `event_type` arrive; return them and the
    last response."""
    with trio.fail_after(DEADLINE_S):
        while True:
            body = await sync(http, who, since, timeout_ms=5000)
            events = [e for e in body.get("to_device", {}).get("events", [])
                      if e["type"] == event_type]
            if events:
                return events, body
            since = body["next_batch"]


async def join_remote(http: httpx.AsyncClient, who: Person, room_id: str, via: str) -> None:
    r = await http.post(f"{CLIENT}/join/{room_id}", params={"via": via}, json={},
                        headers=bearer(who.token))
    assert r.status_code == 200, r.text


async def shared_room(ha: httpx.AsyncClient, hb: httpx.AsyncClient, alice: Person,
                      bob: Person, via: str) -> str:
    """A public room of Alice's on her server that Bob, on the other, has joined."""
    r = await ha.post(f"{CLIENT}/createRoom", json={"preset": "public_chat"},
                      headers=bearer(alice.token))
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    await join_remote(hb, bob, room_id, via)
    return room_id


# -- keys ---------------------------------------------------------------------------------------


async def test_query_and_claim_keys_of_another_servers_user(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice, bob = await person(ha, otks=3), await person(hb)
        body = await query(hb, bob, {alice.user_id: []})
        assert body["failures"] == {}
        keys = body["device_keys"][alice.user_id][alice.device_id]
        assert keys["keys"][f"ed25519:{alice.device_id}"] == alice.device.ed25519
        assert keys["keys"][f"curve25519:{alice.device_id}"] == alice.device.curve25519
        # The device's own signature survived the trip.
        assert verify_signed_json(keys, alice.user_id, f"ed25519:{alice.device_id}",
                                  alice.device.ed25519)
        # A device filter applies to the remote answer too.
        body = await query(hb, bob, {alice.user_id: ["NOSUCHDEVICE"]})
        assert body["device_keys"][alice.user_id] == {}

        # Each claim hands out another one-time key, then the fallback key.
        claimed = [await claim_one(hb, bob, alice) for _ in range(3)]
        assert len({k["key"] for k in claimed}) == 3
        assert not any(k.get("fallback") for k in claimed)
        assert (await claim_one(hb, bob, alice)).get("fallback") is True


async def test_unreachable_servers_are_failures_within_the_timeout(
        peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        bob = await person(hb)
        alice_id = f"@alice:{a.name}"
        nowhere = "127.0.0.1:1"  # nothing listens there
        started = time.monotonic()
        body = await query(hb, bob, {alice_id: [], f"@x:{nowhere}": []}, timeout=3000)
        assert set(body["failures"]) == {nowhere}
        assert body["device_keys"][alice_id] == {}
        body = await claim(hb, bob, {f"@x:{nowhere}": {"DEV": SIGNED_CURVE25519}},
                           timeout=3000)
        assert set(body["failures"]) == {nowhere}
        assert time.monotonic() - started < 10


async def test_federation_key_endpoints_need_a_signed_request(
        peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30, verify=False) as ha:
        alice = await person(ha)
        for method, path, body in (
                ("POST", "/_matrix/federation/v1/user/keys/query",
                 {"device_keys": {alice.user_id: []}}),
                ("POST", "/_matrix/federation/v1/user/keys/claim",
                 {"one_time_keys": {alice.user_id: {alice.device_id: SIGNED_CURVE25519}}}),
                ("GET", f"/_matrix/federation/v1/user/devices/{q(alice.user_id)}", None)):
            r = await ha.request(method, path, json=body)
            assert r.status_code == 401, (path, r.text)
        # Signed by B: the device list, with keys and the stream position.
        caller = FederationCaller(ha, a, b)
        r = await caller.request("GET",
                                 f"/_matrix/federation/v1/user/devices/{q(alice.user_id)}")
        assert r.status_code == 200, r.text
        devices = r.json()
        assert devices["user_id"] == alice.user_id
        assert devices["stream_id"] > 0
        [device] = devices["devices"]
        assert device["device_id"] == alice.device_id
        assert verify_signed_json(device["keys"], alice.user_id,
                                  f"ed25519:{alice.device_id}", alice.device.ed25519)
        r = await caller.request("GET", f"/_matrix/federation/v1/user/devices/{q('@x:' + b.name)}")
        assert r.status_code == 400, r.text


# -- to-device ----------------------------------------------------------------------------------


async def test_to_device_messages_cross_servers_once(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice, bob = await person(ha), await person(hb)
        since = (await sync(hb, bob))["next_batch"]
        latencies: list[float] = []
        for i in range(5):
            started = time.monotonic()
            # The same transaction ID twice: sent (and delivered) once.
            for _ in range(2):
                await send_to_device(ha, alice, bob, "org.example.ping", {"n": i},
                                     txn_id=f"ping{i}")
            events, body = await wait_for_to_device(hb, bob, since, "org.example.ping")
            latencies.append(time.monotonic() - started)
            assert events == [{"type": "org.example.ping", "sender": alice.user_id,
                               "content": {"n": i}}]
            since = body["next_batch"]
        print(f"\nto-device latency A -> B (send -> /sync): median "
              f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
              f" over {len(latencies)}")
        # Nothing more arrives: each message came exactly once.
        body = await sync(hb, bob, since, timeout_ms=500)
        assert body.get("to_device", {}).get("events", []) == []

        # And the other way, to every device of alice ("*").
        alice_since = (await sync(ha, alice))["next_batch"]
        r = await hb.put(f"{CLIENT}/sendToDevice/org.example.pong/{unique('txn')}",
                         json={"messages": {alice.user_id: {"*": {"ok": True}}}},
                         headers=bearer(bob.token))
        assert r.status_code == 200, r.text
        events, _ = await wait_for_to_device(ha, alice, alice_since, "org.example.pong")
        assert events == [{"type": "org.example.pong", "sender": bob.user_id,
                           "content": {"ok": True}}]


# -- Olm + Megolm across servers ----------------------------------------------------------------


async def test_olm_and_megolm_between_servers(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice, bob = await person(ha), await person(hb)
        r = await ha.post(f"{CLIENT}/createRoom", headers=bearer(alice.token), json={
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.encryption", "state_key": "",
                               "content": {"algorithm": MEGOLM}}]})
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]
        await join_remote(hb, bob, room_id, a.name)
        bob_since = (await sync(hb, bob))["next_batch"]
        alice_since = (await sync(ha, alice))["next_batch"]

        # Alice looks up Bob's device on B, checks its signature, claims a one-time key.
        bob_keys = (await query(ha, alice, {bob.user_id: []}))["device_keys"][bob.user_id][
            bob.device_id]
        assert verify_signed_json(bob_keys, bob.user_id, f"ed25519:{bob.device_id}",
                                  bob.device.ed25519)
        otk = await claim_one(ha, alice, bob)

        # The Megolm session key goes to Bob over Olm, then the encrypted message.
        megolm = MegolmOutbound(alice.device, room_id)
        olm_content = alice.device.olm_encrypt(bob_keys, "m.room_key",
                                               megolm.room_key_content(),
                                               one_time_key=otk["key"])
        await send_to_device(ha, alice, bob, "m.room.encrypted", olm_content)
        encrypted = megolm.encrypt("m.room.message", {"msgtype": "m.text", "body": "secret"})
        r = await ha.put(room_path(room_id, "send", "m.room.encrypted", unique("txn")),
                         json=encrypted, headers=bearer(alice.token))
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]

        [to_device], _ = await wait_for_to_device(hb, bob, bob_since, "m.room.encrypted")
        assert to_device["sender"] == alice.user_id
        plaintext = bob.device.olm_decrypt(to_device)
        assert plaintext["type"] == "m.room_key"
        # The sender's keys match what B reports of Alice's device (asked of A).
        alice_keys = (await query(hb, bob, {alice.user_id: [alice.device_id]})
                      )["device_keys"][alice.user_id][alice.device_id]
        assert alice_keys["keys"][f"ed25519:{alice.device_id}"] == plaintext["keys"]["ed25519"]
        inbound = MegolmInbound(plaintext["content"])

        async def encrypted_event() -> dict[str, Any] | None:
            r = await hb.get(room_path(room_id, "event", event_id), headers=bearer(bob.token))
            return r.json() if r.status_code == 200 else None

        # Polling another process: there is no event to wait on.
        with trio.fail_after(DEADLINE_S):
            while (event := await encrypted_event()) is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert inbound.decrypt(event, room_id) == {
            "type": "m.room.message", "room_id": room_id,
            "content": {"msgtype": "m.text", "body": "secret"}}

        # Bob answers over the established Olm session (a type-1 message), B -> A.
        reply = bob.device.olm_encrypt(alice_keys, "org.example.ack", {"event_id": event_id})
        assert reply["ciphertext"][alice.device.curve25519]["type"] == 1
        await send_to_device(hb, bob, alice, "m.room.encrypted", reply)
        [ack], _ = await wait_for_to_device(ha, alice, alice_since, "m.room.encrypted")
        assert alice.device.olm_decrypt(ack)["content"] == {"event_id": event_id}


async def test_a_new_device_reaches_the_other_server(peers: tuple[Peer, Peer]) -> None:
    """m.device_list_update: B drops its cached copy and tells Bob's client."""
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice, bob = await person(ha), await person(hb)
        await shared_room(ha, hb, alice, bob, a.name)
        assert list((await query(hb, bob, {alice.user_id: []}))["device_keys"][
            alice.user_id]) == [alice.device_id]  # cached on B from now on
        since = (await sync(hb, bob))["next_batch"]

        r = await login(ha, alice.user_id)
        assert r.status_code == 200, r.text
        second = Person(alice.user_id, r.json()["access_token"],
                        OlmDevice(alice.user_id, r.json()["device_id"]))
        await upload(ha, second, second.device.upload_body(one_time_keys=1))

        with trio.fail_after(DEADLINE_S):
            while True:
                body = await sync(hb, bob, since, timeout_ms=5000)
                if alice.user_id in body.get("device_lists", {}).get("changed", []):
                    break
                since = body["next_batch"]
        devices = (await query(hb, bob, {alice.user_id: []}))["device_keys"][alice.user_id]
        assert set(devices) == {alice.device_id, second.device_id}


async def wait_for_change(http: httpx.AsyncClient, who: Person, since: str,
                          user_id: str) -> str:
    """Long-poll /sync until device_lists.changed names `user_id`; return next_batch."""
    with trio.fail_after(DEADLINE_S):
        while True:
            body = await sync(http, who, since, timeout_ms=5000)
            since = body["next_batch"]
            if user_id in body.get("device_lists", {}).get("changed", []):
                return since


async def test_a_deleted_device_leaves_the_other_server(peers: tuple[Peer, Peer]) -> None:
    """m.device_list_update with deleted: true, sent when Alice deletes a device on A."""
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice, bob = await person(ha), await person(hb)
        await shared_room(ha, hb, alice, bob, a.name)
        since = (await sync(hb, bob))["next_batch"]
        r = await login(ha, alice.user_id)
        assert r.status_code == 200, r.text
        second = Person(alice.user_id, r.json()["access_token"],
                        OlmDevice(alice.user_id, r.json()["device_id"]))
        await upload(ha, second, second.device.upload_body(one_time_keys=1))
        since = await wait_for_change(hb, bob, since, alice.user_id)
        devices = (await query(hb, bob, {alice.user_id: []}))["device_keys"][alice.user_id]
        assert set(devices) == {alice.device_id, second.device_id}  # cached on B now

        r = await ha.request("DELETE", f"{CLIENT}/devices/{second.device_id}",
                             json={"auth": password_auth(alice.user_id)},
                             headers=bearer(alice.token))
        assert r.status_code == 200, r.text
        since = await wait_for_change(hb, bob, since, alice.user_id)
        devices = (await query(hb, bob, {alice.user_id: []}))["device_keys"][alice.user_id]
        assert set(devices) == {alice.device_id}

        # Logging out is a deletion too.
        r = await ha.post(f"{CLIENT}/logout", json={}, headers=bearer(alice.token))
        assert r.status_code == 200, r.text
        await wait_for_change(hb, bob, since, alice.user_id)
        assert (await query(hb, bob, {alice.user_id: []}))["device_keys"][alice.user_id] == {}


async def test_devices_logged_out_by_the_offline_command_leave_the_other_server(
        peers: tuple[Peer, Peer]) -> None:
    """`trioserver reset-password` run beside the server logs Alice's devices out in another
    process; the server announces the deletions (queued by the command) to the other server."""
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice, bob = await person(ha), await person(hb)
        await shared_room(ha, hb, alice, bob, a.name)
        since = (await sync(hb, bob))["next_batch"]
        devices = (await query(hb, bob, {alice.user_id: []}))["device_keys"][alice.user_id]
        assert set(devices) == {alice.device_id}  # cached on B

        out = await run_cli("reset-password", alice.user_id, "--data-dir", a.proc.data_dir,
                            "--server-name", a.name,
                            stdin="a brand new passphrase\n")
        assert out.returncode == 0, out.stderr
        await wait_for_change(hb, bob, since, alice.user_id)
        assert (await query(hb, bob, {alice.user_id: []}))["device_keys"][alice.user_id] == {}
