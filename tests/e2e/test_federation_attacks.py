"""Federation attacks end to end: a real peer server's identity, used against another server.

Server A is the target; server B is a real peer whose private signing key the test reads from
B's data dir, so the test can speak "as B" (A fetches B's keys from B's TLS listener, as from
any peer). Server C is a third peer, for events whose sender is on neither A nor B. Every
attack asserts the refusal and that A's room (state and timeline, read back through A's client
API as the room's creator) did not change. Joins of B's users go the proper way (make_join,
then send_join) and are the positive control: what is refused is refused for its flaw alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import bearer, create_room, register, unique
from tests.fed_events import RemoteServer
from tests.federation_peer import FederationCaller, Peer, q, start_tls_peer, version_of
from trioserver.services.events.hashing import compute_event_id
from trioserver.services.events.signing import SigningKey
from trioserver.services.rooms.cache import RoomView

V12 = version_of({"room_version": "12"})
Snapshot = tuple[list[tuple[str, str, str]], list[str]]


@dataclass(frozen=True)
class Peers:
    a: Peer
    b: Peer
    c: Peer


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    started: list[Peer] = []
    try:
        for name in ("a", "b", "c"):
            started.append(start_tls_peer(tmp_path_factory.mktemp(f"fed-{name}")))
        yield Peers(*started)
    finally:
        for peer in started:
            peer.proc.stop()


@dataclass
class Target:
    """A's client API as one local user (the creator of the rooms under attack)."""

    http: httpx.AsyncClient
    token: str
    user_id: str

    async def room(self) -> str:
        return await create_room(self.http, self.token, preset="public_chat", name="target")

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers=bearer(self.token))

    async def state(self, room_id: str) -> dict[tuple[str, str], str]:
        r = await self.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state")
        assert r.status_code == 200, r.text
        return {(e["type"], e["state_key"]): e["event_id"] for e in r.json()}

    async def timeline(self, room_id: str) -> list[dict[str, Any]]:
        r = await self.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages", dir="b",
                           limit="200")
        assert r.status_code == 200, r.text
        chunk: list[dict[str, Any]] = r.json()["chunk"]
        return chunk

    async def snapshot(self, room_id: str) -> Snapshot:
        state = sorted((t, k, e) for (t, k), e in (await self.state(room_id)).items())
        return state, [e["event_id"] for e in await self.timeline(room_id)]

    async def joined(self, room_id: str) -> set[str]:
        r = await self.get(f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members")
        assert r.status_code == 200, r.text
        return set(r.json()["joined"])

    async def event(self, room_id: str, event_id: str) -> httpx.Response:
        return await self.get(f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}")


@dataclass
class Ctx:
    peers: Peers
    target: Target
    as_b: FederationCaller
    as_c: FederationCaller

    @property
    def b(self) -> RemoteServer:
        return self.peers.b.remote

    def b_user(self) -> str:
        return f"@{unique('bob')}:{self.peers.b.name}"

    async def view(self, room_id: str) -> RoomView:
        return await self.as_b.view_of(room_id, await self.target.state(room_id))

    async def joined_room(self) -> tuple[str, str]:
        """A public room on A that a user of B has joined: (room ID, that user)."""
        room_id, bob = await self.target.room(), self.b_user()
        await self.as_b.join(room_id, bob)
        return room_id, bob

    async def message(self, room_id: str, sender: str, body: str,
                      server: RemoteServer | None = None, **kw: Any) -> dict[str, Any]:
        return (server or self.b).on_top_of(await self.view(room_id), type="m.room.message",
                                            sender=sender, content={"msgtype": "m.text",
                                                                    "body": body}, **kw)


@pytest.fixture
async def ctx(peers: Peers) -> AsyncIterator[Ctx]:
    async with httpx.AsyncClient(base_url=peers.a.proc.url, timeout=30.0) as http:
        user = await register(http)
        target = Target(http, user["access_token"], user["user_id"])
        yield Ctx(peers, target, FederationCaller(http, peers.a, peers.b),
                  FederationCaller(http, peers.a, peers.c))


def event_id_of(pdu: dict[str, Any]) -> str:
    """The ID of a PDU in the rooms here (room version 12: its reference hash)."""
    return compute_event_id(pdu, V12)


def assert_unauthorized(r: httpx.Response, why: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["errcode"] == "M_UNAUTHORIZED", body
    assert why in body["error"], body


# -- 1. request authentication ---------------------------------------------------------------


async def test_unauthenticated_requests_are_refused(ctx: Ctx) -> None:
    room_id = await ctx.target.room()
    view = await ctx.view(room_id)
    join = ctx.b.on_top_of(view, type="m.room.member", sender=(bob := ctx.b_user()),
                           state_key=bob, content={"membership": "join"})
    before = await ctx.target.snapshot(room_id)
    forged = SigningKey.from_seed(b"\x07" * 32, ctx.peers.b.key.version)
    stranger = SigningKey.generate()
    nobody = "127.0.0.1:9"  # discard port: nothing answers, so its keys cannot be fetched

    assert_unauthorized(await ctx.as_b.send([join], sign=False), "missing X-Matrix")
    assert_unauthorized(await ctx.as_b.send([join], key=forged), "bad X-Matrix signature")
    assert_unauthorized(await ctx.as_b.send([join], destination="127.0.0.1:1"),
                        "not this server")
    assert_unauthorized(await ctx.as_b.send([join], origin=nobody, key=stranger), "unknown key")
    # A valid signature, replayed on another request target.
    replayed = await ctx.as_b.send([join], txn_id="second",
                                   signed_path="/_matrix/federation/v1/send/first")
    assert_unauthorized(replayed, "bad X-Matrix signature")
    # A valid signature over another body.
    swapped = await ctx.as_b.send([join], signed_body={"origin": ctx.peers.b.name,
                                                       "pdus": [], "edus": []})
    assert_unauthorized(swapped, "bad X-Matrix signature")
    # The same request properly signed is accepted: the refusals were for the signatures.
    assert await ctx.target.snapshot(room_id) == before
    assert bob not in await ctx.target.joined(room_id)
    r = await ctx.as_b.send([join])
    assert r.status_code == 200, r.text
    assert r.json()["pdus"] == {event_id_of(join): {}}
    assert bob in await ctx.target.joined(room_id)


# -- 2. a proper join (the positive control) -------------------------------------------------


async def test_join_through_make_join_and_send_join(ctx: Ctx) -> None:
    room_id = await ctx.target.room()
    bob = ctx.b_user()
    made = await ctx.as_b.make_join(room_id, bob)
    assert made["room_version"] == "12"
    assert made["event"]["content"] == {"membership": "join"}
    event_id, answer = await ctx.as_b.join(room_id, bob)

    state_ids = {e["type"]: e for e in answer["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.join_rules"} <= set(state_ids)
    # The state and auth chain are closed under auth_events: B can check every event.
    given = {event_id_of(e) for e in [*answer["state"], *answer["auth_chain"]]}
    for pdu in [*answer["state"], *answer["auth_chain"], answer["event"]]:
        assert set(pdu["auth_events"]) <= given, pdu
    assert answer["event"]["sender"] == bob
    assert bob in await ctx.target.joined(room_id)
    member = await ctx.target.event(room_id, event_id)
    assert member.status_code == 200, member.text
    assert member.json()["content"] == {"membership": "join"}
    # And B's user can now talk in the room through /send.
    message = await ctx.message(room_id, bob, "hello from B")
    r = await ctx.as_b.send([message])
    assert r.json() == {"pdus": {event_id_of(message): {}}}
    seen = [e["content"].get("body") for e in await ctx.target.timeline(room_id)]
    assert "hello from B" in seen


# -- 3. /send: PDUs that must be refused, one per transaction --------------------------------


async def unsigned(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    room_id, bob = await ctx.joined_room()
    return room_id, await ctx.message(room_id, bob, "no signature", sign=False)


async def forged_signature(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """Signed in B's name, with B's key ID, by another key."""
    room_id, bob = await ctx.joined_room()
    forger = RemoteServer(ctx.peers.b.name,
                          key=SigningKey.from_seed(b"\x01" * 32, ctx.peers.b.key.version))
    return room_id, await ctx.message(room_id, bob, "forged", server=forger)


async def sender_on_a_third_server(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """A join of C's user, validly signed by C, relayed by B."""
    room_id = await ctx.target.room()
    carol = f"@{unique('carol')}:{ctx.peers.c.name}"
    join = ctx.peers.c.remote.on_top_of(await ctx.view(room_id), type="m.room.member",
                                        sender=carol, state_key=carol,
                                        content={"membership": "join"})
    return room_id, join


async def power_levels_without_power(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    room_id, bob = await ctx.joined_room()
    view = await ctx.view(room_id)
    r = await ctx.target.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.power_levels")
    levels = {**r.json(), "users": {**r.json().get("users", {}), bob: 100}}
    return room_id, ctx.b.on_top_of(view, type="m.room.power_levels", sender=bob,
                                    state_key="", content=levels)


async def room_name_without_power(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    room_id, bob = await ctx.joined_room()
    return room_id, ctx.b.on_top_of(await ctx.view(room_id), type="m.room.name",
                                    sender=bob, state_key="", content={"name": "pwned"})


async def message_from_a_non_member(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """B has no user in the room."""
    room_id = await ctx.target.room()
    return room_id, await ctx.message(room_id, ctx.b_user(), "let me in")


async def unknown_prev_event(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """A asks B for the missing event (get_missing_events), and B cannot supply it."""
    room_id, bob = await ctx.joined_room()
    view = await ctx.view(room_id)
    view.extremities = ["$" + "A" * 43]
    view.depth += 5
    return room_id, ctx.b.on_top_of(view, type="m.room.message", sender=bob,
                                    content={"msgtype": "m.text", "body": "out of nowhere"})


async def banned_on_an_old_fork(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """After a ban, B's user sends on top of the room as it was before the ban: the state
    before the event lets it through, the room's current state does not (soft failure)."""
    room_id, bob = await ctx.joined_room()
    old = await ctx.view(room_id)
    r = await ctx.target.http.post(f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
                                   json={"user_id": bob}, headers=bearer(ctx.target.token))
    assert r.status_code == 200, r.text
    return room_id, ctx.b.on_top_of(old, type="m.room.message", sender=bob,
                                    content={"msgtype": "m.text", "body": "still here"})


async def room_unknown_to_the_target(ctx: Ctx) -> tuple[str, dict[str, Any]]:
    """A message for a room A has never heard of (A's own room is what is watched)."""
    room_id, bob = await ctx.joined_room()
    view = await ctx.view(room_id)
    view.room_id = "!" + "B" * 43
    return room_id, ctx.b.on_top_of(view, type="m.room.message", sender=bob,
                                    content={"msgtype": "m.text", "body": "elsewhere"})


def error_for(r: httpx.Response, event_id: str) -> str:
    """The `error` the /send response gives for one PDU.

    A PDU that fails the signature or format checks is keyed by "?" rather than by its ID
    (see test_pdu_errors_are_keyed_by_event_id), so that key is accepted here as well.
    """
    results: dict[str, Any] = r.json()["pdus"]
    assert len(results) == 1, results
    assert set(results) <= {event_id, "?"}, results
    error: str = next(iter(results.values()))["error"]
    return error


ATTACKS = {
    "unsigned": (unsigned, "not signed by"),
    "forged-signature": (forged_signature, "no valid signature"),
    "sender-on-a-third-server": (sender_on_a_third_server, "is not on"),
    "power-levels-without-power": (power_levels_without_power, "rejected"),
    "room-name-without-power": (room_name_without_power, "rejected"),
    "message-from-a-non-member": (message_from_a_non_member, "rejected"),
    "unknown-prev-event": (unknown_prev_event, "missing_prev_events"),
    "message-from-a-banned-user-on-an-old-fork": (banned_on_an_old_fork, "soft_failed"),
    "room-the-target-is-not-in": (room_unknown_to_the_target, "not in the room"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_send_refuses_the_pdu_and_changes_nothing(ctx: Ctx, attack: str) -> None:
    build, why = ATTACKS[attack]
    room_id, pdu = await build(ctx)
    before = await ctx.target.snapshot(room_id)
    r = await ctx.as_b.send([pdu])
    assert r.status_code == 200, r.text
    event_id = event_id_of(pdu)
    assert why in error_for(r, event_id), r.json()
    assert await ctx.target.snapshot(room_id) == before
    assert (await ctx.target.event(room_id, event_id)).status_code == 404


async def test_an_event_built_on_a_soft_failed_one_is_accepted(ctx: Ctx) -> None:
    """A soft-failed event stays out of the timeline and the state, but is kept: a later event
    of another (allowed) user of B that has it as prev_event is checked against the state after
    it and accepted, with no gap to fill (B, which cannot serve the room, could not fill one)."""
    room_id, bob = await ctx.joined_room()
    carol = ctx.b_user()
    await ctx.as_b.join(room_id, carol)
    old = await ctx.view(room_id)
    r = await ctx.target.http.post(f"/_matrix/client/v3/rooms/{q(room_id)}/ban",
                                   json={"user_id": bob}, headers=bearer(ctx.target.token))
    assert r.status_code == 200, r.text
    soft = ctx.b.on_top_of(old, type="m.room.message", sender=bob,
                           content={"msgtype": "m.text", "body": "still here"})
    r = await ctx.as_b.send([soft])
    assert "soft_failed" in error_for(r, event_id_of(soft)), r.json()
    before = await ctx.target.snapshot(room_id)
    # Sent again, it is not taken in either.
    r = await ctx.as_b.send([soft])
    assert "soft_failed" in error_for(r, event_id_of(soft)), r.json()

    on_top = RoomView(room_id=room_id, room_version=old.room_version, state=dict(old.state),
                      state_group=0, extremities=[event_id_of(soft)], depth=old.depth + 1,
                      create_event_id=old.create_event_id)
    later = ctx.b.on_top_of(on_top, type="m.room.message", sender=carol,
                            content={"msgtype": "m.text", "body": "after the fork"})
    r = await ctx.as_b.send([later])
    assert r.status_code == 200, r.text
    assert r.json() == {"pdus": {event_id_of(later): {}}}, r.json()
    timeline = await ctx.target.timeline(room_id)
    bodies = [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"]
    assert "after the fork" in bodies
    assert "still here" not in bodies
    assert (await ctx.target.event(room_id, event_id_of(soft))).status_code == 404
    # The ban still holds: the fork did not bring Bob back.
    state, _ = await ctx.target.snapshot(room_id)
    assert state == before[0]
    assert bob not in await ctx.target.joined(room_id)


async def test_unknown_prev_event_is_asked_of_the_origin(ctx: Ctx) -> None:
    room_id, pdu = await unknown_prev_event(ctx)
    r = await ctx.as_b.send([pdu])
    assert "missing_prev_events" in error_for(r, event_id_of(pdu))
    # A asked B for the gap (B, not in the room, could not fill it).
    ctx.peers.b.proc.wait_log(f"get_missing_events/{room_id}")


async def test_pdu_errors_are_keyed_by_event_id(ctx: Ctx) -> None:
    room_id, bob = await ctx.joined_room()
    unsigned = await ctx.message(room_id, bob, "one", sign=False)
    forger = RemoteServer(ctx.peers.b.name, key=SigningKey.generate())
    forged = await ctx.message(room_id, bob, "two", server=forger)
    r = await ctx.as_b.send([unsigned, forged])
    results = r.json()["pdus"]
    assert set(results) == {event_id_of(unsigned), event_id_of(forged)}, results
    assert all(result["error"] for result in results.values())


async def test_more_than_50_pdus_are_refused_whole(ctx: Ctx) -> None:
    room_id, bob = await ctx.joined_room()
    view = await ctx.view(room_id)
    chain: list[dict[str, Any]] = []
    for n in range(51):
        chain.append(ctx.b.on_top_of(view, type="m.room.message", sender=bob,
                                     content={"msgtype": "m.text", "body": f"flood {n}"}))
        view.extremities, view.depth = [event_id_of(chain[-1])], view.depth + 1
    before = await ctx.target.snapshot(room_id)
    r = await ctx.as_b.send(chain)
    assert r.status_code == 400, r.text
    assert await ctx.target.snapshot(room_id) == before
    # 50 are within the limit (the control): all of them are accepted.
    r = await ctx.as_b.send(chain[:50])
    assert r.status_code == 200, r.text
    assert r.json()["pdus"] == {event_id_of(p): {} for p in chain[:50]}
    assert len(await ctx.target.timeline(room_id)) == len(before[1]) + 50


async def test_a_repeated_transaction_is_answered_not_reprocessed(ctx: Ctx) -> None:
    room_id, bob = await ctx.joined_room()
    first = await ctx.message(room_id, bob, "first")
    r1 = await ctx.as_b.send([first], txn_id="txn-repeat")
    assert r1.json() == {"pdus": {event_id_of(first): {}}}
    after_first = await ctx.target.snapshot(room_id)
    # Same transaction ID, other contents: the first answer, and the new PDU is not looked at.
    second = await ctx.message(room_id, bob, "second")
    r2 = await ctx.as_b.send([second], txn_id="txn-repeat")
    assert r2.status_code == 200, r2.text
    assert r2.json() == r1.json()
    assert await ctx.target.snapshot(room_id) == after_first
    assert (await ctx.target.event(room_id, event_id_of(second))).status_code == 404
    # The same ID from another server is another transaction.
    carol = f"@{unique('carol')}:{ctx.peers.c.name}"
    join = ctx.peers.c.remote.on_top_of(await ctx.view(room_id), type="m.room.member",
                                        sender=carol, state_key=carol,
                                        content={"membership": "join"})
    r3 = await ctx.as_c.send([join], txn_id="txn-repeat")
    assert r3.json() == {"pdus": {event_id_of(join): {}}}


# -- 4. content changed in transit -------------------------------------------------------------


async def test_a_tampered_pdu_is_kept_redacted(ctx: Ctx) -> None:
    room_id, bob = await ctx.joined_room()
    pdu = await ctx.message(room_id, bob, "what B said")
    # The signature covers the redacted event only: it still holds; the content hash does not.
    tampered = {**pdu, "content": {"msgtype": "m.text", "body": "what B never said"}}
    event_id = event_id_of(tampered)
    assert event_id == event_id_of(pdu)
    r = await ctx.as_b.send([tampered])
    assert r.json() == {"pdus": {event_id: {}}}
    stored = await ctx.target.event(room_id, event_id)
    assert stored.status_code == 200, stored.text
    assert stored.json()["content"] == {}
    assert stored.json()["sender"] == bob
    bodies = [e["content"].get("body") for e in await ctx.target.timeline(room_id)]
    assert "what B never said" not in bodies
    assert "what B said" not in bodies


# -- 5. what a server may read --------------------------------------------------------------


async def read_endpoints(ctx: Ctx, room_id: str, event_id: str) -> dict[str, httpx.Response]:
    room, event = q(room_id), q(event_id)
    get = ctx.as_b.request
    return {
        "event": await get("GET", f"/_matrix/federation/v1/event/{event}"),
        "state_ids": await get("GET", f"/_matrix/federation/v1/state_ids/{room}",
                               query={"event_id": event_id}),
        "state": await get("GET", f"/_matrix/federation/v1/state/{room}",
                           query={"event_id": event_id}),
        "event_auth": await get("GET", f"/_matrix/federation/v1/event_auth/{room}/{event}"),
        "backfill": await get("GET", f"/_matrix/federation/v1/backfill/{room}",
                              query={"v": event_id, "limit": "10"}),
        "get_missing_events": await get(
            "POST", f"/_matrix/federation/v1/get_missing_events/{room}",
            body={"earliest_events": [], "latest_events": [event_id], "limit": 10}),
    }


async def test_reads_only_for_servers_in_the_room(ctx: Ctx) -> None:
    room_id = await ctx.target.room()
    latest = (await ctx.target.timeline(room_id))[0]["event_id"]
    for name, r in (await read_endpoints(ctx, room_id, latest)).items():
        assert r.status_code == 403, (name, r.text)
        assert r.json()["errcode"] == "M_FORBIDDEN", (name, r.text)

    bob = ctx.b_user()
    join_id, _ = await ctx.as_b.join(room_id, bob)
    served = await read_endpoints(ctx, room_id, latest)
    for name, r in served.items():
        assert r.status_code == 200, (name, r.text)
    assert [event_id_of(p) for p in served["event"].json()["pdus"]] == [latest]
    state_ids = await ctx.target.state(room_id)
    assert state_ids[("m.room.create", "")] in served["state_ids"].json()["pdu_ids"]
    backfilled = [event_id_of(p) for p in served["backfill"].json()["pdus"]]
    assert backfilled[0] == latest
    assert len(backfilled) > 1

    # Once its last user has left, the server reads nothing more.
    view = await ctx.view(room_id)
    leave = ctx.b.on_top_of(view, type="m.room.member", sender=bob, state_key=bob,
                            content={"membership": "leave"})
    assert (await ctx.as_b.send([leave])).json() == {"pdus": {event_id_of(leave): {}}}
    for name, r in (await read_endpoints(ctx, room_id, join_id)).items():
        assert r.status_code == 403, (name, r.text)


async def test_a_room_the_server_is_in_does_not_open_another(ctx: Ctx) -> None:
    """B is in one room; naming it in the path does not make another room's events readable."""
    open_room, _ = await ctx.joined_room()
    closed_room = await ctx.target.room()
    secret = (await ctx.target.timeline(closed_room))[0]["event_id"]
    for name, r in (await read_endpoints(ctx, open_room, secret)).items():
        if r.status_code == 200:
            body = r.json()
            leaked = [p for key in ("pdus", "auth_chain", "events") for p in body.get(key, [])
                      if p["room_id"] == closed_room] + body.get("pdu_ids", [])
            assert name != "event", body
            assert not leaked, (name, body)
        else:
            assert r.status_code in (403, 404), (name, r.text)


async def test_send_join_refuses_what_is_not_a_proper_join(ctx: Ctx) -> None:
    room_id = await ctx.target.room()
    before = await ctx.target.snapshot(room_id)
    carol = f"@{unique('carol')}:{ctx.peers.c.name}"
    # make_join only for the origin's own users.
    r = await ctx.as_b.request("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/"
                               f"{q(carol)}", query={"ver": "12"})
    assert r.status_code == 403, r.text
    view = await ctx.view(room_id)

    async def send_join(pdu: dict[str, Any], event_id: str | None = None) -> httpx.Response:
        path = (f"/_matrix/federation/v2/send_join/{q(room_id)}/"
                f"{q(event_id or event_id_of(pdu))}")
        return await ctx.as_b.request("PUT", path, body=pdu)

    # A join of C's user, validly signed by C, sent by B.
    carol_join = ctx.peers.c.remote.on_top_of(view, type="m.room.member", sender=carol,
                                              state_key=carol, content={"membership": "join"})
    assert (await send_join(carol_join)).status_code == 400
    bob = ctx.b_user()
    bob_join = ctx.b.on_top_of(view, type="m.room.member", sender=bob, state_key=bob,
                               content={"membership": "join"})
    # Another event ID in the path than the event's.
    assert (await send_join(bob_join, "$" + "C" * 43)).status_code == 400
    # Not a join: a message.
    message = ctx.b.on_top_of(view, type="m.room.message", sender=bob,
                              content={"msgtype": "m.text", "body": "via send_join"})
    assert (await send_join(message)).status_code == 400
    # A join of someone else by B's user.
    other = ctx.b_user()
    for_other = ctx.b.on_top_of(view, type="m.room.member", sender=bob, state_key=other,
                                content={"membership": "join"})
    assert (await send_join(for_other)).status_code == 400
    assert await ctx.target.snapshot(room_id) == before

    # The room turns invite-only: make_join refuses, and so does send_join, both for a join on
    # top of the room and for one on top of the room as it was while public (soft failure).
    r = await ctx.target.http.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.join_rules",
        json={"join_rule": "invite"}, headers=bearer(ctx.target.token))
    assert r.status_code == 200, r.text
    r = await ctx.as_b.request("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/"
                               f"{q(bob)}", query={"ver": "12"})
    assert r.status_code == 403, r.text
    before = await ctx.target.snapshot(room_id)
    now = RoomView(room_id=room_id, room_version=view.room_version,
                   state=await ctx.target.state(room_id), state_group=0,
                   extremities=[before[1][0]],
                   depth=view.depth + 1, create_event_id=view.create_event_id)
    for base in (view, now):
        join = ctx.b.on_top_of(base, type="m.room.member", sender=bob, state_key=bob,
                               content={"membership": "join"})
        r = await send_join(join)
        assert r.status_code == 403, r.text
    assert await ctx.target.snapshot(room_id) == before


async def test_history_before_the_join_stays_hidden_when_visibility_is_joined(ctx: Ctx) -> None:
    room_id = await create_room(ctx.target.http, ctx.target.token, preset="public_chat",
                                initial_state=[{"type": "m.room.history_visibility",
                                                "state_key": "",
                                                "content": {"history_visibility": "joined"}}])
    r = await ctx.target.http.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/secret",
        json={"msgtype": "m.text", "body": "before B came"}, headers=bearer(ctx.target.token))
    secret = r.json()["event_id"]
    await ctx.as_b.join(room_id, ctx.b_user())
    served = await read_endpoints(ctx, room_id, secret)
    seen = [p for name in ("event", "backfill") for p in served[name].json()["pdus"]]
    assert seen
    assert all(p["content"].get("body") != "before B came" for p in seen), seen
