"""Read receipts pushed to an application service (spec "Application Service API": Pushing
ephemeral data) are read from the receipts table after the appservice's position, so those
stored while it is down reach it once it is back, even across a homeserver restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.e2e.fake_appservice import FakeAppservice, fake_appservice
from tests.e2e.helpers import bearer, create_room, register, room_path, send_text, unique
from tests.server_process import ServerProcess

ServerFactory = Callable[..., ServerProcess]


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / f"{unique('as')}.yaml"
    path.write_text(
        f"id: rc\nurl: {url}\nas_token: as-rc\nhs_token: hs-rc\nsender_localpart: rcbot\n"
        "receive_ephemeral: true\n"
        "namespaces:\n  users:\n    - exclusive: true\n      regex: '@rc_.*'\n"
        "  aliases: []\n  rooms: []\n", encoding="utf-8")
    return f'appservice_registrations = ["{path}"]\n'


async def _ghost(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.post("/_matrix/client/v3/register", headers=bearer("as-rc"), json={
        "type": "m.login.application_service", "username": unique("rc_")})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _receipt(http: httpx.AsyncClient, token: str, room_id: str, receipt_type: str,
                   event_id: str) -> None:
    r = await http.post(room_path(room_id, "receipt", receipt_type, event_id), json={},
                        headers=bearer(token))
    assert r.status_code == 200, r.text


def _readers(service: FakeAppservice) -> list[tuple[str, str, str, str]]:
    """(room, event, receipt type, user) of every receipt pushed, duplicates kept."""
    return [(e["room_id"], event_id, receipt_type, user)
            for e in service.ephemeral("m.receipt")
            for event_id, by_type in e["content"].items()
            for receipt_type, users in by_type.items() for user in users]


async def test_receipts_stored_while_the_appservice_is_down_survive_a_restart(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    data_dir = tmp_path / "hs"
    async with fake_appservice() as service:
        config = _config(tmp_path, service.url)
        server = server_factory("--open-registration", config_text=config, data_dir=data_dir)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice = await register(http)
            ghost = await _ghost(http)
            room_id = await create_room(http, alice["access_token"], preset="public_chat")
            r = await http.post(room_path(room_id, "join"), json={},
                                headers=bearer(ghost["access_token"]))
            assert r.status_code == 200, r.text
            elsewhere = await create_room(http, alice["access_token"])  # of no interest
            await send_text(http, alice["access_token"], room_id, "warm up")
            await service.wait_for(1)

            # The appservice goes down: a transaction with this message is pending, so what
            # follows can only wait for it to be answered.
            service.answers = [503] * 1000
            event_id = await send_text(http, alice["access_token"], room_id, "read me")
            await service.wait_until(lambda: any(a.status == 503 for a in service.attempts))
            await _receipt(http, alice["access_token"], room_id, "m.read", event_id)
            await _receipt(http, alice["access_token"], room_id, "m.read.private", event_id)
            await _receipt(http, ghost["access_token"], room_id, "m.read.private", event_id)
            other = await send_text(http, alice["access_token"], elsewhere, "unseen")
            await _receipt(http, alice["access_token"], elsewhere, "m.read", other)
        server.stop()

        service.answers = []
        server = server_factory("--open-registration", config_text=config, data_dir=data_dir)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            await service.wait_until(lambda: (room_id, event_id, "m.read", alice["user_id"])
                                     in _readers(service))
            # Later transactions do not carry the receipts again.
            await send_text(http, alice["access_token"], room_id, "after")
            await service.wait_for(3)
            await trio.sleep(0.5)

    readers = _readers(service)
    assert readers.count((room_id, event_id, "m.read", alice["user_id"])) == 1
    assert readers.count((room_id, event_id, "m.read.private", ghost["user_id"])) == 1
    # A private receipt only of the appservice's own users; nothing from the other room.
    assert (room_id, event_id, "m.read.private", alice["user_id"]) not in readers
    assert all(room == room_id for room, *_ in readers)
    assert [e["content"]["body"] for e in service.delivered()] == ["warm up", "read me", "after"]
    txn_ids = [txn for txn, _ in service.accepted()]
    assert len(txn_ids) == len(set(txn_ids))
