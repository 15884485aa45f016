"""GET /notifications: the list, read flags, paging and only=highlight."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    join_room,
    register,
    room_path,
    send_text,
    unique,
)


async def notifications(http: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    r = await http.get(f"{CLIENT}/notifications", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_notifications_highlight_read_and_paging(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    r = await http.put(f"{CLIENT}/profile/{alice['user_id']}/displayname",
                       json={"displayname": "Alicia"}, headers=bearer(alice["access_token"]))
    assert r.status_code == 200, r.text
    room_id = await create_room(http, alice["access_token"], preset="public_chat")
    await join_room(http, bob["access_token"], room_id)
    token = alice["access_token"]

    # The spec's default rules no longer look for display names in bodies (legacy mention
    # rules were removed); the `contains_display_name` condition is still there for a user's
    # own rule, which is how a client brings the old behaviour back.
    r = await http.put(f"{CLIENT}/pushrules/global/override/display_name", json={
        "conditions": [{"kind": "contains_display_name"}],
        "actions": ["notify", {"set_tweak": "highlight"}]}, headers=bearer(token))
    assert r.status_code == 200, r.text

    first = await send_text(http, bob["access_token"], room_id, "hello")
    mention = await send_text(http, bob["access_token"], room_id, "hey Alicia, look")
    r = await http.put(room_path(room_id, "send", "m.room.message", unique("txn")), json={
        "msgtype": "m.text", "body": "ping", "m.mentions": {"user_ids": [alice["user_id"]]}},
        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    intentional: str = r.json()["event_id"]
    last = await send_text(http, bob["access_token"], room_id, "bye")

    listed = (await notifications(http, token))["notifications"]
    assert [n["event"]["event_id"] for n in listed] == [last, intentional, mention, first]
    for n in listed:
        assert n["room_id"] == room_id
        assert n["read"] is False
        assert isinstance(n["ts"], int)
        assert "notify" in n["actions"]
        assert n["event"]["sender"] == bob["user_id"]
    highlights = (await notifications(http, token, only="highlight"))["notifications"]
    assert [n["event"]["event_id"] for n in highlights] == [intentional, mention]
    assert {"set_tweak": "highlight"} in highlights[1]["actions"]

    # Paging: newest first, next_token continues.
    page = await notifications(http, token, limit=3)
    assert [n["event"]["event_id"] for n in page["notifications"]] == [last, intentional,
                                                                        mention]
    rest = await notifications(http, token, limit=3, **{"from": page["next_token"]})
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [first]
    assert "next_token" not in rest

    # A read receipt at the mention marks it and what came before as read.
    r = await http.post(room_path(room_id, "receipt", "m.read", mention), json={},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    listed = (await notifications(http, token))["notifications"]
    assert {n["event"]["event_id"]: n["read"] for n in listed} == {
        last: False, intentional: False, mention: True, first: True}

    # Bob sees none of Alice's notifications; his own messages never notify him.
    assert (await notifications(http, bob["access_token"]))["notifications"] == []


async def test_notifications_refuses_bad_params(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    r = await http.get(f"{CLIENT}/notifications", params={"from": "nope"},
                       headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")
    r = await http.get(f"{CLIENT}/notifications", params={"limit": "x"}, headers=bearer(token))
    assert_error(r, 400, "M_INVALID_PARAM")
    assert_error(await http.get(f"{CLIENT}/notifications"), 401, "M_MISSING_TOKEN")
