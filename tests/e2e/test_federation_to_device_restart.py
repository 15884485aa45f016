"""To-device messages across servers exactly once through restarts (m.direct_to_device is
"ordered, exactly once, per destination device"): the sender's outbox survives its restart,
and the receiver remembers the message_ids it delivered across its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from tests.e2e.helpers import bearer, register, unique
from tests.e2e.test_federation_two_servers import _peer_at
from tests.federation_peer import FederationCaller, free_port

CLIENT = "/_matrix/client/v3"


async def _sync(http: httpx.AsyncClient, token: str, since: str | None = None,
                timeout_ms: int = 0) -> dict[str, Any]:
    params = {"timeout": str(timeout_ms)}
    if since is not None:
        params["since"] = since
    r = await http.get(f"{CLIENT}/sync", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _collect(http: httpx.AsyncClient, token: str, since: str, event_type: str,
                   within_s: float) -> tuple[list[dict[str, Any]], str]:
    """Every to-device event of `event_type` /sync returns within `within_s`, following
    next_batch (so each is acknowledged as a client would)."""
    events: list[dict[str, Any]] = []
    with trio.move_on_after(within_s):
        while True:
            body = await _sync(http, token, since, timeout_ms=1000)
            events += [e for e in body.get("to_device", {}).get("events", [])
                       if e["type"] == event_type]
            since = body["next_batch"]
    return events, since


async def test_to_device_sent_while_the_receiver_is_down_survives_the_senders_restart(
        tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    a, b = _peer_at(tmp_path / "a", port_a), _peer_at(tmp_path / "b", port_b)
    try:
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
                httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            alice = await register(ha, "alice")
            bob = await register(hb, "bob")
            since = (await _sync(hb, bob["access_token"]))["next_batch"]
        b.proc.stop()
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha:
            for n in range(3):
                r = await ha.put(f"{CLIENT}/sendToDevice/org.example.ping/{unique('t')}",
                                 json={"messages": {bob["user_id"]: {
                                     bob["device_id"]: {"n": n}}}},
                                 headers=bearer(alice["access_token"]))
                assert r.status_code == 200, r.text
        a.proc.stop()  # what A had queued in memory is gone with it
        b = _peer_at(tmp_path / "b", port_b)
        a = _peer_at(tmp_path / "a", port_a)
        async with httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            events: list[dict[str, Any]] = []
            # Generous: A's first attempt may meet B still starting, and it then backs off.
            with trio.fail_after(45):
                while len(events) < 3:
                    body = await _sync(hb, bob["access_token"], since, timeout_ms=1000)
                    events += [e for e in body.get("to_device", {}).get("events", [])
                               if e["type"] == "org.example.ping"]
                    since = body["next_batch"]
            more, _ = await _collect(hb, bob["access_token"], since, "org.example.ping", 3.0)
        # In order, and exactly once.
        assert [e["content"]["n"] for e in events + more] == [0, 1, 2]
        assert all(e["sender"] == alice["user_id"] for e in events)
    finally:
        a.proc.stop()
        b.proc.stop()


async def test_a_replayed_message_id_is_not_delivered_again_after_the_receivers_restart(
        tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    a, b = _peer_at(tmp_path / "a", port_a), _peer_at(tmp_path / "b", port_b)
    try:
        async with httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            bob = await register(hb, "bob")
            since = (await _sync(hb, bob["access_token"]))["next_batch"]
        edu = {"edu_type": "m.direct_to_device", "content": {
            "sender": f"@alice:{a.name}", "type": "org.example.once",
            "message_id": unique("mid"),
            "messages": {bob["user_id"]: {bob["device_id"]: {"hello": 1}}}}}

        async def send_edu(http: httpx.AsyncClient) -> None:
            # A new transaction ID each time: only the message_id says it is a repeat.
            body = {"origin": a.name, "origin_server_ts": 1_700_000_000_000, "pdus": [],
                    "edus": [edu]}
            r = await FederationCaller(http, b, a).request(
                "PUT", f"/_matrix/federation/v1/send/{unique('txn')}", body=body)
            assert r.status_code == 200, r.text

        async with httpx.AsyncClient(timeout=30, verify=False) as http, \
                httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            await send_edu(http)
            events, since = await _collect(hb, bob["access_token"], since, "org.example.once",
                                           2.0)
            assert [e["content"] for e in events] == [{"hello": 1}]
        b.proc.stop()
        b = _peer_at(tmp_path / "b", port_b)
        async with httpx.AsyncClient(timeout=30, verify=False) as http, \
                httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            await send_edu(http)
            events, _ = await _collect(hb, bob["access_token"], since, "org.example.once", 2.0)
            assert events == []
    finally:
        a.proc.stop()
        b.proc.stop()
