"""Reading room history: /messages pagination and filters, history visibility, /context.

Spec: Client-Server API "Syncing" / "Filtering" / "Room History Visibility" module
(modules/history_visibility.md); message_pagination.yaml, event_context.yaml.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.helpers import assert_error, bearer, join_room, register, user_and_token
from tests.e2e.test_room_events import (
    CS,
    _all_messages,
    _bodies,
    _create_room,
    _get_event,
    _get_event_raw,
    _get_state,
    _ids,
    _invite,
    _leave,
    _messages,
    _messages_raw,
    _public_room,
    _put_state,
    _q,
    _send,
)


def _filter(**fields: Any) -> str:
    return json.dumps(fields)


async def _room_with_messages(http: httpx.AsyncClient, count: int
                              ) -> tuple[str, str, list[str]]:
    """A room with `count` messages m0..m{count-1}; return (token, room_id, event_ids)."""
    _, token = await user_and_token(http)
    room = await _create_room(http, token)
    ids = [await _send(http, token, room, f"m{n}") for n in range(count)]
    return token, room, ids


async def _paginate(http: httpx.AsyncClient, token: str, room: str, direction: str,
                    limit: int, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow `end` until it is absent; return all events and the number of pages."""
    events: list[dict[str, Any]] = []
    pages = 0
    token_from: str | None = None
    while True:
        query = dict(params, dir=direction, limit=limit)
        if token_from is not None:
            query["from"] = token_from
        page = await _messages(http, token, room, **query)
        pages += 1
        assert len(page["chunk"]) <= limit
        if token_from is not None:
            assert page["start"] == token_from
        events.extend(page["chunk"])
        if "end" not in page:
            return events, pages
        assert isinstance(page["end"], str)
        token_from = page["end"]
        assert pages < 100, "pagination does not terminate"


# -- /messages ------------------------------------------------------------------------------


async def test_messages_directions_and_limit(http: httpx.AsyncClient) -> None:
    token, room, ids = await _room_with_messages(http, 5)

    newest = await _messages(http, token, room, dir="b", limit=3)
    assert _ids(newest["chunk"]) == [ids[4], ids[3], ids[2]]
    assert "end" in newest
    for event in newest["chunk"]:
        assert event["room_id"] == room
        assert event["type"] == "m.room.message"

    oldest = await _messages(http, token, room, dir="f", limit=3)
    assert oldest["chunk"][0]["type"] == "m.room.create"
    assert [e["type"] for e in oldest["chunk"]][:2] == ["m.room.create", "m.room.member"]
    assert "end" in oldest

    everything_f = await _all_messages(http, token, room, "f")
    everything_b = await _all_messages(http, token, room, "b")
    assert _ids(everything_f) == ids
    assert _ids(everything_b) == ids[::-1]

    # Default limit is 10 (message_pagination.yaml).
    default = await _messages(http, token, room, dir="b")
    assert len(default["chunk"]) == 10
    assert _ids(default["chunk"])[:5] == ids[::-1]
    # limit=0 returns nothing but is not an error.
    empty = await _messages(http, token, room, dir="b", limit=0)
    assert empty["chunk"] == []


async def test_messages_pagination_has_no_gaps_or_overlaps(http: httpx.AsyncClient) -> None:
    token, room, ids = await _room_with_messages(http, 23)
    whole = await _messages(http, token, room, dir="f", limit=1000)
    assert "end" not in whole
    all_ids = _ids(whole["chunk"])
    assert all_ids[-23:] == ids
    assert len(set(all_ids)) == len(all_ids)

    backwards, pages_b = await _paginate(http, token, room, "b", 4)
    assert _ids(backwards) == all_ids[::-1]
    assert pages_b >= len(all_ids) // 4

    forwards, pages_f = await _paginate(http, token, room, "f", 5)
    assert _ids(forwards) == all_ids
    assert pages_f >= len(all_ids) // 5

    # Filtered pagination is gapless too.
    msgs, _ = await _paginate(http, token, room, "b", 3,
                              filter=_filter(types=["m.room.message"]))
    assert _ids(msgs) == ids[::-1]


async def test_messages_from_and_to_tokens(http: httpx.AsyncClient) -> None:
    token, room, ids = await _room_with_messages(http, 8)
    only_msgs = _filter(types=["m.room.message"])
    page1 = await _messages(http, token, room, dir="b", limit=3, filter=only_msgs)
    assert _ids(page1["chunk"]) == ids[7:4:-1]
    t1 = page1["end"]
    page2 = await _messages(http, token, room, dir="b", limit=3, filter=only_msgs, **{"from": t1})
    assert page2["start"] == t1
    assert _ids(page2["chunk"]) == ids[4:1:-1]
    t2 = page2["end"]

    # Backwards from t1 stopping at t2 yields exactly page 2.
    bounded = await _messages(http, token, room, dir="b", limit=100, to=t2, **{"from": t1})
    assert _ids(bounded["chunk"]) == ids[4:1:-1]
    # Forwards from t2 stopping at t1 yields the same events, oldest first.
    bounded_f = await _messages(http, token, room, dir="f", limit=100, to=t1, **{"from": t2})
    assert _ids(bounded_f["chunk"]) == ids[2:5]
    # Forwards from t1: the newest three again, and no more.
    tail = await _messages(http, token, room, dir="f", limit=100, **{"from": t1})
    assert _ids(tail["chunk"]) == ids[5:]
    assert "end" not in tail
    # A `to` bound reached exactly with no more events: nothing beyond it.
    newest = await _messages(http, token, room, dir="b", limit=100, to=t1)
    assert _ids(newest["chunk"]) == ids[7:4:-1]


async def test_messages_bad_parameters(http: httpx.AsyncClient) -> None:
    token, room, _ = await _room_with_messages(http, 1)
    r = await _messages_raw(http, token, room, dir="x")
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await _messages_raw(http, token, room, dir="b", **{"from": "not-a-token"})
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await _messages_raw(http, token, room, dir="b", to="garbage")
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await _messages_raw(http, token, room, dir="b", limit="ten")
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await _messages_raw(http, token, room, dir="b", filter="{not json")
    assert_error(r, 400, "M_NOT_JSON")
    r = await _messages_raw(http, token, room, dir="b", filter='{"types": "m.room.message"}')
    assert_error(r, 400, "M_BAD_JSON")
    r = await _messages_raw(http, token, "!unknown:localhost", dir="b")
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"{CS}/rooms/{_q(room)}/messages", params={"dir": "b"})
    assert_error(r, 401, "M_MISSING_TOKEN")


async def test_messages_non_member_of_private_room_is_forbidden(
        http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _create_room(http, token)
    await _send(http, token, room, "private")
    r = await _messages_raw(http, stranger, room, dir="b")
    assert_error(r, 403, "M_FORBIDDEN")
    r = await _messages_raw(http, stranger, room, dir="f", limit=100)
    assert_error(r, 403, "M_FORBIDDEN")


async def test_messages_filters(http: httpx.AsyncClient) -> None:
    alice, alice_token = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _public_room(http, alice_token)
    await join_room(http, bob_token, room)
    a1 = await _send(http, alice_token, room, "alice text")
    image = await _send(http, bob_token, room, content={
        "msgtype": "m.image", "body": "cat.png", "url": "mxc://localhost/cat"})
    custom = await _send(http, alice_token, room, event_type="org.example.custom",
                         content={"body": "custom"})
    b2 = await _send(http, bob_token, room, "bob text")
    everything = await _messages(http, alice_token, room, dir="f", limit=1000)
    all_events = everything["chunk"]

    async def ids_for(**flt: Any) -> list[str]:
        page = await _messages(http, alice_token, room, dir="f", limit=1000,
                               filter=_filter(**flt))
        return _ids(page["chunk"])

    assert await ids_for(types=["m.room.message"]) == [a1, image, b2]
    assert await ids_for(types=["org.example.*"]) == [custom]
    assert await ids_for(types=["m.room.member"]) == [
        e["event_id"] for e in all_events if e["type"] == "m.room.member"]
    # not_types with a wildcard removes every m.room.* event (state and messages).
    assert await ids_for(not_types=["m.room.*"]) == [custom]
    assert await ids_for(types=["m.room.*"], not_types=["m.room.member", "m.room.message"]) \
        == [e["event_id"] for e in all_events
            if e["type"].startswith("m.room.")
            and e["type"] not in ("m.room.member", "m.room.message")]
    assert await ids_for(senders=[bob], types=["m.room.message"]) == [image, b2]
    assert await ids_for(not_senders=[alice]) == [
        e["event_id"] for e in all_events if e["sender"] == bob]
    assert await ids_for(senders=[alice], not_senders=[alice]) == []
    # An empty include list includes nothing (only an absent list means "all").
    assert await ids_for(types=[]) == []
    assert await ids_for(senders=[]) == []
    assert await ids_for(contains_url=True) == [image]
    assert image not in await ids_for(contains_url=False)
    assert a1 in await ids_for(contains_url=False)
    # limit inside the filter applies when no `limit` parameter is given.
    page = await _messages(http, alice_token, room, dir="b",
                           filter=_filter(limit=2, types=["m.room.message"]))
    assert _ids(page["chunk"]) == [b2, image]


async def test_messages_lazy_load_members_returns_senders_member_events(
        http: httpx.AsyncClient) -> None:
    _, alice_token = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    carol, carol_token = await user_and_token(http)
    room = await _public_room(http, alice_token)
    await join_room(http, bob_token, room)
    await join_room(http, carol_token, room)
    await _send(http, alice_token, room, "alice early")
    b1 = await _send(http, bob_token, room, "bob 1")
    c1 = await _send(http, carol_token, room, "carol 1")
    b2 = await _send(http, bob_token, room, "bob 2")

    lazy = _filter(lazy_load_members=True, types=["m.room.message"])
    page = await _messages(http, alice_token, room, dir="b", limit=1, filter=lazy)
    assert _ids(page["chunk"]) == [b2]
    assert [(e["type"], e["state_key"]) for e in page["state"]] == [("m.room.member", bob)]
    assert page["state"][0]["content"]["membership"] == "join"

    page = await _messages(http, alice_token, room, dir="b", limit=3, filter=lazy)
    assert _ids(page["chunk"]) == [b2, c1, b1]
    assert sorted(e["state_key"] for e in page["state"]) == sorted([bob, carol])
    assert all(e["type"] == "m.room.member" for e in page["state"])

    # Without lazy loading no `state` is needed.
    page = await _messages(http, alice_token, room, dir="b", limit=3,
                           filter=_filter(types=["m.room.message"]))
    assert page.get("state", []) == []


# -- history visibility ---------------------------------------------------------------------


def _visibility_state(value: str) -> list[dict[str, Any]]:
    return [{"type": "m.room.history_visibility", "state_key": "",
             "content": {"history_visibility": value}}]


async def test_joined_visibility_hides_history_before_join(http: httpx.AsyncClient) -> None:
    _, alice = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _public_room(http, alice, initial_state=_visibility_state("joined"))
    before = [await _send(http, alice, room, f"before {n}") for n in range(3)]
    await join_room(http, bob_token, room)
    after = await _send(http, alice, room, "after join")

    seen = await _all_messages(http, bob_token, room, "f")
    assert _ids(seen) == [after]
    seen_b = await _all_messages(http, bob_token, room, "b")
    assert _ids(seen_b) == [after]
    # Unfiltered: bob's own join is visible, nothing from before it.
    full = await _messages(http, bob_token, room, dir="f", limit=1000)
    types = [(e["type"], e.get("state_key")) for e in full["chunk"]]
    assert ("m.room.member", bob) in types
    assert not set(before) & set(_ids(full["chunk"]))

    for event_id in before:
        r = await _get_event_raw(http, bob_token, room, event_id)
        assert_error(r, 404, "M_NOT_FOUND")
        r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(event_id)}",
                           headers=bearer(bob_token))
        assert_error(r, 404, "M_NOT_FOUND")
    assert (await _get_event(http, bob_token, room, after))["content"]["body"] == "after join"
    # Alice, joined throughout, sees everything.
    assert _ids(await _all_messages(http, alice, room)) == [*before, after]


async def test_shared_visibility_shows_history_to_later_joiners(
        http: httpx.AsyncClient) -> None:
    _, alice = await user_and_token(http)
    _, bob_token = await user_and_token(http)
    room = await _public_room(http, alice)
    assert await _get_state(http, alice, room, "m.room.history_visibility") == {
        "history_visibility": "shared"}
    before = [await _send(http, alice, room, f"early {n}") for n in range(3)]
    await join_room(http, bob_token, room)
    after = await _send(http, alice, room, "late")
    assert _ids(await _all_messages(http, bob_token, room)) == [*before, after]
    for event_id in before:
        assert (await _get_event(http, bob_token, room, event_id))["event_id"] == event_id


async def test_invited_visibility_shows_events_from_the_invite(
        http: httpx.AsyncClient) -> None:
    _, alice = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _create_room(http, alice, initial_state=_visibility_state("invited"))
    pre_invite = await _send(http, alice, room, "before the invite")
    await _invite(http, alice, room, bob)
    post_invite = await _send(http, alice, room, "after the invite")
    await join_room(http, bob_token, room)
    post_join = await _send(http, alice, room, "after the join")

    assert _ids(await _all_messages(http, bob_token, room)) == [post_invite, post_join]
    r = await _get_event_raw(http, bob_token, room, pre_invite)
    assert_error(r, 404, "M_NOT_FOUND")
    assert (await _get_event(http, bob_token, room, post_invite))["content"]["body"] == \
        "after the invite"


async def test_world_readable_room_readable_by_non_member(http: httpx.AsyncClient) -> None:
    _, alice = await user_and_token(http)
    _, stranger = await user_and_token(http)
    room = await _create_room(http, alice, initial_state=_visibility_state("world_readable"))
    ids = [await _send(http, alice, room, f"public {n}") for n in range(3)]

    assert _ids(await _all_messages(http, stranger, room)) == ids
    page = await _messages(http, stranger, room, dir="b", limit=2)
    assert _ids(page["chunk"]) == ids[:0:-1]
    event = await _get_event(http, stranger, room, ids[0])
    assert event["content"]["body"] == "public 0"
    # Reading is not participating.
    r = await http.put(f"{CS}/rooms/{_q(room)}/send/m.room.message/wr1",
                       json={"msgtype": "m.text", "body": "lurker"}, headers=bearer(stranger))
    assert_error(r, 403, "M_FORBIDDEN")


async def test_visibility_change_is_not_retroactive(http: httpx.AsyncClient) -> None:
    """The warning in modules/history_visibility.md: the setting applies when an event is
    sent; changing it later does not hide or reveal earlier events."""
    _, alice = await user_and_token(http)
    _, bob_token = await user_and_token(http)
    room = await _public_room(http, alice)
    shared_era = await _send(http, alice, room, "shared era")
    r = await _put_state(http, alice, room, "m.room.history_visibility",
                         {"history_visibility": "joined"})
    assert r.status_code == 200, r.text
    joined_era = await _send(http, alice, room, "joined era")
    await join_room(http, bob_token, room)
    after = await _send(http, alice, room, "after bob")
    assert _ids(await _all_messages(http, bob_token, room)) == [shared_era, after]
    assert_error(await _get_event_raw(http, bob_token, room, joined_era), 404, "M_NOT_FOUND")


async def test_left_user_sees_history_up_to_leave_only(http: httpx.AsyncClient) -> None:
    _, alice = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _public_room(http, alice)
    await join_room(http, bob_token, room)
    while_joined = await _send(http, alice, room, "while bob is here")
    await _leave(http, bob_token, room)
    after_leave = [await _send(http, alice, room, f"after bob left {n}") for n in range(2)]

    seen = await _all_messages(http, bob_token, room)
    assert _ids(seen) == [while_joined]
    full = await _messages(http, bob_token, room, dir="b", limit=1000)
    assert not set(after_leave) & set(_ids(full["chunk"]))
    # Newest event bob sees is his own leave.
    newest = full["chunk"][0]
    assert (newest["type"], newest["state_key"]) == ("m.room.member", bob)
    assert newest["content"]["membership"] == "leave"

    assert (await _get_event(http, bob_token, room, while_joined))["event_id"] == while_joined
    for event_id in after_leave:
        assert_error(await _get_event_raw(http, bob_token, room, event_id), 404, "M_NOT_FOUND")
        r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(event_id)}",
                           headers=bearer(bob_token))
        assert_error(r, 404, "M_NOT_FOUND")


async def test_left_user_reads_state_as_of_their_leave(http: httpx.AsyncClient) -> None:
    """rooms.yaml getRoomStateWithKey/getRoomState: "If the user has left the room then the
    state is taken from the state of the room when they left" - which includes the leave."""
    _, alice = await user_and_token(http)
    bob, bob_token = await user_and_token(http)
    room = await _public_room(http, alice)
    await join_room(http, bob_token, room)
    await _leave(http, bob_token, room)
    r = await _put_state(http, alice, room, "m.room.topic", {"topic": "after bob left"})
    assert r.status_code == 200, r.text

    member = await _get_state(http, bob_token, room, "m.room.member", bob)
    assert member["membership"] == "leave"
    r = await http.get(f"{CS}/rooms/{_q(room)}/state/m.room.topic/", headers=bearer(bob_token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"{CS}/rooms/{_q(room)}/state", headers=bearer(bob_token))
    assert r.status_code == 200, r.text
    mine = [e for e in r.json() if e["type"] == "m.room.member" and e["state_key"] == bob]
    assert [e["content"]["membership"] for e in mine] == ["leave"]
    assert "m.room.topic" not in {e["type"] for e in r.json()}


async def test_rejoining_user_sees_absence_only_when_shared(http: httpx.AsyncClient) -> None:
    _, alice = await user_and_token(http)
    _, bob_token = await user_and_token(http)
    for visibility, gap_visible in (("joined", False), ("shared", True)):
        room = await _public_room(http, alice, initial_state=_visibility_state(visibility))
        await join_room(http, bob_token, room)
        first = await _send(http, alice, room, "first")
        await _leave(http, bob_token, room)
        gap = await _send(http, alice, room, "while away")
        await join_room(http, bob_token, room)
        back = await _send(http, alice, room, "welcome back")
        expected = [first, gap, back] if gap_visible else [first, back]
        assert _ids(await _all_messages(http, bob_token, room)) == expected, visibility
        r = await _get_event_raw(http, bob_token, room, gap)
        if gap_visible:
            assert r.status_code == 200, r.text
            assert r.json()["content"]["body"] == "while away"
        else:
            assert_error(r, 404, "M_NOT_FOUND")


# -- /context -------------------------------------------------------------------------------


async def test_context_around_a_message(http: httpx.AsyncClient) -> None:
    token, room, ids = await _room_with_messages(http, 10)
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(ids[5])}", params={"limit": 4},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["event"]["event_id"] == ids[5]
    assert body["event"]["content"]["body"] == "m5"
    before = _ids(body["events_before"])
    after = _ids(body["events_after"])
    assert 0 < len(before) + len(after) <= 4
    assert len(before) >= 1
    assert len(after) >= 1
    # Immediate neighbours: before in reverse-chronological order, after chronological.
    assert before == ids[4:4 - len(before):-1]
    assert after == ids[6:6 + len(after)]

    # `start` continues backwards and `end` forwards, without overlap or gaps.
    only_msgs = _filter(types=["m.room.message"])
    back = await _messages(http, token, room, dir="b", limit=2, filter=only_msgs,
                           **{"from": body["start"]})
    first_back = 4 - len(before)
    assert _ids(back["chunk"]) == ids[first_back:first_back - 2:-1]
    fwd = await _messages(http, token, room, dir="f", limit=2, filter=only_msgs,
                          **{"from": body["end"]})
    first_fwd = 6 + len(after)
    assert _ids(fwd["chunk"]) == ids[first_fwd:first_fwd + 2]

    # The room state is included.
    state_types = {e["type"] for e in body["state"]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels",
            "m.room.join_rules"} <= state_types
    assert all("state_key" in e for e in body["state"])


async def test_context_tokens_at_room_edges_do_not_repeat_events(
        http: httpx.AsyncClient) -> None:
    """With every earlier/later event already in events_before/events_after, paginating
    from `start`/`end` must not hand the same events out again."""
    token, room, ids = await _room_with_messages(http, 3)
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(ids[1])}", params={"limit": 100},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    before = _ids(body["events_before"])
    assert before[0] == ids[0]
    assert body["events_before"][-1]["type"] == "m.room.create"
    assert _ids(body["events_after"]) == [ids[2]]

    back = await _messages(http, token, room, dir="b", limit=10, **{"from": body["start"]})
    assert _ids(back["chunk"]) == []
    fwd = await _messages(http, token, room, dir="f", limit=10, **{"from": body["end"]})
    assert _ids(fwd["chunk"]) == []
    # A message sent later is found from `end`.
    later = await _send(http, token, room, "later")
    fwd = await _messages(http, token, room, dir="f", limit=10, **{"from": body["end"]})
    assert _ids(fwd["chunk"]) == [later]


async def test_context_limit_zero_and_filter(http: httpx.AsyncClient) -> None:
    token, room, ids = await _room_with_messages(http, 4)
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(ids[2])}", params={"limit": 0},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["event"]["event_id"] == ids[2]
    assert body["events_before"] == []
    assert body["events_after"] == []

    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(ids[0])}",
                       params={"limit": 10,
                               "filter": _filter(types=["m.room.message"])},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["events_before"] == []
    assert _ids(body["events_after"]) == ids[1:]
    assert _bodies(body["events_after"]) == ["m1", "m2", "m3"]


async def test_context_unknown_and_forbidden(http: httpx.AsyncClient) -> None:
    token, room, ids = await _room_with_messages(http, 1)
    _, stranger = await user_and_token(http)
    other_token, other_room, other_ids = await _room_with_messages(http, 1)
    del other_token, other_room
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q('$nope')}", headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(other_ids[0])}",
                       headers=bearer(token))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/{_q(ids[0])}",
                       headers=bearer(stranger))
    assert_error(r, 404, "M_NOT_FOUND")
    r = await http.get(f"{CS}/rooms/{_q(room)}/context/abc", headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")



async def test_members_at_a_past_position(http: httpx.AsyncClient) -> None:
    """GET /members?at= returns the membership as of that point of the timeline."""
    alice = await register(http)
    bob = await register(http)
    r = await http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                        headers=bearer(alice["access_token"]))
    room = r.json()["room_id"]
    r = await http.get(f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1",
                       headers=bearer(alice["access_token"]))
    before_bob = r.json()["start"]
    r = await http.post(f"/_matrix/client/v3/join/{room}", headers=bearer(bob["access_token"]))
    assert r.status_code == 200

    async def members(at: str | None) -> set[str]:
        url = f"/_matrix/client/v3/rooms/{room}/members"
        r = await http.get(url, params={"at": at} if at else None,
                           headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        return {e["state_key"] for e in r.json()["chunk"]}

    assert await members(None) == {alice["user_id"], bob["user_id"]}
    assert await members(before_bob) == {alice["user_id"]}
    r = await http.get(f"/_matrix/client/v3/rooms/{room}/members", params={"at": "nonsense"},
                       headers=bearer(alice["access_token"]))
    assert_error(r, 400, "M_INVALID_PARAM")
