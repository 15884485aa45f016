"""Two trioserver instances federating over TLS: joins both ways, chat, history, bans, ACLs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.helpers import (
    bearer,
    create_room,
    login,
    put_state,
    register,
    room_path,
    send_text,
)
from tests.e2e.sliding_helpers import V4, Conn
from tests.federation_peer import Peer, free_port, start_tls_peer
from tests.server_process import start_server
from tests.tls_certs import make_cert
from trioserver.services.events.signing import parse_key_file_line

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


async def _bodies(http: httpx.AsyncClient, token: str, room: str) -> list[str]:
    r = await http.get(room_path(room, "messages"), params={"dir": "b", "limit": "50"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["content"].get("body") for e in r.json()["chunk"]
            if e["type"] == "m.room.message"]


async def _knock_room(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    """A private room people may knock on."""
    return await create_room(http, token, preset="private_chat", initial_state=[{
        "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
                             **body)


async def _eventually(check: Any, within_s: float = DEADLINE_S) -> None:
    # Polling another process: there is no event to wait on.
    with trio.fail_after(within_s):
        while not await check():  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_join_chat_history_both_ways(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        room = await create_room(ha, alice["access_token"], preset="public_chat",
                                 name="on A")
        for i in range(3):
            await send_text(ha, alice["access_token"], room, f"before {i}")
        # Bob (on B) joins A's room through A.
        r = await hb.post(f"/_matrix/client/v3/join/{room}", params={"via": a.name},
                          json={}, headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        await send_text(hb, bob["access_token"], room, "hello from B")
        await send_text(ha, alice["access_token"], room, "hello from A")

        async def both_see_both() -> bool:
            seen_a = await _bodies(ha, alice["access_token"], room)
            seen_b = await _bodies(hb, bob["access_token"], room)
            return all(m in seen_a and m in seen_b for m in ("hello from A", "hello from B"))

        await _eventually(both_see_both)
        # B fetched the history from before its join (backfill).
        assert {"before 0", "before 1", "before 2"} <= set(
            await _bodies(hb, bob["access_token"], room))
        # State set on A reaches B.
        await put_state(ha, alice["access_token"], room, "m.room.topic", {"topic": "federated"})

        async def topic_on_b() -> bool:
            r = await hb.get(room_path(room, "state", "m.room.topic"),
                             headers=bearer(bob["access_token"]))
            return r.status_code == 200 and r.json().get("topic") == "federated"

        await _eventually(topic_on_b)

        # And the reverse: a room on B joined from A.
        room_b = await create_room(hb, bob["access_token"], preset="public_chat")
        r = await ha.post(f"/_matrix/client/v3/join/{room_b}", params={"via": b.name},
                          json={}, headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        await send_text(ha, alice["access_token"], room_b, "alice in B's room")

        async def on_b() -> bool:
            return "alice in B's room" in await _bodies(hb, bob["access_token"], room_b)

        await _eventually(on_b)


async def test_a_ban_on_one_server_holds_on_the_other(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        room = await create_room(ha, alice["access_token"], preset="public_chat")
        r = await hb.post(f"/_matrix/client/v3/join/{room}", params={"via": a.name},
                          json={}, headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        r = await ha.post(room_path(room, "ban"), json={"user_id": bob["user_id"]},
                          headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text

        async def banned_on_b() -> bool:
            r = await hb.get(room_path(room, "state", "m.room.member", bob["user_id"]),
                             headers=bearer(bob["access_token"]))
            return r.status_code == 200 and r.json().get("membership") == "ban"

        await _eventually(banned_on_b)
        # B refuses locally to send for a banned user, and A would refuse it anyway.
        r = await hb.put(room_path(room, "send", "m.room.message", "x"),
                         json={"msgtype": "m.text", "body": "still here?"},
                         headers=bearer(bob["access_token"]))
        assert r.status_code == 403, r.text
        assert "still here?" not in await _bodies(ha, alice["access_token"], room)


async def test_server_acl_shuts_a_server_out(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        room = await create_room(ha, alice["access_token"], preset="public_chat")
        r = await put_state(ha, alice["access_token"], room, "m.room.server_acl",
                            {"allow": ["*"], "deny": [b.name.split(":")[0]],
                             "allow_ip_literals": True})
        assert r.status_code == 200, r.text
        r = await hb.post(f"/_matrix/client/v3/join/{room}", params={"via": a.name},
                          json={}, headers=bearer(bob["access_token"]))
        assert r.status_code in (403, 404), r.text
        r = await ha.get(room_path(room, "state", "m.room.member", bob["user_id"]),
                         headers=bearer(alice["access_token"]))
        assert r.status_code == 404


async def test_invites_across_servers_join_and_reject(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        first = (await hb.get("/_matrix/client/v3/sync",
                              headers=bearer(bob["access_token"]))).json()["next_batch"]
        rooms = []
        for name in ("accept me", "reject me"):
            room = await create_room(ha, alice["access_token"], preset="private_chat",
                                     name=name)
            r = await ha.post(room_path(room, "invite"), json={"user_id": bob["user_id"]},
                              headers=bearer(alice["access_token"]))
            assert r.status_code == 200, r.text
            rooms.append(room)
        accept, reject = rooms
        # The invites reach Bob's /sync on B, with the stripped state A sent.
        r = await hb.get("/_matrix/client/v3/sync", params={"since": first},
                         headers=bearer(bob["access_token"]))
        invites = r.json()["rooms"]["invite"]
        assert set(invites) == {accept, reject}
        names = [e["content"].get("name") for e in invites[accept]["invite_state"]["events"]
                 if e["type"] == "m.room.name"]
        assert names == ["accept me"]
        assert invites[accept]["invite_state"]["events"][-1]["content"]["membership"] == "invite"
        # Joining an invite-only room on A works through the inviter's server.
        r = await hb.post(f"/_matrix/client/v3/join/{accept}", json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        r = await hb.post(room_path(reject, "leave"), json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        later = (await hb.get("/_matrix/client/v3/sync", params={"since": first},
                              headers=bearer(bob["access_token"]))).json()["rooms"]
        assert accept in later.get("join", {})
        assert reject in later.get("leave", {})
        assert not later.get("invite")
        await send_text(hb, bob["access_token"], accept, "thanks for the invite")

        async def rejected_on_a() -> bool:
            # The rejection went to A over make_leave / send_leave.
            r = await ha.get(room_path(reject, "state", "m.room.member", bob["user_id"]),
                             headers=bearer(alice["access_token"]))
            return r.status_code == 200 and r.json().get("membership") == "leave"

        await _eventually(rejected_on_a)

        async def on_a() -> bool:
            return "thanks for the invite" in await _bodies(ha, alice["access_token"], accept)

        await _eventually(on_a)


def _peer_at(data_dir: Path, port: int) -> Peer:
    """A TLS peer on a given port and data dir (so it can be restarted as the same server)."""
    certs = make_cert(data_dir / "tls", name="127.0.0.1")
    config = (f'[tls]\ncert = "{certs.cert}"\nkey = "{certs.key}"\n'
              f'listen = "127.0.0.1:{port}"\n'
              "[federation]\ninsecure_skip_verify = true\nallow_private_addresses = true\n"
              "trusted_key_servers = []\n")
    proc = start_server(data_dir / "data", "--open-registration", "--no-rate-limits",
                        config_text=config, server_name=f"127.0.0.1:{port}")
    return Peer(proc, f"127.0.0.1:{port}",
                parse_key_file_line((proc.data_dir / "signing.key").read_text()))


async def test_events_queued_for_a_down_server_survive_a_restart(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    a, b = _peer_at(tmp_path / "a", port_a), _peer_at(tmp_path / "b", port_b)
    try:
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
                httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            alice = await register(ha, "alice")
            bob = await register(hb, "bob")
            room = await create_room(ha, alice["access_token"], preset="public_chat")
            r = await hb.post(f"/_matrix/client/v3/join/{room}", params={"via": a.name},
                              json={}, headers=bearer(bob["access_token"]))
            assert r.status_code == 200, r.text
        b.proc.stop()
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha:
            await send_text(ha, alice["access_token"], room, "sent while B was down")
        a.proc.stop()  # what A had queued in memory is gone with it
        b = _peer_at(tmp_path / "b", port_b)
        a = _peer_at(tmp_path / "a", port_a)
        async with httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            token = (await login(hb, "bob")).json()["access_token"]

            async def arrived() -> bool:
                return "sent while B was down" in await _bodies(hb, token, room)

            # Generous: under load the first attempt may meet B still starting, and the
            # sender then backs off (1 s, 2 s, 4 s, ...) before it tries again.
            await _eventually(arrived, within_s=45.0)
    finally:
        a.proc.stop()
        b.proc.stop()


async def test_knock_across_servers_then_invite_and_join(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        room = await _knock_room(ha, alice["access_token"], name="knock here")
        first = (await hb.get("/_matrix/client/v3/sync",
                              headers=bearer(bob["access_token"]))).json()["next_batch"]
        r = await hb.post(f"/_matrix/client/v3/knock/{room}", params={"via": a.name},
                          json={"reason": "let me in"}, headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        # A holds the knock; B's /sync shows it with the stripped state A sent.
        r = await ha.get(room_path(room, "state", "m.room.member", bob["user_id"]),
                         headers=bearer(alice["access_token"]))
        assert r.json()["membership"] == "knock"
        synced = (await hb.get("/_matrix/client/v3/sync", params={"since": first},
                               headers=bearer(bob["access_token"]))).json()
        knock_state = synced["rooms"]["knock"][room]["knock_state"]["events"]
        assert any(e["type"] == "m.room.name" and e["content"]["name"] == "knock here"
                   for e in knock_state)
        # Alice lets Bob in: the invite replaces the knock, and Bob joins.
        r = await ha.post(room_path(room, "invite"), json={"user_id": bob["user_id"]},
                          headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        r = await hb.post(f"/_matrix/client/v3/join/{room}", json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        await send_text(hb, bob["access_token"], room, "knocked and came in")

        async def on_a() -> bool:
            return "knocked and came in" in await _bodies(ha, alice["access_token"], room)

        await _eventually(on_a)


async def test_create_room_with_a_remote_invitee_reaches_them(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        room = await create_room(ha, alice["access_token"], preset="trusted_private_chat",
                                 is_direct=True, invite=[bob["user_id"]])

        async def invited_on_b() -> bool:
            r = await hb.get("/_matrix/client/v3/sync", headers=bearer(bob["access_token"]))
            return room in r.json().get("rooms", {}).get("invite", {})

        await _eventually(invited_on_b)
        r = await hb.post(f"/_matrix/client/v3/join/{room}", json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text


async def test_sliding_sync_lists_invites_and_knocks_from_other_servers(
        peers: tuple[Peer, Peer]) -> None:
    """Element X-class clients see invites from (and knocks on) rooms of another server with
    the stripped state it sent, in the invites list, woken from a long-poll; once answered,
    the rooms move on (joined with a timeline, rejected as left)."""
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        conn = Conn(hb, bob["access_token"], V4)
        lists = {"all": V4.list_config(5, range_=(0, 20)),
                 "invites": V4.list_config(0, range_=(0, 20), filters={"is_invited": True})}
        first = await conn.sync(lists)
        assert first["lists"]["invites"]["count"] == 0
        knockable = await _knock_room(ha, alice["access_token"], name="knock here")
        r = await hb.post(f"/_matrix/client/v3/knock/{knockable}", params={"via": a.name},
                          json={}, headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        rooms = []
        for name in ("accept me", "reject me"):
            room = await create_room(ha, alice["access_token"], preset="private_chat",
                                     name=name)
            r = await ha.post(room_path(room, "invite"), json={"user_id": bob["user_id"]},
                              headers=bearer(alice["access_token"]))
            assert r.status_code == 200, r.text
            rooms.append(room)
        accept, reject = rooms
        seen: dict[str, Any] = {}
        with trio.fail_after(DEADLINE_S):
            while set(seen) != {accept, reject, knockable}:
                body = await conn.sync(lists, timeout_ms=5000)
                seen.update(body.get("rooms", {}))
        assert body["lists"]["invites"]["count"] == 2
        for room_id, membership, name in ((accept, "invite", "accept me"),
                                          (reject, "invite", "reject me"),
                                          (knockable, "knock", "knock here")):
            result = seen[room_id]
            assert result["membership"] == membership, result
            stripped = result["stripped_state"]
            assert [e["content"]["name"] for e in stripped if e["type"] == "m.room.name"] \
                == [name]
            assert stripped[-1]["state_key"] == bob["user_id"]
            assert stripped[-1]["content"]["membership"] == membership
        # Nothing new: the long-poll waits instead of re-sending them.
        quiet = await conn.sync(lists, timeout_ms=300)
        assert not quiet.get("rooms")

        r = await hb.post(f"/_matrix/client/v3/join/{accept}", json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        r = await hb.post(room_path(reject, "leave"), json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        after: dict[str, Any] = {}
        with trio.fail_after(DEADLINE_S):
            while after.get(accept, {}).get("membership") != "join" or \
                    after.get(reject, {}).get("membership") != "leave":
                body = await conn.sync(lists, timeout_ms=5000)
                after.update(body.get("rooms", {}))
        assert after[accept]["initial"] is True
        assert any(e["type"] == "m.room.create" for e in after[accept]["timeline"]) or \
            after[accept]["timeline"]
        assert body["lists"]["invites"]["count"] == 0


async def test_retracting_a_knock_reaches_the_room_server(peers: tuple[Peer, Peer]) -> None:
    """Leaving a room one knocked on over federation retracts the knock on the room's server
    (make_leave / send_leave through the server the knock went to), not only locally."""
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        room = await _knock_room(ha, alice["access_token"])
        r = await hb.post(f"/_matrix/client/v3/knock/{room}", params={"via": a.name},
                          json={}, headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        r = await hb.post(room_path(room, "leave"), json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        r = await ha.get(room_path(room, "state", "m.room.member", bob["user_id"]),
                         headers=bearer(alice["access_token"]))
        assert r.json()["membership"] == "leave", r.text
        synced = (await hb.get("/_matrix/client/v3/sync",
                               headers=bearer(bob["access_token"]))).json()
        assert room not in synced.get("rooms", {}).get("knock", {})
