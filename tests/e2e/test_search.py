"""POST /search (Client-Server API "Server Side Search"): room_events with FTS5."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import (
    bearer,
    create_room,
    join_room,
    put_state,
    register,
    send_text,
    two_users_in_a_room,
    unique,
)

URL = "/_matrix/client/v3/search"


async def _search(http: httpx.AsyncClient, token: str, term: str, next_batch: str | None = None,
                  **criteria: Any) -> dict[str, Any]:
    params = {"next_batch": next_batch} if next_batch else None
    r = await http.post(URL, params=params, headers=bearer(token), json={
        "search_categories": {"room_events": {"search_term": term, **criteria}}})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["search_categories"]["room_events"]
    return result


def _bodies(result: dict[str, Any]) -> list[str]:
    return [r["result"]["content"].get("body") for r in result["results"]]


async def test_finds_by_word_with_order_and_pagination(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    word = unique("zebra")
    for i in range(5):
        await send_text(http, alice["access_token"], room, f"{word} number {i}")
    await send_text(http, bob["access_token"], room, f"{word} {word} {word} from bob")
    await send_text(http, alice["access_token"], room, "unrelated")
    res = await _search(http, alice["access_token"], word)
    assert res["count"] == 6
    assert len(res["results"]) == 6
    assert word in res["highlights"]
    assert res["results"][0]["result"]["sender"] == bob["user_id"]  # the best match first
    recent = await _search(http, alice["access_token"], word, order_by="recent")
    assert _bodies(recent)[0] == f"{word} {word} {word} from bob"
    assert _bodies(recent)[1] == f"{word} number 4"
    # pagination
    seen: list[str] = []
    page = await _search(http, alice["access_token"], word, order_by="recent",
                         filter={"limit": 2})
    while True:
        seen.extend(r["result"]["event_id"] for r in page["results"])
        if "next_batch" not in page:
            break
        page = await _search(http, alice["access_token"], word, page["next_batch"],
                             order_by="recent", filter={"limit": 2})
    assert len(seen) == 6 == len(set(seen))
    # filters
    only_bob = await _search(http, alice["access_token"], word,
                             filter={"senders": [bob["user_id"]]})
    assert [r["result"]["sender"] for r in only_bob["results"]] == [bob["user_id"]]
    other = await create_room(http, alice["access_token"])
    await send_text(http, alice["access_token"], other, f"{word} elsewhere")
    in_other = await _search(http, alice["access_token"], word, filter={"rooms": [other]})
    assert _bodies(in_other) == [f"{word} elsewhere"]
    not_other = await _search(http, alice["access_token"], word, filter={"not_rooms": [other]})
    assert len(not_other["results"]) == 6


async def test_context_state_groups(http: httpx.AsyncClient) -> None:
    alice, bob, room = await two_users_in_a_room(http)
    word = unique("quokka")
    await send_text(http, alice["access_token"], room, "before one")
    target = await send_text(http, bob["access_token"], room, f"the {word} here")
    await send_text(http, alice["access_token"], room, "after one")
    await put_state(http, alice["access_token"], room, "m.room.topic", {"topic": f"{word} talk"})
    res = await _search(http, alice["access_token"], word, order_by="recent",
                        event_context={"before_limit": 1, "after_limit": 1,
                                       "include_profile": True},
                        include_state=True,
                        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]})
    ids = [r["result"]["event_id"] for r in res["results"]]
    assert target in ids
    assert len(ids) == 2
    item = res["results"][ids.index(target)]
    ctx = item["context"]
    assert [e["content"]["body"] for e in ctx["events_before"]] == ["before one"]
    assert [e["content"]["body"] for e in ctx["events_after"]] == ["after one"]
    assert bob["user_id"] in ctx["profile_info"]
    assert any(e["type"] == "m.room.create" for e in res["state"][room])
    assert res["groups"]["room_id"][room]["results"] == ids
    assert set(res["groups"]["sender"]) == {alice["user_id"], bob["user_id"]}
    only_body = await _search(http, alice["access_token"], word, keys=["content.body"])
    assert [r["result"]["event_id"] for r in only_body["results"]] == [target]


async def test_never_leaks_other_rooms_or_hidden_history(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    word = unique("secret")
    private = await create_room(http, alice["access_token"])
    await send_text(http, alice["access_token"], private, f"{word} private")
    room = await create_room(http, alice["access_token"], preset="public_chat")
    await put_state(http, alice["access_token"], room, "m.room.history_visibility",
                    {"history_visibility": "joined"})
    await send_text(http, alice["access_token"], room, f"{word} before bob")
    await join_room(http, bob["access_token"], room)
    after = await send_text(http, alice["access_token"], room, f"{word} after bob")
    res = await _search(http, bob["access_token"], word)
    assert [r["result"]["event_id"] for r in res["results"]] == [after]
    assert len((await _search(http, alice["access_token"], word))["results"]) == 3


async def test_encrypted_not_searchable_and_odd_input(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    token = alice["access_token"]
    word = unique("cipher")
    room = await create_room(http, token)
    await put_state(http, token, room, "m.room.encryption",
                    {"algorithm": "m.megolm.v1.aes-sha2"})
    r = await http.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{unique('t')}",
                       json={"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": word,
                             "body": word, "sender_key": "k", "session_id": "s",
                             "device_id": "D"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert (await _search(http, token, word))["results"] == []
    await send_text(http, token, room, "naïve café 東京 plain")
    for term in ["AND OR *", '"', '"unbalanced', "NEAR(a b)", "a:b", "-", "^x", "東京",
                 "café", "", "  ", "'); DROP TABLE events; --"]:
        await _search(http, token, term)
    assert len((await _search(http, token, "cafe"))["results"]) == 1
    assert len((await _search(http, token, '"naïve café"'))["results"]) == 1
    r = await http.post(URL, headers=bearer(token), json={"search_categories": {}})
    assert r.status_code == 400
