"""Typing, read receipts and presence between two trioservers over TLS (federation EDUs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.helpers import bearer, create_room, register, room_path, send_text
from tests.federation_peer import FederationCaller, Peer, new_txn_id, q, start_tls_peer

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


class Syncer:
    """One user's incremental /sync, remembering its token."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token
        self.since: str | None = None

    async def next(self, timeout_ms: int = 1000) -> dict[str, Any]:
        params = {"timeout": str(timeout_ms)}
        if self.since is not None:
            params["since"] = self.since
        r = await self.http.get("/_matrix/client/v3/sync", params=params,
                                headers=bearer(self.token))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        self.since = body["next_batch"]
        return body

    async def until(self, room_id: str, event_type: str,
                    check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first ephemeral `event_type` of the room for which `check` holds."""
        with trio.fail_after(DEADLINE_S):
            while True:
                body = await self.next()
                room = body.get("rooms", {}).get("join", {}).get(room_id, {})
                for event in room.get("ephemeral", {}).get("events", []):
                    if event["type"] == event_type and check(event["content"]):
                        found: dict[str, Any] = event
                        return found


async def _shared_room(ha: httpx.AsyncClient, hb: httpx.AsyncClient, a: Peer
                       ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A public room on A that bob (on B) has joined, A knowing it: (room, alice, bob)."""
    alice = await register(ha, "alice")
    bob = await register(hb, "bob")
    room = await create_room(ha, alice["access_token"], preset="public_chat")
    r = await hb.post(f"/_matrix/client/v3/join/{room}", params={"via": a.name}, json={},
                      headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    return room, alice, bob


async def _typing(http: httpx.AsyncClient, user: dict[str, Any], room: str,
                  typing: bool) -> None:
    r = await http.put(room_path(room, "typing", user["user_id"]),
                       json={"typing": typing, "timeout": 30_000},
                       headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text


async def test_typing_receipts_and_presence_reach_the_other_server(
        peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        room, alice, bob = await _shared_room(ha, hb, a)
        bobs = Syncer(hb, bob["access_token"])
        await bobs.next(0)

        started = time.perf_counter()
        await _typing(ha, alice, room, True)
        await bobs.until(room, "m.typing", lambda c: alice["user_id"] in c["user_ids"])
        took = time.perf_counter() - started
        print(f"typing on A seen in /sync on B: {took * 1000:.0f} ms")  # a figure, with -s
        await _typing(ha, alice, room, False)
        await bobs.until(room, "m.typing", lambda c: c["user_ids"] == [])

        # And back: bob typing on B shows on A.
        alices = Syncer(ha, alice["access_token"])
        await alices.next(0)
        await _typing(hb, bob, room, True)
        await alices.until(room, "m.typing", lambda c: c["user_ids"] == [bob["user_id"]])

        event_id = await send_text(ha, alice["access_token"], room, "read me")

        async def message_on_b() -> bool:
            r = await hb.get(room_path(room, "event", event_id),
                             headers=bearer(bob["access_token"]))
            return r.status_code == 200

        with trio.fail_after(DEADLINE_S):
            while not await message_on_b():  # noqa: ASYNC110 (another process)
                await trio.sleep(0.05)
        r = await ha.post(room_path(room, "receipt", "m.read", event_id), json={},
                          headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        receipt = await bobs.until(
            room, "m.receipt",
            lambda c: alice["user_id"] in c.get(event_id, {}).get("m.read", {}))
        assert isinstance(receipt["content"][event_id]["m.read"][alice["user_id"]]["ts"], int)

        r = await ha.put(f"/_matrix/client/v3/presence/{q(alice['user_id'])}/status",
                         json={"presence": "online", "status_msg": "on A"},
                         headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text

        async def presence_on_b() -> dict[str, Any] | None:
            r = await hb.get(f"/_matrix/client/v3/presence/{q(alice['user_id'])}/status",
                             headers=bearer(bob["access_token"]))
            body: dict[str, Any] = r.json()
            return body if r.status_code == 200 and body.get("status_msg") == "on A" else None

        with trio.fail_after(DEADLINE_S):
            while (seen := await presence_on_b()) is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert seen["presence"] == "online"
        assert seen["currently_active"] is True


async def test_edus_for_users_of_other_servers_are_ignored(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb, \
            httpx.AsyncClient(timeout=30) as http:
        room, alice, bob = await _shared_room(ha, hb, a)
        event_id = await send_text(hb, bob["access_token"], room, "mine")
        bobs = Syncer(hb, bob["access_token"])
        await bobs.next(0)
        # A (signing as itself) claims B's own user bob types and read, next to a true EDU
        # for alice: only alice's parts count.
        as_a = FederationCaller(http, b, a)
        edus = [
            {"edu_type": "m.typing",
             "content": {"room_id": room, "user_id": bob["user_id"], "typing": True}},
            {"edu_type": "m.typing",
             "content": {"room_id": room, "user_id": "@stranger:" + a.name, "typing": True}},
            {"edu_type": "m.receipt", "content": {room: {"m.read": {
                bob["user_id"]: {"event_ids": [event_id], "data": {"ts": 1}},
                alice["user_id"]: {"event_ids": [event_id], "data": {"ts": 2}}}}}},
            {"edu_type": "m.presence", "content": {"push": [
                {"user_id": bob["user_id"], "presence": "offline", "last_active_ago": 1,
                 "status_msg": "forged"}]}},
            {"edu_type": "m.typing",
             "content": {"room_id": room, "user_id": alice["user_id"], "typing": True}},
        ]
        body = {"origin": a.name, "origin_server_ts": 1, "pdus": [], "edus": edus}
        r = await as_a.request("PUT", f"/_matrix/federation/v1/send/{new_txn_id()}", body=body)
        assert r.status_code == 200, r.text
        typing = await bobs.until(room, "m.typing", lambda c: bool(c["user_ids"]))
        assert typing["content"]["user_ids"] == [alice["user_id"]]
        receipts = await _receipts_of(hb, bob["access_token"], room)
        assert receipts == {event_id: {alice["user_id"]}}
        r = await hb.get(f"/_matrix/client/v3/presence/{q(bob['user_id'])}/status",
                         headers=bearer(bob["access_token"]))
        assert r.json().get("status_msg") != "forged"


async def _receipts_of(http: httpx.AsyncClient, token: str, room: str) -> dict[str, set[str]]:
    """Event ID -> users with a public read receipt there, from an initial /sync."""
    r = await http.get("/_matrix/client/v3/sync", headers=bearer(token))
    ephemeral = r.json()["rooms"]["join"][room]["ephemeral"]["events"]
    out: dict[str, set[str]] = {}
    for event in ephemeral:
        if event["type"] == "m.receipt":
            for event_id, kinds in event["content"].items():
                out.setdefault(event_id, set()).update(kinds.get("m.read", {}))
    return out
