"""Events from other servers: the PDU checks and the room checks, then persistence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fed_events import FakeKeys, RemoteServer
from trioserver.config import load
from trioserver.services.container import Services, build_services
from trioserver.services.events.room_versions import get_room_version
from trioserver.services.events.signing import SigningKey
from trioserver.services.federation.pdus import PduError, check_pdu
from trioserver.services.rooms.remote import Outcome
from trioserver.services.rooms.service import CreateRoomRequest
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.ttl_store import TTLStore

REMOTE = RemoteServer("remote.test")
ALICE = Requester("@alice:local.test", "DEV", is_guest=False, token_hash=b"")
BOB = "@bob:remote.test"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    config = load(None, overrides={"data_dir": str(tmp_path), "server_name": "local.test"},
                  environ={})
    db = Database.open(config.database_path, readers=2)
    built = build_services(config, db, TTLStore(), SigningKey.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        yield built
        nursery.cancel_scope.cancel()
    db.close()


async def _room(services: Services, version: str = "12", preset: str = "public_chat") -> str:
    return await services.rooms.create_room(
        ALICE, CreateRoomRequest(preset=preset, room_version=version))


async def _accept(services: Services, pdu: dict[str, Any]) -> Any:
    view = await services.rooms.view(pdu["room_id"])
    event = await check_pdu(pdu, view.room_version, FakeKeys(REMOTE))
    return await services.remote_events.accept(event), event


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_remote_join_then_message(services: Services, version: str) -> None:
    room = await _room(services, version)
    view = await services.rooms.view(room)
    join = REMOTE.on_top_of(view, type="m.room.member", sender=BOB, state_key=BOB,
                            content={"membership": "join"})
    result, join_event = await _accept(services, join)
    assert result.outcome is Outcome.ACCEPTED, result
    view = await services.rooms.view(room)
    assert view.state[("m.room.member", BOB)] == join_event.event_id
    assert view.extremities == [join_event.event_id]
    message = REMOTE.on_top_of(view, type="m.room.message", sender=BOB,
                               content={"msgtype": "m.text", "body": "hello from afar"})
    result, msg_event = await _accept(services, message)
    assert result.outcome is Outcome.ACCEPTED, result
    # A local event after it builds on it.
    sent = await services.rooms.send(ALICE, room, "m.room.message",
                                     {"msgtype": "m.text", "body": "hi back"}, "t1")
    del sent
    view = await services.rooms.view(room)
    assert len(view.extremities) == 1
    assert view.extremities != [msg_event.event_id]
    # And a second delivery is a duplicate, not a second copy.
    result, _ = await _accept(services, message)
    assert result.outcome is Outcome.DUPLICATE


async def test_non_member_message_is_rejected_and_changes_nothing(services: Services) -> None:
    room = await _room(services)
    view = await services.rooms.view(room)
    before = (dict(view.state), list(view.extremities))
    message = REMOTE.on_top_of(view, type="m.room.message", sender=BOB,
                               content={"msgtype": "m.text", "body": "let me in"})
    result, _ = await _accept(services, message)
    assert result.outcome is Outcome.REJECTED
    view = await services.rooms.view(room)
    assert (view.state, view.extremities) == before


async def test_join_to_an_invite_only_room_is_rejected(services: Services) -> None:
    room = await _room(services, preset="private_chat")
    view = await services.rooms.view(room)
    join = REMOTE.on_top_of(view, type="m.room.member", sender=BOB, state_key=BOB,
                            content={"membership": "join"})
    result, _ = await _accept(services, join)
    assert result.outcome is Outcome.REJECTED
    assert ("m.room.member", BOB) not in (await services.rooms.view(room)).state


async def test_unknown_prev_events_are_reported(services: Services) -> None:
    room = await _room(services)
    view = await services.rooms.view(room)
    pdu = REMOTE.on_top_of(view, type="m.room.member", sender=BOB, state_key=BOB,
                           content={"membership": "join"})
    pdu = REMOTE.event(view.room_version, room_id=room, type="m.room.member", sender=BOB,
                       state_key=BOB, content={"membership": "join"},
                       prev_events=["$nothing-like-this"], auth_events=pdu["auth_events"],
                       depth=view.depth + 1)
    result, _ = await _accept(services, pdu)
    assert result.outcome is Outcome.MISSING_PREVS
    assert result.missing == ("$nothing-like-this",)


async def test_auth_events_must_be_the_right_ones(services: Services) -> None:
    room = await _room(services)
    view = await services.rooms.view(room)
    good = REMOTE.on_top_of(view, type="m.room.member", sender=BOB, state_key=BOB,
                            content={"membership": "join"})
    # Naming a message-irrelevant event (alice's member event twice) as an auth event.
    bad = REMOTE.event(view.room_version, room_id=room, type="m.room.member", sender=BOB,
                       state_key=BOB, content={"membership": "join"},
                       prev_events=good["prev_events"],
                       auth_events=[*good["auth_events"],
                                    view.state[("m.room.history_visibility", "")]],
                       depth=view.depth + 1)
    result, _ = await _accept(services, bad)
    assert result.outcome is Outcome.REJECTED


async def test_signatures_and_hashes(services: Services) -> None:
    room = await _room(services)
    view = await services.rooms.view(room)
    version = view.room_version
    pdu = REMOTE.on_top_of(view, type="m.room.member", sender=BOB, state_key=BOB,
                           content={"membership": "join", "displayname": "Bob"})
    with pytest.raises(PduError, match=r"not signed by remote\.test"):
        await check_pdu({**pdu, "signatures": {}}, version, FakeKeys(REMOTE))
    impostor = RemoteServer("remote.test")  # same name, another key
    with pytest.raises(PduError, match="no valid signature"):
        await check_pdu(pdu, version, FakeKeys(impostor))
    # Content changed in transit: the signature (over the redacted event) still holds, the
    # hash does not: the event is kept, redacted.
    tampered = {**pdu, "content": {**pdu["content"], "displayname": "Mallory"}}
    event = await check_pdu(tampered, version, FakeKeys(REMOTE))
    assert "displayname" not in event.content
    assert event.content["membership"] == "join"
    # A forged sender domain: the event claims another server, signed by ours.
    forged = REMOTE.on_top_of(view, type="m.room.member", sender="@eve:elsewhere.test",
                              state_key="@eve:elsewhere.test",
                              content={"membership": "join"})
    with pytest.raises(PduError, match=r"not signed by elsewhere\.test"):
        await check_pdu(forged, version, FakeKeys(REMOTE))
    with pytest.raises(PduError, match="more than"):
        await check_pdu({**pdu, "content": {"x": "a" * 70_000}}, version, FakeKeys(REMOTE))
    assert get_room_version("12") is not None


async def test_concurrent_branches_are_resolved_and_merged(services: Services) -> None:
    room = await _room(services)
    # Bob joins and is made a moderator, so both sides may set the topic.
    view = await services.rooms.view(room)
    result, _ = await _accept(services, REMOTE.on_top_of(
        view, type="m.room.member", sender=BOB, state_key=BOB, content={"membership": "join"}))
    assert result.outcome is Outcome.ACCEPTED
    levels = await services.rooms.view(room)
    pl_event = (await services.room_reader._cache.events(
        [levels.state[("m.room.power_levels", "")]]))[levels.state[("m.room.power_levels", "")]]
    content = dict(pl_event.content)
    content["users"] = {**content.get("users", {}), BOB: 50}
    await services.rooms.set_state(ALICE, room, "m.room.power_levels", "", content)
    fork_point = await services.rooms.view(room)
    remote_topic = REMOTE.on_top_of(fork_point, type="m.room.topic", sender=BOB, state_key="",
                                    content={"topic": "from afar"}, ts=2_000_000_000_000)
    # Locally, a topic on the same parent (the remote one has not arrived yet).
    await services.rooms.set_state(ALICE, room, "m.room.topic", "", {"topic": "from here"})
    result, remote_event = await _accept(services, remote_topic)
    assert result.outcome is Outcome.ACCEPTED, result
    view = await services.rooms.view(room)
    assert len(view.extremities) == 2
    assert remote_event.event_id in view.extremities
    topic = (await services.room_reader._cache.events(
        [view.state[("m.room.topic", "")]]))[view.state[("m.room.topic", "")]]
    assert topic.content["topic"] in ("from here", "from afar")
    # What is stored matches memory (a restart reads the resolved state back) ...
    stored = await services.db.read(lambda c: events_repo.current_state_ids(c, room))
    assert dict(stored) == view.state
    # ... and the next local event merges the branches.
    await services.rooms.send(ALICE, room, "m.room.message", {"msgtype": "m.text",
                                                              "body": "merged"}, "t2")
    merged = await services.rooms.view(room)
    assert len(merged.extremities) == 1
    assert merged.state[("m.room.topic", "")] == view.state[("m.room.topic", "")]


async def test_a_gap_is_bridged_with_the_state_the_origin_reports(services: Services) -> None:
    """Events beyond a gap that get_missing_events cannot fill are checked against the state
    at the missing events (from /state), which is kept as outliers."""
    from trioserver.services.federation.inbound import InboundFederation
    from trioserver.storage.ttl_store import TTLStore as Store

    room = await _room(services)
    view = await services.rooms.view(room)
    join_pdu = REMOTE.on_top_of(view, type="m.room.member", sender=BOB, state_key=BOB,
                                content={"membership": "join"})
    result, join = await _accept(services, join_pdu)
    assert result.outcome is Outcome.ACCEPTED
    view = await services.rooms.view(room)
    auth = [view.state[k] for k in (("m.room.power_levels", ""), ("m.room.member", BOB))]
    # M1 never reaches us; M2 builds on it.
    m1 = REMOTE.event(view.room_version, room_id=room, type="m.room.message", sender=BOB,
                      content={"body": "lost"}, prev_events=[join.event_id],
                      auth_events=auth, depth=view.depth + 1)
    m1_event = await check_pdu(m1, view.room_version, FakeKeys(REMOTE))
    m2 = REMOTE.event(view.room_version, room_id=room, type="m.room.message", sender=BOB,
                      content={"body": "after the gap"}, prev_events=[m1_event.event_id],
                      auth_events=auth, depth=view.depth + 2)
    state_at_m1 = [dict((await services.room_reader._cache.events([v]))[v].pdu)
                   for v in view.state.values()]
    calls: list[str] = []

    async def no_missing(origin: str, room_id: str, earliest: list[str], latest: list[str],
                         limit: int) -> list[Any]:
        return []

    async def fetch_state(origin: str, room_id: str, event_id: str
                          ) -> tuple[list[Any], list[Any], Any]:
        calls.append(event_id)
        return state_at_m1, [], m1

    inbound = InboundFederation("local.test", services.room_reader._cache,
                                services.remote_events, FakeKeys(REMOTE), Store(), no_missing,
                                fetch_state)
    answer = await inbound.transaction("remote.test", "t1", {"pdus": [m2]})
    m2_id = next(iter(answer["pdus"]))
    assert answer["pdus"][m2_id] == {}, answer
    assert calls == [m1_event.event_id]
    view = await services.rooms.view(room)
    assert m2_id in view.extremities
    assert view.state[("m.room.member", BOB)] == join.event_id
    # Without the state (the origin cannot say), the event is refused and nothing changes.

    async def no_state(origin: str, room_id: str, event_id: str) -> Any:
        raise ConnectionError("gone")

    m3 = REMOTE.event(view.room_version, room_id=room, type="m.room.message", sender=BOB,
                      content={"body": "beyond another gap"}, prev_events=["$unknowable"],
                      auth_events=auth, depth=view.depth + 3)
    refused = InboundFederation("local.test", services.room_reader._cache,
                                services.remote_events, FakeKeys(REMOTE), Store(), no_missing,
                                no_state)
    answer = await refused.transaction("remote.test", "t2", {"pdus": [m3]})
    assert "missing_prev_events" in next(iter(answer["pdus"].values()))["error"]
    assert (await services.rooms.view(room)).extremities == view.extremities
