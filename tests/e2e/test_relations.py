"""Relations, threads, bundled aggregations and reactions.

Spec: Client-Server API "Forming relationships between events", "Threading", "Event
replacements", "Reference relations", "Event annotations and reactions"; relations.yaml,
threads_list.yaml.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    join_room,
    room_path,
    send_text,
    two_users_in_a_room,
    unique,
    user_and_token,
)

V1 = "/_matrix/client/v1/rooms"


def _q(value: str) -> str:
    return quote(value, safe="")


async def _send(http: httpx.AsyncClient, token: str, room_id: str, content: dict[str, Any],
                event_type: str = "m.room.message") -> httpx.Response:
    return await http.put(room_path(room_id, "send", event_type, unique("txn")), json=content,
                          headers=bearer(token))


async def _relate(http: httpx.AsyncClient, token: str, room_id: str, parent: str,
                  rel_type: str, body: str = "x", **extra: Any) -> str:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body,
                               "m.relates_to": {"rel_type": rel_type, "event_id": parent,
                                                **extra}}
    r = await _send(http, token, room_id, content)
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def _react(http: httpx.AsyncClient, token: str, room_id: str, parent: str,
                 key: str) -> httpx.Response:
    return await _send(http, token, room_id, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": parent, "key": key}}, "m.reaction")


async def _relations(http: httpx.AsyncClient, token: str, room_id: str, event_id: str,
                     *path: str, **params: str) -> httpx.Response:
    url = "/".join([f"{V1}/{_q(room_id)}/relations/{_q(event_id)}", *(_q(p) for p in path)])
    return await http.get(url, params=params, headers=bearer(token))


async def _threads(http: httpx.AsyncClient, token: str, room_id: str,
                   **params: str) -> dict[str, Any]:
    r = await http.get(f"{V1}/{_q(room_id)}/threads", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _ids(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in chunk]


async def test_relations_pagination_and_filters(http: httpx.AsyncClient) -> None:
    alice, _, room_id = await two_users_in_a_room(http)
    token = alice["access_token"]
    root = await send_text(http, token, room_id, "root")
    replies = [await _relate(http, token, room_id, root, "m.thread", f"r{i}") for i in range(5)]
    ref = await _relate(http, token, room_id, root, "m.reference")
    assert (await _react(http, token, room_id, root, "👍")).status_code == 200
    await send_text(http, token, room_id, "unrelated")

    r = await _relations(http, token, room_id, root)
    assert r.status_code == 200, r.text
    assert len(r.json()["chunk"]) == 7
    assert "recursion_depth" not in r.json()

    # Newest first, two at a time, to the end.
    seen: list[str] = []
    params = {"limit": "2"}
    while True:
        page = (await _relations(http, token, room_id, root, "m.thread", **params)).json()
        seen += _ids(page["chunk"])
        if "next_batch" not in page:
            break
        params = {"limit": "2", "from": page["next_batch"]}
    assert seen == replies[::-1]

    forwards = (await _relations(http, token, room_id, root, "m.thread", dir="f",
                                 limit="3")).json()
    assert _ids(forwards["chunk"]) == replies[:3]
    rest = (await _relations(http, token, room_id, root, "m.thread", dir="f",
                             **{"from": forwards["next_batch"]})).json()
    assert _ids(rest["chunk"]) == replies[3:]

    by_type = (await _relations(http, token, room_id, root, "m.annotation",
                                "m.reaction")).json()
    assert [e["type"] for e in by_type["chunk"]] == ["m.reaction"]
    none = (await _relations(http, token, room_id, root, "m.annotation",
                             "m.room.message")).json()
    assert none["chunk"] == []
    refs = (await _relations(http, token, room_id, root, "m.reference")).json()
    assert _ids(refs["chunk"]) == [ref]

    missing = await _relations(http, token, room_id, "$nope:example.org")
    assert_error(missing, 404, "M_NOT_FOUND")


async def test_recurse_follows_relations_of_relations(http: httpx.AsyncClient) -> None:
    alice, _, room_id = await two_users_in_a_room(http)
    token = alice["access_token"]
    root = await send_text(http, token, room_id, "root")
    reply = await _relate(http, token, room_id, root, "m.thread", "reply")
    edit = await _relate(http, token, room_id, reply, "m.replace", "* reply")
    direct = (await _relations(http, token, room_id, root)).json()
    assert _ids(direct["chunk"]) == [reply]
    deep = (await _relations(http, token, room_id, root, recurse="true")).json()
    assert _ids(deep["chunk"]) == [edit, reply]
    assert deep["recursion_depth"] == 3
    shallow = (await _relations(http, token, room_id, root, recurse="false")).json()
    assert shallow["recursion_depth"] == 1
    assert _ids(shallow["chunk"]) == [reply]


async def test_threads_list_all_and_participated(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    first = await send_text(http, a, room_id, "first thread")
    second = await send_text(http, a, room_id, "second thread")
    await send_text(http, a, room_id, "no thread")
    await _relate(http, a, room_id, first, "m.thread")
    await _relate(http, a, room_id, second, "m.thread")
    await _relate(http, b, room_id, first, "m.thread")  # first is now the most recent

    everything = await _threads(http, b, room_id)
    assert _ids(everything["chunk"]) == [first, second]
    assert "next_batch" not in everything
    summary = everything["chunk"][0]["unsigned"]["m.relations"]["m.thread"]
    assert summary["count"] == 2
    assert summary["current_user_participated"] is True
    assert summary["latest_event"]["sender"] == bob["user_id"]

    mine = await _threads(http, b, room_id, include="participated")
    assert _ids(mine["chunk"]) == [first]
    alices = await _threads(http, a, room_id, include="participated")
    assert _ids(alices["chunk"]) == [first, second]

    page = await _threads(http, b, room_id, limit="1")
    assert _ids(page["chunk"]) == [first]
    more = await _threads(http, b, room_id, limit="1", **{"from": page["next_batch"]})
    assert _ids(more["chunk"]) == [second]


async def test_bundled_thread_and_edit_in_messages_event_and_sync(
        http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    root = await send_text(http, a, room_id, "root")
    await _relate(http, b, room_id, root, "m.thread", "one")
    latest = await _relate(http, b, room_id, root, "m.thread", "two")
    await _relate(http, a, room_id, root, "m.replace", "* first edit")
    last_edit = await _relate(http, a, room_id, root, "m.replace", "* second edit")
    await _relate(http, b, room_id, root, "m.replace", "* not the sender's edit")
    ref = await _relate(http, b, room_id, root, "m.reference")

    def check(event: dict[str, Any], reader_participated: bool) -> None:
        relations = event["unsigned"]["m.relations"]
        assert relations["m.thread"]["latest_event"]["event_id"] == latest
        assert relations["m.thread"]["count"] == 2
        assert relations["m.thread"]["current_user_participated"] is reader_participated
        assert relations["m.replace"]["event_id"] == last_edit
        assert relations["m.reference"] == {"chunk": [{"event_id": ref}]}
        assert event["content"]["body"] == "root"  # the original content is kept

    r = await http.get(room_path(room_id, "messages"), params={"dir": "b", "limit": "20"},
                       headers=bearer(a))
    assert r.status_code == 200, r.text
    check(next(e for e in r.json()["chunk"] if e["event_id"] == root), True)

    r = await http.get(room_path(room_id, "event", root), headers=bearer(b))
    check(r.json(), True)
    r = await http.get(room_path(room_id, "context", root), headers=bearer(a))
    check(r.json()["event"], True)

    carol, c_token = await user_and_token(http)
    await join_room(http, c_token, room_id)
    r = await http.get(f"{CLIENT}/sync", params={
        "filter": '{"room": {"timeline": {"limit": 50}}}'}, headers=bearer(c_token))
    assert r.status_code == 200, r.text
    timeline = r.json()["rooms"]["join"][room_id]["timeline"]["events"]
    check(next(e for e in timeline if e["event_id"] == root), False)
    assert carol


async def test_duplicate_reaction_is_refused(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    a, b = alice["access_token"], bob["access_token"]
    target = await send_text(http, a, room_id, "react to me")
    first = await _react(http, a, room_id, target, "👍")
    assert first.status_code == 200, first.text
    assert_error(await _react(http, a, room_id, target, "👍"), 400, "M_DUPLICATE_ANNOTATION")
    assert (await _react(http, a, room_id, target, "🎉")).status_code == 200
    assert (await _react(http, b, room_id, target, "👍")).status_code == 200
    # Once redacted, the reaction can be sent again.
    r = await http.put(room_path(room_id, "redact", first.json()["event_id"], unique("txn")),
                       json={}, headers=bearer(a))
    assert r.status_code == 200, r.text
    assert (await _react(http, a, room_id, target, "👍")).status_code == 200


async def test_history_before_joining_does_not_leak(http: httpx.AsyncClient) -> None:
    _, owner = await user_and_token(http)
    room_id = await create_room(http, owner, preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "joined"}}])
    old_root = await send_text(http, owner, room_id, "before")
    old_reply = await _relate(http, owner, room_id, old_root, "m.thread", "early reply")
    visible_root = await send_text(http, owner, room_id, "visible root")
    await _relate(http, owner, room_id, visible_root, "m.thread", "early reply 2")

    _, late = await user_and_token(http)
    await join_room(http, late, room_id)
    new_reply = await _relate(http, owner, room_id, old_root, "m.thread", "after join")
    visible_reply = await _relate(http, owner, room_id, visible_root, "m.thread", "after")

    assert_error(await _relations(http, late, room_id, old_root), 404, "M_NOT_FOUND")
    assert_error(await _relations(http, late, room_id, visible_root), 404, "M_NOT_FOUND")
    owner_view = (await _relations(http, owner, room_id, old_root)).json()
    assert _ids(owner_view["chunk"]) == [new_reply, old_reply]

    threads = await _threads(http, late, room_id)
    assert threads["chunk"] == []
    assert visible_reply not in _ids(threads["chunk"])
