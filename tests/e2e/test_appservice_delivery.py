"""Pushing events to an application service (spec "Application Service API": Pushing events):
in order, each transaction once, the same txn ID on retry, nothing lost over a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.e2e.fake_appservice import TXN_PREFIX, FakeAppservice, fake_appservice
from tests.e2e.helpers import bearer, create_room, register, room_path, send_text, unique
from tests.server_process import ServerProcess

HS_TOKEN = "hs-token-for-tests"


def _registration(tmp_path: Path, url: str) -> str:
    path = tmp_path / f"{unique('as')}.yaml"
    path.write_text(
        f"id: bridge\nurl: {url}\nas_token: as-token-for-tests\nhs_token: {HS_TOKEN}\n"
        "sender_localpart: bridgebot\nnamespaces:\n"
        "  users:\n    - exclusive: false\n      regex: '@bridged_.*'\n"
        "  aliases: []\n  rooms: []\n", encoding="utf-8")
    return str(path)


def _config(registration: str) -> str:
    return f'appservice_registrations = ["{registration}"]\n'


async def _bridged_room(http: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    """Alice's public room, which a user in the appservice's namespace has joined."""
    alice = await register(http)
    bridged = await register(http, unique("bridged_"))
    room_id = await create_room(http, alice["access_token"], preset="public_chat")
    r = await http.post(room_path(room_id, "join"), json={},
                        headers=bearer(bridged["access_token"]))
    assert r.status_code == 200, r.text
    return alice, room_id


def _assert_once(service: FakeAppservice) -> None:
    txn_ids = [txn for txn, _ in service.accepted()]
    assert len(txn_ids) == len(set(txn_ids)), txn_ids
    event_ids = [e["event_id"] for _, body in service.accepted() for e in body["events"]]
    assert len(event_ids) == len(set(event_ids))


ServerFactory = Callable[..., ServerProcess]


def _start(server_factory: ServerFactory, tmp_path: Path, service: FakeAppservice,
           *flags: str) -> ServerProcess:
    return server_factory("--open-registration", *flags,
                          config_text=_config(_registration(tmp_path, service.url)))


async def test_messages_in_a_bridged_room_arrive_in_order_once(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service:
        server = _start(server_factory, tmp_path, service)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice, room_id = await _bridged_room(http)
            token = alice["access_token"]
            other_room = await create_room(http, token)
            await send_text(http, token, other_room, "not for the bridge")
            sent = [await send_text(http, token, room_id, f"m{n}") for n in range(5)]
            got = await service.wait_for(5)
    assert [e["event_id"] for e in got] == sent
    assert all(e["room_id"] == room_id for e in got)
    assert all(a.authorization == f"Bearer {HS_TOKEN}" for a in service.attempts)
    assert all(a.method == "PUT" and a.path.startswith(TXN_PREFIX) for a in service.attempts)
    _assert_once(service)


async def test_failed_transaction_is_retried_with_the_same_txn_id(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service:
        server = _start(server_factory, tmp_path, service)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice, room_id = await _bridged_room(http)
            await trio.sleep(0.5)  # let the join's transaction through first
            service.answers = [500]
            event_id = await send_text(http, alice["access_token"], room_id, "retry me")
            got = await service.wait_for(1)
    assert [e["event_id"] for e in got] == [event_id]
    failed = [a for a in service.attempts if a.status == 500]
    assert len(failed) == 1
    retried = [a for a in service.attempts if a.path == failed[0].path]
    assert [a.status for a in retried] == [500, 200]
    assert retried[0].body == retried[1].body
    _assert_once(service)


async def test_a_successful_ping_ends_the_back_off(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service:
        server = _start(server_factory, tmp_path, service)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice, room_id = await _bridged_room(http)
            await service.wait_for(1, "m.room.member")
            service.answers = [503] * 3  # failures at 0 s, +1 s, +2 s; the next try at +4 s
            event_id = await send_text(http, alice["access_token"], room_id, "after the outage")
            await service.wait_until(lambda: not service.answers)
            r = await http.post("/_matrix/client/v1/appservice/bridge/ping", json={},
                                headers=bearer("as-token-for-tests"))
            assert r.status_code == 200, r.text
            pinged = trio.current_time()
            got = await service.wait_for(1)
    assert [e["event_id"] for e in got] == [event_id]
    delivered = next(a.at for a in service.attempts if a.status == 200
                     and event_id in a.body.decode())
    assert delivered - pinged < 1.5  # not the 4 s of back-off that was left


async def test_nothing_is_lost_or_duplicated_over_a_restart(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    data_dir = tmp_path / "hs"
    async with fake_appservice() as service:
        config = _config(_registration(tmp_path, service.url))
        server = server_factory("--open-registration", config_text=config,
                                data_dir=data_dir)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice, room_id = await _bridged_room(http)
            token = alice["access_token"]
            await trio.sleep(0.5)
            service.answers = [503] * 1000  # down: transactions pile up
            before = [await send_text(http, token, room_id, f"b{n}") for n in range(3)]
            await trio.sleep(0.5)
        server.stop()
        service.answers = []
        server = server_factory("--open-registration", config_text=config,
                                data_dir=data_dir)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            after = [await send_text(http, token, room_id, f"a{n}") for n in range(3)]
            got = await service.wait_for(6)
    assert [e["event_id"] for e in got] == before + after
    _assert_once(service)
    failed_txns = {a.path for a in service.attempts if a.status != 200}
    accepted_txns = {a.path for a in service.attempts if a.status == 200}
    assert failed_txns <= accepted_txns  # the transaction recorded before the restart was re-sent


async def test_concurrent_senders_each_arrive_once_in_their_order(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    """10 senders at once: every event arrives once, in stream order (which keeps each sender's
    order). Speed is measured by `make bench` (bench/appservice.py), not here."""
    count = 300
    async with fake_appservice() as service:
        # One user sends 300 events as fast as it can: past rate_limits.events_per_user.
        server = _start(server_factory, tmp_path, service, "--no-rate-limits")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice, room_id = await _bridged_room(http)
            token = alice["access_token"]
            sent: dict[int, list[str]] = {}
            async with trio.open_nursery() as nursery:
                for worker in range(10):
                    async def send_some(w: int = worker) -> None:
                        sent[w] = [await send_text(http, token, room_id, f"t{w}-{n}")
                                   for n in range(count // 10)]
                    nursery.start_soon(send_some)
            got = await service.wait_for(count, within_s=120)
            r = await http.get(room_path(room_id, "messages"), headers=bearer(token),
                               params={"dir": "f", "limit": 1000})
            timeline = [e["event_id"] for e in r.json()["chunk"]
                        if e["type"] == "m.room.message"]
    _assert_once(service)
    delivered = [e["event_id"] for e in got]
    assert delivered == timeline
    for ids in sent.values():
        assert [e for e in delivered if e in set(ids)] == ids
