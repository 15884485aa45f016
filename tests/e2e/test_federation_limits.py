"""Resilience: a busy or hostile server is rate-limited; queues and backoff show in /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.federation_peer import FederationCaller, start_tls_peer


async def test_requests_from_one_server_are_rate_limited(tmp_path: Path) -> None:
    target = start_tls_peer(tmp_path / "a", rate_limited=True, extra_config=(
        "[rate_limits]\nfederation_per_origin = { per_second = 0.01, burst = 3 }\n"))
    origin = start_tls_peer(tmp_path / "b")
    other = start_tls_peer(tmp_path / "c")
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            as_b = FederationCaller(http, target, origin)
            statuses = [(await as_b.send([])).status_code for _ in range(5)]
            assert statuses[:3] == [200, 200, 200], statuses
            assert statuses[3:] == [429, 429], statuses
            r = await as_b.send([])
            assert r.json()["errcode"] == "M_LIMIT_EXCEEDED"
            assert r.json()["retry_after_ms"] > 0
            # Another server is not affected.
            assert (await FederationCaller(http, target, other).send([])).status_code == 200
    finally:
        target.proc.stop()
        origin.proc.stop()
        other.proc.stop()


async def test_backoff_towards_a_dead_server_is_visible_in_metrics(tmp_path: Path) -> None:
    a = start_tls_peer(tmp_path / "a")
    b = start_tls_peer(tmp_path / "b")
    try:
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
                httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            alice = (await ha.post("/_matrix/client/v3/register", json={
                "username": "alice", "password": "a long password",
                "auth": {"type": "m.login.dummy"}})).json()
            bob = (await hb.post("/_matrix/client/v3/register", json={
                "username": "bob", "password": "a long password",
                "auth": {"type": "m.login.dummy"}})).json()
            auth_a = {"Authorization": f"Bearer {alice['access_token']}"}
            room = (await ha.post("/_matrix/client/v3/createRoom", headers=auth_a,
                                  json={"preset": "public_chat"})).json()["room_id"]
            r = await hb.post(f"/_matrix/client/v3/join/{room}", params={"via": a.name},
                              json={}, headers={"Authorization":
                                                f"Bearer {bob['access_token']}"})
            assert r.status_code == 200, r.text
        b.proc.stop()
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha:
            for i in range(3):
                r = await ha.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t{i}",
                                 json={"msgtype": "m.text", "body": "into the void"},
                                 headers=auth_a)
                assert r.status_code == 200  # local users never wait for a dead server
            text = (await ha.get(a.proc.listener_url("metrics"))).text
            assert "trioserver_federation_destinations " in text
            metrics = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                       if line.startswith("trioserver_federation_")}
            assert metrics["trioserver_federation_pending_pdus"] >= 1, metrics
    finally:
        a.proc.stop()
        b.proc.stop()
