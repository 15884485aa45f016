"""Room events: send (transaction IDs, limits, power levels), concurrency, GET /event,
redaction, timestamp_to_event and durability across restarts.

Spec: Client-Server API "Transaction identifiers", "Sending events to a room", "Redactions",
"Size limits"; room_send.yaml, redaction.yaml, room_event_by_timestamp.yaml; rooms/v11.md
(redaction algorithm) and v12 (canonical JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.helpers import (
    assert_error,
    bearer,
    join_room,
    login,
    unique,
    user_and_token,
)
from tests.server_process import ServerProcess

CS = "/_matrix/client/v3"
TS_TO_EVENT = "/_matrix/client/v1/rooms/{room}/timestamp_to_event"


# -- helpers (shared with test_room_history.py) --------------------------------------------


def _q(value: str) -> str:
    return quote(value, safe="")


async def _create_room(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    r = await http.post(f"{CS}/createRoom", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]
    assert isinstance(room_id, str)
    assert room_id.startswith("!")
    return room_id


async def _public_room(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    return await _create_room(http, token, preset="public_chat", **body)


async def _invite(http: httpx.AsyncClient, token: str, room_id: str, user_id: str) -> None:
    r = await http.post(f"{CS}/rooms/{_q(room_id)}/invite", json={"user_id": user_id},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {}


async def _leave(http: httpx.AsyncClient, token: str, room_id: str) -> None:
    r = await http.post(f"{CS}/rooms/{_q(room_id)}/leave", json={}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {}


def _send_path(room_id: str, txn: str, event_type: str = "m.room.message") -> str:
    return f"{CS}/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn)}"


async def _send_raw(http: httpx.AsyncClient, token: str, room_id: str, content: Any,
                    *, txn: str | None = None, event_type: str = "m.room.message"
                    ) -> httpx.Response:
    return await http.put(_send_path(room_id, txn or unique("txn"), event_type), json=content,
                          headers=bearer(token))


async def _send(http: httpx.AsyncClient, token: str, room_id: str, text: str = "hello",
                *, txn: str | None = None, event_type: str = "m.room.message",
                content: dict[str, Any] | None = None) -> str:
    """Send an event (an m.text message by default) and return its event ID."""
    body = content if content is not None else {"msgtype": "m.text", "body": text}
    r = await _send_raw(http, token, room_id, body, txn=txn, event_type=event_type)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    assert list(r.json()) == ["event_id"]
    assert isinstance(event_id, str)
    assert event_id.startswith("$")
    return event_id


async def _put_state(http: httpx.AsyncClient, token: str, room_id: str, event_type: str,
                     content: dict[str, Any], state_key: str = "") -> httpx.Response:
    return await http.put(f"{CS}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
                          json=content, headers=bearer(token))


async def _get_state(http: httpx.AsyncClient, token: str, room_id: str, event_type: str,
                     state_key: str = "") -> dict[str, Any]:
    r = await http.get(f"{CS}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _get_event_raw(http: httpx.AsyncClient, token: str | None, room_id: str,
                         event_id: str) -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    return await http.get(f"{CS}/rooms/{_q(room_id)}/event/{_q(event_id)}", headers=headers)


async def _get_event(http: httpx.AsyncClient, token: str, room_id: str,
                     event_id: str) -> dict[str, Any]:
    r = await _get_event_raw(http, token, room_id, event_id)
    assert r.status_code == 200, r.text
    event: dict[str, Any] = r.json()
    assert event["event_id"] == event_id
    assert event["room_id"] == room_id
    return event


async def _messages_raw(http: httpx.AsyncClient, token: str, room_id: str,
                        **params: Any) -> httpx.Response:
    return await http.get(f"{CS}/rooms/{_q(room_id)}/messages", params=params,
                          headers=bearer(token))


async def _messages(http: httpx.AsyncClient, token: str, room_id: str,
                    **params: Any) -> dict[str, Any]:
    params.setdefault("dir", "b")
    r = await _messages_raw(http, token, room_id, **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body["chunk"], list)
    assert isinstance(body["start"], str)
    return body


def _ids(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def _bodies(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events
            if e["type"] == "m.room.message" and "body" in e["content"]]


async def _all_messages(http: httpx.AsyncClient, token: str, room_id: str,
                        direction: str = "f") -> list[dict[str, Any]]:
    """Every m.room.message visible to the user, in one large page."""
    body = await _messages(http, token, room_id, dir=direction, limit=1000,
                           filter='{"types":["m.room.message"]}')
    assert "end" not in body, "a 1000-event page should reach the end of a test room"
    chunk: list[dict[str, Any]] = body["chunk"]
    return chunk


async def _redact(http: httpx.AsyncClient, token: str, room_id: str, event_id: str,
                  *, reason: str | None = None, txn: str | None = None) -> httpx.Response:
    body = {"reason": reason} if reason is not None else {}
    return await http.put(
        f"{CS}/rooms/{_q(room_id)}/redact/{_q(event_id)}/{_q(txn or unique('rtxn'))}",
        json=body, headers=bearer(token))


# -- send -----------------------------------------------------------------------------------


async def test_send_message_returns_event_id_and_event_is_readable(
        http: httpx.AsyncClient) -> None:
    alice, token = await user_and_token(http)
    room = await _create_room(http, token)
    event_id = await _send(http, token, room, "first words")

    event = await _get_event(http, token, room, event_id)
    assert event["type"] == "m.room.message"
    assert event["sender"] == alice
    assert event["content"] == {"msgtype": "m.text", "body": "first words"}
    assert isinstance(event["origin_server_ts"], int)
    assert event["origin_server_ts"] > 1_600_000_000_000
    assert "state_key" not in event
    assert isinstance(event["unsigned"], dict)


async def test_same_txn_id_same_device_is_deduplicated(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    txn = unique("txn")
    first = await _send(http, token, room, "once", txn=txn)
    # A retransmission (even with different content) gets back the original event.
    second = await _send(http, token, room, "once", txn=txn)
    third = await _send(http, token, room, "changed body", txn=txn)
    assert second == first
    assert third == first

    messages = await _all_messages(http, token, room)
    assert _ids(messages) == [first]
    assert _bodies(messages) == ["once"]


async def test_same_txn_id_from_another_device_creates_a_new_event(
        http: httpx.AsyncClient) -> None:
    alice, token = await user_and_token(http)
    r = await login(http, alice)
    assert r.status_code == 200, r.text
    token2 = r.json()["access_token"]
    assert r.json()["device_id"]
    room = await _create_room(http, token)
    txn = unique("txn")
    first = await _send(http, token, room, "from device 1", txn=txn)
    second = await _send(http, token2, room, "from device 2", txn=txn)
    assert second != first
    # And each device's retransmission maps back to its own event.
    assert await _send(http, token, room, "x", txn=txn) == first
    assert await _send(http, token2, room, "x", txn=txn) == second

    messages = await _all_messages(http, token, room)
    assert _ids(messages) == [first, second]
    assert _bodies(messages) == ["from device 1", "from device 2"]


async def test_same_txn_id_in_another_room_creates_a_new_event(
        http: httpx.AsyncClient) -> None:
    """Spec "Transaction identifiers": a retransmission is the same txn ID *and* the same
    request path; /send to another room is a different path, so a new event."""
    _, token = await user_and_token(http)
    room_a = await _create_room(http, token)
    room_b = await _create_room(http, token)
    txn = unique("txn")
    in_a = await _send(http, token, room_a, "in room a", txn=txn)
    in_b = await _send(http, token, room_b, "in room b", txn=txn)
    assert in_b != in_a
    assert _bodies(await _all_messages(http, token, room_b)) == ["in room b"]
    event = await _get_event(http, token, room_b, in_b)
    assert event["content"]["body"] == "in room b"


async def test_send_transaction_id_is_echoed_to_the_sending_device_only(
        http: httpx.AsyncClient) -> None:
    """client_event.yaml unsigned.transaction_id: present "if the client being given the
    event is the same one which sent it"."""
    alice, token = await user_and_token(http)
    r = await login(http, alice)
    assert r.status_code == 200, r.text
    other_device = r.json()["access_token"]
    room = await _create_room(http, token)
    txn = unique("txn")
    event_id = await _send(http, token, room, "echo", txn=txn)

    mine = await _get_event(http, token, room, event_id)
    assert mine["unsigned"].get("transaction_id") == txn
    page = await _messages(http, token, room, dir="b", limit=1)
    assert _ids(page["chunk"]) == [event_id]
    assert page["chunk"][0]["unsigned"].get("transaction_id") == txn

    theirs = await _get_event(http, other_device, room, event_id)
    assert "transaction_id" not in theirs["unsigned"]


async def test_send_as_non_member_is_forbidden(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _public_room(http, owner)
    r = await _send_raw(http, stranger, room, {"msgtype": "m.text", "body": "let me in"})
    assert_error(r, 403, "M_FORBIDDEN")
    assert _bodies(await _all_messages(http, owner, room)) == []


async def test_send_after_leaving_is_forbidden(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    _, bob = await user_and_token(http)
    room = await _public_room(http, owner)
    await join_room(http, bob, room)
    await _send(http, bob, room, "bye")
    await _leave(http, bob, room)
    r = await _send_raw(http, bob, room, {"msgtype": "m.text", "body": "ghost"})
    assert_error(r, 403, "M_FORBIDDEN")
    assert _bodies(await _all_messages(http, owner, room)) == ["bye"]


async def test_send_to_unknown_room_is_not_found(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    r = await _send_raw(http, token, "!doesnotexist:localhost", {"msgtype": "m.text",
                                                                  "body": "hi"})
    assert_error(r, 404, "M_NOT_FOUND")


async def test_send_to_malformed_room_id_is_bad_request(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    r = await _send_raw(http, token, "abc", {"msgtype": "m.text", "body": "hi"})
    assert_error(r, 400, "M_INVALID_PARAM")


async def test_send_requires_authentication(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    r = await http.put(_send_path(room, unique("txn")), json={"msgtype": "m.text",
                                                               "body": "anon"})
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_send_non_object_body_is_rejected(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    r = await _send_raw(http, token, room, ["not", "an", "object"])
    assert_error(r, 400, "M_BAD_JSON")
    r = await http.put(_send_path(room, unique("txn")), content=b"{not json",
                       headers={**bearer(token), "Content-Type": "application/json"})
    assert_error(r, 400, "M_NOT_JSON")
    assert _bodies(await _all_messages(http, token, room)) == []


async def test_event_over_64k_is_too_large(http: httpx.AsyncClient) -> None:
    """Spec "Size limits": the whole event must be at most 65536 bytes."""
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    r = await _send_raw(http, token, room, {"msgtype": "m.text", "body": "x" * 65_536})
    assert_error(r, 413, "M_TOO_LARGE")
    # Comfortably under the limit is fine.
    await _send(http, token, room, "y" * 60_000)
    assert _bodies(await _all_messages(http, token, room)) == ["y" * 60_000]


async def test_floats_and_huge_ints_rejected_in_v12_room(http: httpx.AsyncClient) -> None:
    """Room versions 6+ use strict canonical JSON: no floats, integers within +-(2**53-1)."""
    _, token = await user_and_token(http)
    room = await _create_room(http, token, room_version="12")
    r = await _send_raw(http, token, room, {"msgtype": "m.text", "body": "pi", "value": 3.14})
    assert_error(r, 400, "M_BAD_JSON")
    r = await _send_raw(http, token, room, {"msgtype": "m.text", "body": "big",
                                            "value": 2**53})
    assert_error(r, 400, "M_BAD_JSON")
    await _send(http, token, room, content={"msgtype": "m.text", "body": "ok",
                                            "value": 2**53 - 1})
    assert _bodies(await _all_messages(http, token, room)) == ["ok"]


async def test_events_default_raised_forbids_pl0_member(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    _, bob = await user_and_token(http)
    room = await _public_room(http, owner)
    await join_room(http, bob, room)
    await _send(http, bob, room, "allowed at PL 0")

    levels = await _get_state(http, owner, room, "m.room.power_levels")
    levels["events_default"] = 50
    r = await _put_state(http, owner, room, "m.room.power_levels", levels)
    assert r.status_code == 200, r.text
    assert r.json()["event_id"].startswith("$")

    r = await _send_raw(http, bob, room, {"msgtype": "m.text", "body": "now refused"})
    assert_error(r, 403, "M_FORBIDDEN")
    # The creator still can.
    await _send(http, owner, room, "creator speaks")
    assert _bodies(await _all_messages(http, owner, room)) == ["allowed at PL 0",
                                                               "creator speaks"]


async def test_state_event_roundtrip_and_optional_trailing_slash(
        http: httpx.AsyncClient) -> None:
    """room_state.yaml / rooms.yaml: for an empty state key "the trailing slash on this
    endpoint is optional" (PUT and GET)."""
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    base = f"{CS}/rooms/{_q(room)}/state"

    r = await http.put(f"{base}/m.room.topic/", json={"topic": "with slash"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    with_slash = r.json()["event_id"]
    r = await http.get(f"{base}/m.room.topic/", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"topic": "with slash"}
    r = await http.get(f"{base}/m.room.topic/", params={"format": "event"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["event_id"] == with_slash
    assert r.json()["state_key"] == ""

    r = await http.get(f"{base}/m.room.topic", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"topic": "with slash"}
    r = await http.put(f"{base}/m.room.topic", json={"topic": "no slash"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["event_id"].startswith("$")
    assert await _get_state(http, token, room, "m.room.topic") == {"topic": "no slash"}


async def test_state_unknown_key_and_stranger(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _create_room(http, token)
    r = await http.get(f"{CS}/rooms/{_q(room)}/state/m.room.topic/", headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"{CS}/rooms/{_q(room)}/state/m.room.join_rules/",
                       headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(f"{CS}/rooms/{_q(room)}/state", headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(f"{CS}/rooms/{_q(room)}/state", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert {(e["type"], e["state_key"]) for e in r.json()} >= {
        ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", ""),
        ("m.room.history_visibility", "")}
    r = await _put_state(http, stranger, room, "m.room.topic", {"topic": "hijack"})
    assert_error(r, 403, "M_FORBIDDEN")


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_senders_persist_every_message_exactly_once(
        server: ServerProcess) -> None:
    users = 5
    per_user = 20
    resent = 5
    clients = [httpx.AsyncClient(base_url=server.url, timeout=60.0) for _ in range(users)]
    try:
        creds = [await user_and_token(c) for c in clients]
        room = await _public_room(clients[0], creds[0][1])
        for client, (_, token) in zip(clients[1:], creds[1:], strict=True):
            await join_room(client, token, room)

        txns = {u: [f"{unique('ctxn')}-{i}" for i in range(per_user)] for u in range(users)}
        originals: dict[tuple[int, int], str] = {}
        retries: dict[tuple[int, int], str] = {}

        async def sender(u: int) -> None:
            for i, txn in enumerate(txns[u]):
                originals[(u, i)] = await _send(clients[u], creds[u][1], room, f"u{u}-m{i}",
                                                txn=txn)

        async def resender(u: int, i: int) -> None:
            # Same txn ID and same content, racing with the original request.
            retries[(u, i)] = await _send(clients[u], creds[u][1], room, f"u{u}-m{i}",
                                          txn=txns[u][i])

        async with trio.open_nursery() as nursery:
            for u in range(users):
                nursery.start_soon(sender, u)
                for i in range(0, per_user, per_user // resent):
                    nursery.start_soon(resender, u, i)

        assert len(originals) == users * per_user
        assert len(retries) == users * resent
        for key, event_id in retries.items():
            assert event_id == originals[key], key
        assert len(set(originals.values())) == users * per_user

        token = creds[0][1]
        forwards = await _all_messages(clients[0], token, room, "f")
        backwards = await _all_messages(clients[0], token, room, "b")
        ids = _ids(forwards)
        assert len(ids) == users * per_user
        assert len(set(ids)) == len(ids)
        assert set(ids) == set(originals.values())
        # One total order: backwards is exactly forwards reversed.
        assert _ids(backwards) == ids[::-1]
        # Each user's sends were sequential, so their messages keep that order (apart from
        # the resent ones, whose retry may have won the race).
        position = {event_id: n for n, event_id in enumerate(ids)}
        for u in range(users):
            steady = [originals[(u, i)] for i in range(per_user) if (u, i) not in retries]
            assert [position[e] for e in steady] == sorted(position[e] for e in steady)
        bodies = _bodies(forwards)
        assert sorted(bodies) == sorted(f"u{u}-m{i}" for u in range(users)
                                        for i in range(per_user))
        # Every event is retrievable by ID, with the content it was sent with.
        sent_body = {originals[(u, i)]: f"u{u}-m{i}" for u in range(users)
                     for i in range(per_user)}

        async def fetch(client: httpx.AsyncClient, tok: str, event_id: str) -> None:
            event = await _get_event(client, tok, room, event_id)
            assert event["content"]["body"] == sent_body[event_id]

        async with trio.open_nursery() as nursery:
            for n, event_id in enumerate(ids):
                nursery.start_soon(fetch, clients[n % users], creds[n % users][1], event_id)
    finally:
        for client in clients:
            await client.aclose()


# -- GET /rooms/{roomId}/event/{eventId} ----------------------------------------------------


async def test_get_event_found_unknown_other_room_and_malformed(
        http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    other_room = await _create_room(http, token)
    event_id = await _send(http, token, room, "here")
    elsewhere = await _send(http, token, other_room, "there")

    assert (await _get_event(http, token, room, event_id))["content"]["body"] == "here"

    r = await _get_event_raw(http, token, room, "$doesnotexist")
    assert_error(r, 404, "M_NOT_FOUND")
    # An event of another room, asked for under this room's ID.
    r = await _get_event_raw(http, token, room, elsewhere)
    assert_error(r, 404, "M_NOT_FOUND")
    r = await _get_event_raw(http, token, room, "abc")
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await _get_event_raw(http, token, "!doesnotexist:localhost", event_id)
    assert_error(r, 404, "M_NOT_FOUND")
    r = await _get_event_raw(http, None, room, event_id)
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_get_event_of_private_room_by_stranger_is_hidden(
        http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _create_room(http, token)
    event_id = await _send(http, token, room, "secret")
    r = await _get_event_raw(http, stranger, room, event_id)
    assert_error(r, 404, "M_NOT_FOUND")


# -- redaction ------------------------------------------------------------------------------


async def test_redact_own_message_at_pl0(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _public_room(http, owner, room_version="12")
    await join_room(http, bob_token, room)
    target = await _send(http, bob_token, room, "oops, wrong room",
                         content={"msgtype": "m.text", "body": "oops, wrong room",
                                  "format": "org.matrix.custom.html",
                                  "formatted_body": "<b>oops</b>"})

    r = await _redact(http, bob_token, room, target, reason="typo")
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["event_id"]
    redaction_id = r.json()["event_id"]
    assert redaction_id.startswith("$")
    assert redaction_id != target

    for viewer in (owner, bob_token):
        event = await _get_event(http, viewer, room, target)
        assert event["type"] == "m.room.message"
        assert event["sender"] == bob
        assert event["content"] == {}
        because = event["unsigned"]["redacted_because"]
        assert because["event_id"] == redaction_id
        assert because["type"] == "m.room.redaction"
        assert because["sender"] == bob
        assert because["content"]["reason"] == "typo"
        # Room v11+: `redacts` lives in the redaction's content.
        assert because["content"]["redacts"] == target

    redaction = await _get_event(http, owner, room, redaction_id)
    assert redaction["type"] == "m.room.redaction"
    assert redaction["content"] == {"reason": "typo", "redacts": target}

    # The timeline shows the pruned event too.
    page = await _messages(http, owner, room, dir="b", limit=2)
    assert _ids(page["chunk"]) == [redaction_id, target]
    assert page["chunk"][1]["content"] == {}
    assert page["chunk"][1]["unsigned"]["redacted_because"]["event_id"] == redaction_id


async def test_redact_without_reason(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    target = await _send(http, token, room, "no reason needed")
    r = await _redact(http, token, room, target)
    assert r.status_code == 200, r.text
    event = await _get_event(http, token, room, target)
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == r.json()["event_id"]
    assert "reason" not in event["unsigned"]["redacted_because"]["content"]


async def test_redact_others_message_needs_power(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    _, bob = await user_and_token(http)
    room = await _public_room(http, owner)
    await join_room(http, bob, room)
    owners_message = await _send(http, owner, room, "owner's words")
    bobs_message = await _send(http, bob, room, "bob's words")

    r = await _redact(http, bob, room, owners_message, reason="censorship")
    assert_error(r, 403, "M_FORBIDDEN")
    event = await _get_event(http, bob, room, owners_message)
    assert event["content"]["body"] == "owner's words"
    assert "redacted_because" not in event["unsigned"]

    # The creator (infinite power in v12, PL 100 before) may redact anyone's events.
    r = await _redact(http, owner, room, bobs_message, reason="moderation")
    assert r.status_code == 200, r.text
    event = await _get_event(http, bob, room, bobs_message)
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["sender"] != event["sender"]
    assert event["unsigned"]["redacted_because"]["content"]["reason"] == "moderation"


async def test_creator_in_v10_room_with_pl100_can_redact_others(
        http: httpx.AsyncClient) -> None:
    owner_id, owner = await user_and_token(http)
    _, bob = await user_and_token(http)
    room = await _public_room(http, owner, room_version="10")
    levels = await _get_state(http, owner, room, "m.room.power_levels")
    assert levels["users"][owner_id] == 100
    await join_room(http, bob, room)
    target = await _send(http, bob, room, "spam")
    r = await _redact(http, bob, room, await _send(http, owner, room, "mine"))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _redact(http, owner, room, target, reason="spam")
    assert r.status_code == 200, r.text
    event = await _get_event(http, owner, room, target)
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == r.json()["event_id"]
    # Before v11 `redacts` is a top-level key of the redaction.
    assert because["redacts"] == target


async def test_redact_unknown_or_foreign_event_is_not_found(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    other = await _create_room(http, token)
    foreign = await _send(http, token, other, "elsewhere")
    r = await _redact(http, token, room, "$doesnotexist")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await _redact(http, token, room, foreign)
    assert_error(r, 404, "M_NOT_FOUND")
    assert (await _get_event(http, token, other, foreign))["content"]["body"] == "elsewhere"


async def test_redact_member_event_keeps_membership(http: httpx.AsyncClient) -> None:
    """Redaction algorithm (v11): m.room.member keeps `membership` (and the auth-related
    keys); displayname and avatar_url are removed."""
    _, owner = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _public_room(http, owner, room_version="11")
    await join_room(http, bob_token, room)
    state = await _get_state(http, owner, room, "m.room.member", bob)
    assert state["membership"] == "join"
    # Give the member event a displayname to be stripped.
    r = await _put_state(http, bob_token, room, "m.room.member",
                         {"membership": "join", "displayname": "Bobby", "reason": "hi"}, bob)
    assert r.status_code == 200, r.text
    member_id = r.json()["event_id"]

    r = await _redact(http, owner, room, member_id, reason="bad name")
    assert r.status_code == 200, r.text
    event = await _get_event(http, owner, room, member_id)
    assert event["type"] == "m.room.member"
    assert event["state_key"] == bob
    assert event["content"] == {"membership": "join"}
    assert event["unsigned"]["redacted_because"]["event_id"] == r.json()["event_id"]
    # Bob is still in the room and can still talk.
    await _send(http, bob_token, room, "still here")


async def test_redaction_via_send_with_content_redacts(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token, room_version="11")
    target = await _send(http, token, room, "via send")
    redaction_id = await _send(http, token, room, event_type="m.room.redaction",
                               content={"redacts": target, "reason": "by hand"})
    event = await _get_event(http, token, room, target)
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction_id
    assert because["content"] == {"redacts": target, "reason": "by hand"}


async def test_redaction_via_send_of_others_event_needs_power(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    _, bob = await user_and_token(http)
    room = await _public_room(http, owner)
    await join_room(http, bob, room)
    target = await _send(http, owner, room, "owner")
    r = await _send_raw(http, bob, room, {"redacts": target}, event_type="m.room.redaction")
    assert_error(r, 403, "M_FORBIDDEN")
    assert (await _get_event(http, bob, room, target))["content"]["body"] == "owner"


async def test_redaction_by_non_member_is_forbidden(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _public_room(http, owner)
    target = await _send(http, owner, room, "not yours")
    r = await _redact(http, stranger, room, target, reason="drive-by")
    assert_error(r, 403, "M_FORBIDDEN")
    assert (await _get_event(http, owner, room, target))["content"]["body"] == "not yours"


async def test_redaction_is_idempotent_per_txn_id(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    target = await _send(http, token, room, "redact me once")
    txn = unique("rtxn")
    r1 = await _redact(http, token, room, target, reason="once", txn=txn)
    r2 = await _redact(http, token, room, target, reason="once", txn=txn)
    assert r1.status_code == 200, r1.text
    assert r2.status_code == 200, r2.text
    assert r1.json() == r2.json()

    page = await _messages(http, token, room, dir="f", limit=100,
                           filter='{"types":["m.room.redaction"]}')
    assert _ids(page["chunk"]) == [r1.json()["event_id"]]
    assert "end" not in page


# -- timestamp_to_event ---------------------------------------------------------------------


async def test_timestamp_to_event_finds_nearest(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    events = []
    for n in range(3):
        await trio.sleep(0.01)
        event_id = await _send(http, token, room, f"at {n}")
        events.append(await _get_event(http, token, room, event_id))
        await trio.sleep(0.01)
    ts = [e["origin_server_ts"] for e in events]
    assert ts[0] < ts[1] < ts[2]
    path = TS_TO_EVENT.format(room=_q(room))

    async def lookup(t: int, direction: str) -> dict[str, Any]:
        r = await http.get(path, params={"ts": t, "dir": direction}, headers=bearer(token))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    expect = {"event_id": events[1]["event_id"], "origin_server_ts": ts[1]}
    assert await lookup(ts[0] + 1, "f") == expect
    assert await lookup(ts[2] - 1, "b") == expect
    assert await lookup(ts[1], "f") == expect
    assert await lookup(ts[1], "b") == expect
    assert (await lookup(ts[2] + 60_000, "b"))["event_id"] == events[2]["event_id"]

    r = await http.get(path, params={"ts": ts[2] + 60_000, "dir": "f"}, headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(path, params={"ts": 1, "dir": "b"}, headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")


async def test_timestamp_to_event_bad_params(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    path = TS_TO_EVENT.format(room=_q(room))
    r = await http.get(path, params={"ts": "abc", "dir": "f"}, headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await http.get(path, params={"ts": 1, "dir": "x"}, headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")
    # Both parameters are required (room_event_by_timestamp.yaml); a missing one is
    # M_MISSING_PARAM ("A required parameter was missing from the request").
    r = await http.get(path, params={"dir": "f"}, headers=bearer(token))
    assert_error(r, 400, "M_MISSING_PARAM")
    r = await http.get(path, params={"ts": 1}, headers=bearer(token))
    assert_error(r, 400, "M_MISSING_PARAM")


async def test_timestamp_to_event_stranger_forbidden(http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _create_room(http, token)
    path = TS_TO_EVENT.format(room=_q(room))
    r = await http.get(path, params={"ts": 1, "dir": "f"}, headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")
    r = await http.get(TS_TO_EVENT.format(room=_q("!nope:localhost")),
                       params={"ts": 1, "dir": "f"}, headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")


# -- durability -----------------------------------------------------------------------------


async def test_rooms_messages_and_txn_ids_survive_restart(
        server_factory: ServerFactory, tmp_path: Path) -> None:
    data_dir = tmp_path / "durable"
    srv = server_factory("--open-registration", "--no-rate-limits", data_dir=data_dir)
    txn = unique("dtxn")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        alice, token = await user_and_token(http)
        room = await _create_room(http, token, name="Durable room", topic="survives")
        sent = [await _send(http, token, room, f"before restart {n}") for n in range(3)]
        last = await _send(http, token, room, "with txn", txn=txn)
        redacted = await _send(http, token, room, "to be redacted")
        r = await _redact(http, token, room, redacted, reason="gone")
        assert r.status_code == 200, r.text
    assert srv.stop() == 0

    srv2 = server_factory("--open-registration", "--no-rate-limits", data_dir=data_dir)
    async with httpx.AsyncClient(base_url=srv2.url, timeout=30.0) as http:
        assert (await _get_state(http, token, room, "m.room.name")) == {"name": "Durable room"}
        assert (await _get_state(http, token, room, "m.room.topic"))["topic"] == "survives"
        member = await _get_state(http, token, room, "m.room.member", alice)
        assert member["membership"] == "join"

        messages = await _all_messages(http, token, room)
        assert _ids(messages) == [*sent, last, redacted]
        assert _bodies(messages) == [f"before restart {n}" for n in range(3)] + ["with txn"]
        assert messages[-1]["content"] == {}

        # The transaction ID still maps to the event it created before the restart.
        assert await _send(http, token, room, "with txn", txn=txn) == last
        after = await _send(http, token, room, "after restart")
        messages = await _all_messages(http, token, room)
        assert _ids(messages) == [*sent, last, redacted, after]
