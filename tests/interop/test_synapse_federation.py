"""Federation with Synapse: a trioserver and the reference Synapse share rooms over real TLS.

`make test-interop` starts Synapse in federation mode (client API on SYNAPSE_URL, federating
as SYNAPSE_SERVER_NAME with a TLS listener, loopback allowed, certificates unchecked) and runs
this module with TRIOSERVER_INTEROP=1. The trioserver federates as `127.0.0.1:<port>` on its own
TLS listener. Every cross-server expectation is polled with a deadline: federation is
asynchronous on both sides.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.helpers import bearer, login, register, unique
from tests.e2e.olm_device import (
    MEGOLM,
    MegolmInbound,
    MegolmOutbound,
    OlmDevice,
    verify_signed_json,
)
from tests.e2e.test_federation_e2ee import (
    Person,
    claim_one,
    person,
    query,
    send_to_device,
    sync,
    upload,
    wait_for_to_device,
)
from tests.federation_peer import Peer, q, start_tls_peer

SYNAPSE_URL = os.environ.get("SYNAPSE_URL", "http://127.0.0.1:18030")
SYNAPSE_NAME = os.environ.get("SYNAPSE_SERVER_NAME", "127.0.0.1:18448")
DEADLINE_S = 30.0
THROUGHPUT_MESSAGES = 200


@pytest.fixture(scope="module")
def trioserver_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    try:
        httpx.get(f"{SYNAPSE_URL}/_matrix/client/versions", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        pytest.fail(f"no Synapse at {SYNAPSE_URL} ({e}): run `make test-interop`")
    peer = start_tls_peer(tmp_path_factory.mktemp("interop"))
    yield peer
    peer.proc.stop()


@dataclass
class User:
    """One user on one server, through its client API."""

    http: httpx.AsyncClient
    user_id: str
    token: str

    async def call(self, method: str, path: str, body: Any | None = None,
                   **params: str) -> httpx.Response:
        return await self.http.request(method, f"/_matrix/client/v3{path}", json=body,
                                       params=params or None, headers=bearer(self.token))

    async def ok(self, method: str, path: str, body: Any | None = None,
                 **params: str) -> dict[str, Any]:
        r = await self.call(method, path, body, **params)
        assert r.status_code == 200, f"{self.user_id} {method} {path}: {r.text}"
        result: dict[str, Any] = r.json()
        return result

    async def create_public_room(self, **body: Any) -> str:
        created = await self.ok("POST", "/createRoom", {"preset": "public_chat", **body})
        room_id: str = created["room_id"]
        return room_id

    async def join(self, room_id: str, via: str) -> httpx.Response:
        return await self.call("POST", f"/join/{q(room_id)}", {}, server_name=via)

    async def send_text(self, room_id: str, body: str) -> httpx.Response:
        return await self.call("PUT", f"/rooms/{q(room_id)}/send/m.room.message/{unique('t')}",
                               {"msgtype": "m.text", "body": body})

    async def set_state(self, room_id: str, event_type: str, content: dict[str, Any],
                        state_key: str = "") -> dict[str, Any]:
        return await self.ok("PUT", f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}",
                             content)

    async def state(self, room_id: str, event_type: str, state_key: str = ""
                    ) -> dict[str, Any] | None:
        r = await self.call("GET", f"/rooms/{q(room_id)}/state/{event_type}/{q(state_key)}")
        if r.status_code != 200:
            return None
        content: dict[str, Any] = r.json()
        return content

    async def bodies(self, room_id: str, limit: int = 50) -> list[str]:
        """Message bodies, newest first, from /messages."""
        r = await self.call("GET", f"/rooms/{q(room_id)}/messages", dir="b", limit=str(limit))
        if r.status_code != 200:
            return []
        return [e["content"]["body"] for e in r.json()["chunk"]
                if e["type"] == "m.room.message" and "body" in e["content"]]

    async def membership(self, room_id: str, user_id: str) -> str | None:
        content = await self.state(room_id, "m.room.member", user_id)
        return None if content is None else content.get("membership")


async def eventually(check: Callable[[], Awaitable[Any]], what: str,
                     within_s: float = DEADLINE_S) -> Any:
    """Poll `check` until it returns something truthy; fail after `within_s` seconds."""
    deadline = trio.current_time() + within_s
    while True:
        if result := await check():
            return result
        if trio.current_time() > deadline:
            pytest.fail(f"not within {within_s:.0f} s: {what}")
        await trio.sleep(0.1)


@dataclass
class Servers:
    trioserver: httpx.AsyncClient
    synapse: httpx.AsyncClient
    trioserver_name: str

    async def trio_user(self) -> User:
        account = await register(self.trioserver, unique("alice"))
        return User(self.trioserver, account["user_id"], account["access_token"])

    async def synapse_user(self) -> User:
        account = await register(self.synapse, unique("bob"))
        return User(self.synapse, account["user_id"], account["access_token"])


@pytest.fixture
async def servers(trioserver_peer: Peer) -> AsyncIterator[Servers]:
    async with httpx.AsyncClient(base_url=trioserver_peer.proc.url, timeout=60) as ours, \
            httpx.AsyncClient(base_url=SYNAPSE_URL, timeout=60) as synapse:
        yield Servers(ours, synapse, trioserver_peer.name)


async def shared_room(servers: Servers, figures: list[str] | None = None
                      ) -> tuple[str, User, User]:
    """A public room on trioserver that a Synapse user has joined: (room, alice, bob)."""
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    room_id = await alice.create_public_room(name="interop")
    started = time.perf_counter()
    r = await bob.join(room_id, servers.trioserver_name)
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    if figures is not None:
        figures.append(f"Synapse user joins a trioserver room: {took * 1000:.0f} ms")
    await eventually(lambda: alice.membership(room_id, bob.user_id),
                     "trioserver sees the Synapse user's join")
    return room_id, alice, bob


async def test_synapse_user_joins_and_both_talk(servers: Servers, figures: list[str]) -> None:
    room_id, alice, bob = await shared_room(servers, figures)
    assert await alice.membership(room_id, bob.user_id) == "join"
    assert (await bob.state(room_id, "m.room.name")) == {"name": "interop"}
    assert (await alice.send_text(room_id, "hello synapse")).status_code == 200
    assert (await bob.send_text(room_id, "hello trioserver")).status_code == 200

    async def both_see_both() -> bool:
        want = {"hello synapse", "hello trioserver"}
        return want <= set(await alice.bodies(room_id)) and want <= set(await bob.bodies(room_id))

    await eventually(both_see_both, "each server sees both messages")


async def test_state_changes_travel_both_ways(servers: Servers) -> None:
    room_id, alice, bob = await shared_room(servers)
    await alice.set_state(room_id, "m.room.name", {"name": "named on trioserver"})
    await alice.set_state(room_id, "m.room.topic", {"topic": "topic from trioserver"})

    async def synapse_sees_them() -> bool:
        return (await bob.state(room_id, "m.room.name") == {"name": "named on trioserver"} and
                await bob.state(room_id, "m.room.topic") == {"topic": "topic from trioserver"})

    await eventually(synapse_sees_them, "Synapse sees the name and topic set on trioserver")

    # Without power, Synapse itself refuses; with it, the change reaches trioserver.
    r = await bob.call("PUT", f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "no"})
    assert r.status_code == 403, r.text
    levels = await alice.state(room_id, "m.room.power_levels")
    assert levels is not None
    levels["users"] = {**levels.get("users", {}), bob.user_id: 50}
    await alice.set_state(room_id, "m.room.power_levels", levels)

    async def bob_has_power() -> bool:
        theirs = await bob.state(room_id, "m.room.power_levels")
        return theirs is not None and theirs.get("users", {}).get(bob.user_id) == 50

    await eventually(bob_has_power, "Synapse sees the Synapse user's new power level")
    await bob.set_state(room_id, "m.room.topic", {"topic": "topic from Synapse"})
    await bob.set_state(room_id, "m.room.name", {"name": "named on Synapse"})

    async def trioserver_sees_them() -> bool:
        return (await alice.state(room_id, "m.room.topic") == {"topic": "topic from Synapse"}
                and await alice.state(room_id, "m.room.name") == {"name": "named on Synapse"})

    await eventually(trioserver_sees_them, "trioserver sees the topic and name set on Synapse")


async def test_synapse_user_leaves_and_rejoins(servers: Servers) -> None:
    room_id, alice, bob = await shared_room(servers)
    await bob.ok("POST", f"/rooms/{q(room_id)}/leave", {})

    async def left() -> bool:
        return await alice.membership(room_id, bob.user_id) == "leave"

    await eventually(left, "trioserver sees the Synapse user leave")
    # While out, Synapse's copy no longer follows the room.
    assert (await alice.send_text(room_id, "while you were out")).status_code == 200

    r = await bob.join(room_id, servers.trioserver_name)
    assert r.status_code == 200, r.text

    async def joined() -> bool:
        return await alice.membership(room_id, bob.user_id) == "join"

    await eventually(joined, "trioserver sees the Synapse user rejoin")
    assert (await bob.send_text(room_id, "back again")).status_code == 200
    assert (await alice.send_text(room_id, "welcome back")).status_code == 200

    async def both_see() -> bool:
        return ("back again" in await alice.bodies(room_id)
                and "welcome back" in await bob.bodies(room_id))

    await eventually(both_see, "messages after the rejoin reach both servers")


async def test_ban_on_trioserver_is_enforced_on_synapse(servers: Servers) -> None:
    room_id, alice, bob = await shared_room(servers)
    # A second Synapse user stays in the room, to look at it from Synapse after the ban.
    carol = await servers.synapse_user()
    assert (await carol.join(room_id, servers.trioserver_name)).status_code == 200
    await eventually(lambda: alice.membership(room_id, carol.user_id), "carol's join")
    await alice.ok("POST", f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id,
                                                         "reason": "interop"})

    async def banned_on_synapse() -> bool:
        return await carol.membership(room_id, bob.user_id) == "ban"

    await eventually(banned_on_synapse, "Synapse shows the Synapse user banned")
    r = await bob.send_text(room_id, "am I still here?")
    assert r.status_code == 403, r.text
    r = await bob.join(room_id, servers.trioserver_name)
    assert r.status_code == 403, r.text
    assert (await carol.send_text(room_id, "carol still talks")).status_code == 200
    await eventually(lambda: _has(alice, room_id, "carol still talks"),
                     "trioserver gets carol's message after the ban")
    assert "am I still here?" not in await alice.bodies(room_id)
    assert await alice.membership(room_id, bob.user_id) == "ban"


async def _has(user: User, room_id: str, body: str) -> bool:
    return body in await user.bodies(room_id)


async def test_throughput_from_trioserver_to_synapse(servers: Servers,
                                                      figures: list[str]) -> None:
    room_id, alice, bob = await shared_room(servers)
    tag = unique("burst")
    wanted = {f"{tag} {n}" for n in range(THROUGHPUT_MESSAGES)}
    started = time.perf_counter()
    for n in range(THROUGHPUT_MESSAGES):
        r = await alice.send_text(room_id, f"{tag} {n}")
        assert r.status_code == 200, r.text
    sent = time.perf_counter() - started

    async def all_arrived() -> bool:
        return wanted <= set(await bob.bodies(room_id, limit=THROUGHPUT_MESSAGES + 20))

    await eventually(all_arrived, f"Synapse has all {THROUGHPUT_MESSAGES} messages", 90)
    total = time.perf_counter() - started
    figures.append(f"trioserver -> Synapse: {THROUGHPUT_MESSAGES} messages sent in {sent:.2f} s "
                   f"({THROUGHPUT_MESSAGES / sent:.0f}/s at the client API), all on Synapse "
                   f"after {total:.2f} s ({THROUGHPUT_MESSAGES / total:.0f} messages/s)")


async def test_trioserver_user_joins_a_synapse_room(servers: Servers,
                                                     figures: list[str]) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    room_id = await bob.create_public_room(name="on synapse")
    for i in range(3):
        assert (await bob.send_text(room_id, f"before the join {i}")).status_code == 200
    started = time.perf_counter()
    r = await alice.join(room_id, SYNAPSE_NAME)
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    figures.append(f"trioserver user joins a Synapse room: {took * 1000:.0f} ms")
    await eventually(lambda: bob.membership(room_id, alice.user_id),
                     "Synapse sees the trioserver user's join")
    assert await alice.state(room_id, "m.room.name") == {"name": "on synapse"}
    assert (await alice.send_text(room_id, "hello from trioserver")).status_code == 200
    assert (await bob.send_text(room_id, "hello from Synapse")).status_code == 200
    await eventually(lambda: _has(bob, room_id, "hello from trioserver"),
                     "Synapse gets the trioserver user's message")
    await eventually(lambda: _has(alice, room_id, "hello from Synapse"),
                     "trioserver gets the Synapse user's message")
    # History from before the join comes from Synapse by backfill.
    assert {f"before the join {i}" for i in range(3)} <= set(await alice.bodies(room_id))


async def _invited_to(user: User, room_id: str) -> bool:
    body = await user.ok("GET", "/sync", timeout="0")
    return room_id in body.get("rooms", {}).get("invite", {})


async def test_direct_messages_by_invite_both_ways(servers: Servers) -> None:
    """Private rooms (how Element starts DMs): invite across servers, join, talk."""
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    # Synapse -> trioserver: the invite arrives over /invite and shows in alice's /sync.
    created = await bob.ok("POST", "/createRoom", {"preset": "trusted_private_chat",
                                                   "is_direct": True,
                                                   "invite": [alice.user_id]})
    dm_from_synapse = created["room_id"]
    await eventually(lambda: _invited_to(alice, dm_from_synapse),
                     "trioserver shows Synapse's invite")
    r = await alice.call("POST", f"/join/{q(dm_from_synapse)}", {})
    assert r.status_code == 200, r.text
    assert (await bob.send_text(dm_from_synapse, "dm from Synapse")).status_code == 200
    await eventually(lambda: _has(alice, dm_from_synapse, "dm from Synapse"),
                     "the trioserver user reads the Synapse DM")
    # trioserver -> Synapse: the invite is countersigned by Synapse before it is sent.
    dm_from_us = (await alice.ok("POST", "/createRoom", {"preset": "private_chat",
                                                         "is_direct": True}))["room_id"]
    await alice.ok("POST", f"/rooms/{q(dm_from_us)}/invite", {"user_id": bob.user_id})
    await eventually(lambda: _invited_to(bob, dm_from_us), "Synapse shows our invite")
    r = await bob.call("POST", f"/join/{q(dm_from_us)}", {})
    assert r.status_code == 200, r.text
    assert (await alice.send_text(dm_from_us, "dm from trioserver")).status_code == 200
    await eventually(lambda: _has(bob, dm_from_us, "dm from trioserver"),
                     "the Synapse user reads the trioserver DM")


async def test_invites_rejected_across_servers(servers: Servers) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    # A Synapse user rejects our invite (Synapse asks us with make_leave / send_leave).
    ours = (await alice.ok("POST", "/createRoom", {"preset": "private_chat"}))["room_id"]
    await alice.ok("POST", f"/rooms/{q(ours)}/invite", {"user_id": bob.user_id})
    await eventually(lambda: _invited_to(bob, ours), "Synapse shows our invite")
    await bob.ok("POST", f"/rooms/{q(ours)}/leave", {})
    await eventually(lambda: _is(alice, ours, bob.user_id, "leave"),
                     "trioserver sees the Synapse user's rejection")
    # A trioserver user rejects Synapse's invite (we ask Synapse with make_leave / send_leave).
    theirs = (await bob.ok("POST", "/createRoom", {"preset": "private_chat",
                                                   "invite": [alice.user_id]}))["room_id"]
    await eventually(lambda: _invited_to(alice, theirs), "trioserver shows Synapse's invite")
    await alice.ok("POST", f"/rooms/{q(theirs)}/leave", {})
    await eventually(lambda: _is(bob, theirs, alice.user_id, "leave"),
                     "Synapse sees the trioserver user's rejection")


async def _is(user: User, room_id: str, member: str, membership: str) -> bool:
    return await user.membership(room_id, member) == membership


async def test_knocks_across_servers(servers: Servers) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    knock_rules = [{"type": "m.room.join_rules", "state_key": "",
                    "content": {"join_rule": "knock"}}]
    # A Synapse user knocks on a trioserver room (make_knock / send_knock to us).
    ours = (await alice.ok("POST", "/createRoom", {"preset": "private_chat",
                                                   "initial_state": knock_rules}))["room_id"]
    r = await bob.call("POST", f"/knock/{q(ours)}", {}, server_name=servers.trioserver_name)
    assert r.status_code == 200, r.text
    await eventually(lambda: _is(alice, ours, bob.user_id, "knock"),
                     "trioserver holds the Synapse user's knock")
    # A trioserver user knocks on a Synapse room (make_knock / send_knock to Synapse).
    theirs = (await bob.ok("POST", "/createRoom", {"preset": "private_chat",
                                                   "initial_state": knock_rules}))["room_id"]
    r = await alice.call("POST", f"/knock/{q(theirs)}", {}, server_name=SYNAPSE_NAME)
    assert r.status_code == 200, r.text
    await eventually(lambda: _is(bob, theirs, alice.user_id, "knock"),
                     "Synapse holds the trioserver user's knock")
    await bob.ok("POST", f"/rooms/{q(theirs)}/invite", {"user_id": alice.user_id})
    await eventually(lambda: _invited_to(alice, theirs), "the knocker is invited")
    r = await alice.call("POST", f"/join/{q(theirs)}", {})
    assert r.status_code == 200, r.text


async def _ephemeral_until(user: User, room_id: str, since: str, event_type: str,
                           check: Callable[[dict[str, Any]], bool], what: str) -> str:
    """Poll the user's /sync from `since` until the room has a matching ephemeral event;
    returns the token to go on from."""
    token = since

    async def seen() -> bool:
        nonlocal token
        body = await user.ok("GET", "/sync", since=token, timeout="1000")
        token = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        return any(e["type"] == event_type and check(e["content"])
                   for e in room.get("ephemeral", {}).get("events", []))

    await eventually(seen, what)
    return token


def _read_by(user_id: str, event_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda content: user_id in content.get(event_id, {}).get("m.read", {})


async def test_typing_and_receipts_both_ways(servers: Servers, figures: list[str]) -> None:
    room_id, alice, bob = await shared_room(servers)
    since_a = (await alice.ok("GET", "/sync", timeout="0"))["next_batch"]
    since_b = (await bob.ok("GET", "/sync", timeout="0"))["next_batch"]
    typing = f"/rooms/{q(room_id)}/typing/"

    started = time.perf_counter()
    await alice.ok("PUT", typing + q(alice.user_id), {"typing": True, "timeout": 30_000})
    since_b = await _ephemeral_until(bob, room_id, since_b, "m.typing",
                                     lambda c: alice.user_id in c["user_ids"],
                                     "Synapse shows the trioserver user typing")
    figures.append(f"typing trioserver -> Synapse /sync: "
                   f"{(time.perf_counter() - started) * 1000:.0f} ms")
    await alice.ok("PUT", typing + q(alice.user_id), {"typing": False})
    since_b = await _ephemeral_until(bob, room_id, since_b, "m.typing",
                                     lambda c: alice.user_id not in c["user_ids"],
                                     "Synapse shows the trioserver user stopped typing")

    started = time.perf_counter()
    await bob.ok("PUT", typing + q(bob.user_id), {"typing": True, "timeout": 30_000})
    since_a = await _ephemeral_until(alice, room_id, since_a, "m.typing",
                                     lambda c: bob.user_id in c["user_ids"],
                                     "trioserver shows the Synapse user typing")
    figures.append(f"typing Synapse -> trioserver /sync: "
                   f"{(time.perf_counter() - started) * 1000:.0f} ms")

    r = await alice.send_text(room_id, "read this, Synapse")
    assert r.status_code == 200, r.text
    ours = r.json()["event_id"]
    await eventually(lambda: _has(bob, room_id, "read this, Synapse"), "the message on Synapse")
    await alice.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(ours)}", {})
    await _ephemeral_until(bob, room_id, since_b, "m.receipt", _read_by(alice.user_id, ours),
                           "Synapse shows the trioserver user's read receipt")
    # Bob reads alice's message on Synapse: the receipt comes back to trioserver.
    await bob.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(ours)}", {})
    await _ephemeral_until(alice, room_id, since_a, "m.receipt", _read_by(bob.user_id, ours),
                           "trioserver shows the Synapse user's read receipt")


# -- media, profiles and aliases ---------------------------------------------------------------

def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (80, 60), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def _upload(user: User, data: bytes, content_type: str) -> str:
    r = await user.http.post("/_matrix/media/v3/upload", params={"filename": "f.bin"},
                             content=data,
                             headers={**bearer(user.token), "Content-Type": content_type})
    assert r.status_code == 200, f"upload by {user.user_id}: {r.text}"
    uri: str = r.json()["content_uri"]
    return uri.removeprefix("mxc://")


async def _download(user: User, server_and_id: str) -> httpx.Response:
    return await user.http.get(f"/_matrix/client/v1/media/download/{server_and_id}",
                               headers=bearer(user.token))


async def test_media_both_ways(servers: Servers, figures: list[str]) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    data = os.urandom(1024 * 1024)
    on_synapse = await _upload(bob, data, "application/octet-stream")
    started = time.perf_counter()
    r = await _download(alice, on_synapse)
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert r.content == data
    figures.append(f"1 MB of Synapse media fetched by trioserver: {took * 1000:.0f} ms")
    png_on_synapse = await _upload(bob, _png(), "image/png")
    r = await alice.http.get(f"/_matrix/client/v1/media/thumbnail/{png_on_synapse}",
                             params={"width": "32", "height": "32"}, headers=bearer(alice.token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/")

    on_trioserver = await _upload(alice, data, "application/octet-stream")
    started = time.perf_counter()
    r = await _download(bob, on_trioserver)
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert r.content == data
    figures.append(f"1 MB of trioserver media fetched by Synapse: {took * 1000:.0f} ms")
    png_on_trioserver = await _upload(alice, _png(), "image/png")
    r = await bob.http.get(f"/_matrix/client/v1/media/thumbnail/{png_on_trioserver}",
                           params={"width": "32", "height": "32"}, headers=bearer(bob.token))
    assert r.status_code == 200, r.text


async def test_profiles_both_ways(servers: Servers) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    await bob.ok("PUT", f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob S"})
    await alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice T"})
    assert (await alice.ok("GET", f"/profile/{q(bob.user_id)}"))["displayname"] == "Bob S"
    assert await alice.ok("GET", f"/profile/{q(bob.user_id)}/displayname") == {
        "displayname": "Bob S"}
    assert (await bob.ok("GET", f"/profile/{q(alice.user_id)}"))["displayname"] == "Alice T"


async def test_alias_join_both_ways(servers: Servers) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    local = unique("lobby")
    room_on_synapse = await bob.create_public_room(room_alias_name=local)
    alias = f"#{local}:{SYNAPSE_NAME}"
    found = await alice.ok("GET", f"/directory/room/{q(alias)}")
    assert found["room_id"] == room_on_synapse
    assert SYNAPSE_NAME in found["servers"]
    joined = await alice.ok("POST", f"/join/{q(alias)}", {})
    assert joined["room_id"] == room_on_synapse
    await eventually(lambda: bob.membership(room_on_synapse, alice.user_id),
                     "Synapse sees the trioserver user's join by alias")

    room_on_trioserver = await alice.create_public_room(room_alias_name=local)
    alias = f"#{local}:{servers.trioserver_name}"
    found = await bob.ok("GET", f"/directory/room/{q(alias)}")
    assert found["room_id"] == room_on_trioserver
    joined = await bob.ok("POST", f"/join/{q(alias)}", {})
    assert joined["room_id"] == room_on_trioserver


async def test_public_rooms_of_trioserver_from_synapse(servers: Servers) -> None:
    alice, bob = await servers.trio_user(), await servers.synapse_user()
    name = unique("listed")
    room_id = await alice.create_public_room(name=name, visibility="public")
    listed = await bob.ok("POST", "/publicRooms",
                          {"filter": {"generic_search_term": name}},
                          server=servers.trioserver_name)
    assert [c["room_id"] for c in listed["chunk"]] == [room_id]


# -- end-to-end encryption ---------------------------------------------------------------------

async def _encrypted_event(user: User, room_id: str, event_id: str) -> dict[str, Any] | None:
    r = await user.call("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}")
    if r.status_code != 200:
        return None
    event: dict[str, Any] = r.json()
    return event


async def _device_keys(http: httpx.AsyncClient, asker: Person, target: Person
                       ) -> dict[str, Any]:
    """`target`'s device keys as `asker`'s server reports them, with the self-signature checked."""
    body = await query(http, asker, {target.user_id: []})
    assert body["failures"] == {}, body
    keys: dict[str, Any] = body["device_keys"][target.user_id][target.device_id]
    assert keys["keys"][f"ed25519:{target.device_id}"] == target.device.ed25519
    assert keys["keys"][f"curve25519:{target.device_id}"] == target.device.curve25519
    assert verify_signed_json(keys, target.user_id, f"ed25519:{target.device_id}",
                              target.device.ed25519)
    return keys


async def test_olm_and_megolm_with_a_synapse_user_both_ways(servers: Servers,
                                                            figures: list[str]) -> None:
    """Real vodozemac Olm + Megolm between a trioserver user and a Synapse user: keys queried
    and claimed across servers, room keys over to-device, encrypted room messages each way,
    and a new device of the trioserver user reaching Synapse."""
    ours, theirs = servers.trioserver, servers.synapse
    alice, bob = await person(ours), await person(theirs)
    alice_u = User(ours, alice.user_id, alice.token)
    bob_u = User(theirs, bob.user_id, bob.token)

    created = await alice_u.ok("POST", "/createRoom", {
        "preset": "private_chat",
        "initial_state": [{"type": "m.room.encryption", "state_key": "",
                           "content": {"algorithm": MEGOLM}}]})
    room_id: str = created["room_id"]
    await alice_u.ok("POST", f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    await eventually(lambda: _invited_to(bob_u, room_id), "Synapse shows the invite")
    r = await bob_u.call("POST", f"/join/{q(room_id)}", {})
    assert r.status_code == 200, r.text
    await eventually(lambda: _is(alice_u, room_id, bob.user_id, "join"),
                     "trioserver sees the Synapse user's join")
    assert await bob_u.state(room_id, "m.room.encryption") == {"algorithm": MEGOLM}
    bob_since = (await sync(theirs, bob))["next_batch"]
    alice_since = (await sync(ours, alice))["next_batch"]

    # trioserver -> Synapse: alice asks trioserver for bob's keys (federation to Synapse).
    bob_keys = await _device_keys(ours, alice, bob)
    otk = await claim_one(ours, alice, bob)
    alice_megolm = MegolmOutbound(alice.device, room_id)
    olm_content = alice.device.olm_encrypt(bob_keys, "m.room_key",
                                           alice_megolm.room_key_content(),
                                           one_time_key=otk["key"])
    started = time.perf_counter()
    await send_to_device(ours, alice, bob, "m.room.encrypted", olm_content)
    [to_bob], body = await wait_for_to_device(theirs, bob, bob_since, "m.room.encrypted")
    figures.append(f"to-device (Olm room key) trioserver -> Synapse /sync: "
                   f"{(time.perf_counter() - started) * 1000:.0f} ms")
    bob_since = body["next_batch"]
    assert to_bob["sender"] == alice.user_id
    room_key = bob.device.olm_decrypt(to_bob)
    assert room_key["type"] == "m.room_key"
    assert room_key["keys"] == {"ed25519": alice.device.ed25519}
    bob_inbound = MegolmInbound(room_key["content"])

    encrypted = alice_megolm.encrypt("m.room.message",
                                     {"msgtype": "m.text", "body": "secret from trioserver"})
    ours_id = (await alice_u.ok("PUT", f"/rooms/{q(room_id)}/send/m.room.encrypted/"
                                f"{unique('txn')}", encrypted))["event_id"]
    event = await eventually(lambda: _encrypted_event(bob_u, room_id, ours_id),
                             "Synapse has the encrypted message")
    assert event["type"] == "m.room.encrypted"
    assert bob_inbound.decrypt(event, room_id) == {
        "type": "m.room.message", "room_id": room_id,
        "content": {"msgtype": "m.text", "body": "secret from trioserver"}}

    # Synapse -> trioserver: bob asks Synapse for alice's keys (federation to trioserver) and
    # starts his own Olm session from one of her one-time keys. OlmDevice keeps one session
    # per peer (a real client keeps several), so both forget the first one.
    alice_keys = await _device_keys(theirs, bob, alice)
    otk = await claim_one(theirs, bob, alice)
    bob.device.sessions.pop(alice.device.curve25519)
    alice.device.sessions.pop(bob.device.curve25519)
    bob_megolm = MegolmOutbound(bob.device, room_id)
    olm_content = bob.device.olm_encrypt(alice_keys, "m.room_key",
                                         bob_megolm.room_key_content(), one_time_key=otk["key"])
    assert olm_content["ciphertext"][alice.device.curve25519]["type"] == 0
    started = time.perf_counter()
    await send_to_device(theirs, bob, alice, "m.room.encrypted", olm_content)
    [to_alice], _ = await wait_for_to_device(ours, alice, alice_since, "m.room.encrypted")
    figures.append(f"to-device (Olm room key) Synapse -> trioserver /sync: "
                   f"{(time.perf_counter() - started) * 1000:.0f} ms")
    assert to_alice["sender"] == bob.user_id
    room_key = alice.device.olm_decrypt(to_alice)
    assert room_key["type"] == "m.room_key"
    assert room_key["keys"] == {"ed25519": bob.device.ed25519}
    alice_inbound = MegolmInbound(room_key["content"])

    encrypted = bob_megolm.encrypt("m.room.message",
                                   {"msgtype": "m.text", "body": "secret from Synapse"})
    theirs_id = (await bob_u.ok("PUT", f"/rooms/{q(room_id)}/send/m.room.encrypted/"
                                f"{unique('txn')}", encrypted))["event_id"]
    event = await eventually(lambda: _encrypted_event(alice_u, room_id, theirs_id),
                             "trioserver has the Synapse user's encrypted message")
    assert event["type"] == "m.room.encrypted"
    assert alice_inbound.decrypt(event, room_id) == {
        "type": "m.room.message", "room_id": room_id,
        "content": {"msgtype": "m.text", "body": "secret from Synapse"}}

    # A second device of alice: Synapse (which has her device list cached by now) learns it.
    r = await login(ours, alice.user_id)
    assert r.status_code == 200, r.text
    second = Person(alice.user_id, r.json()["access_token"],
                    OlmDevice(alice.user_id, r.json()["device_id"]))
    await upload(ours, second, second.device.upload_body(one_time_keys=1))

    async def both_devices_on_synapse() -> bool:
        body = await query(theirs, bob, {alice.user_id: []})
        return set(body["device_keys"].get(alice.user_id, {})) == {alice.device_id,
                                                                   second.device_id}

    await eventually(both_devices_on_synapse, "Synapse lists both of alice's devices")
    keys = (await query(theirs, bob, {alice.user_id: [second.device_id]}))["device_keys"][
        alice.user_id][second.device_id]
    assert verify_signed_json(keys, alice.user_id, f"ed25519:{second.device_id}",
                              second.device.ed25519)
