"""Pushers (GET /pushers, POST /pushers/set) and delivery to a push gateway."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    join_room,
    register,
    send_text,
    two_users_in_a_room,
    unique,
)
from tests.e2e.push_gateway import fake_gateway


def pusher(url: str, pushkey: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey or unique("key"),
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": url, "custom": "kept"}}
    body.update(extra)
    return body


async def set_pusher(http: httpx.AsyncClient, token: str, body: dict[str, Any]
                     ) -> httpx.Response:
    return await http.post(f"{CLIENT}/pushers/set", json=body, headers=bearer(token))


async def pushers_of(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    r = await http.get(f"{CLIENT}/pushers", headers=bearer(token))
    assert r.status_code == 200, r.text
    listed: list[dict[str, Any]] = r.json()["pushers"]
    return listed


async def set_displayname(http: httpx.AsyncClient, user: dict[str, Any], name: str) -> None:
    r = await http.put(f"{CLIENT}/profile/{user['user_id']}/displayname",
                       json={"displayname": name}, headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text


async def test_set_list_and_delete(http: httpx.AsyncClient) -> None:
    user = await register(http)
    token = user["access_token"]
    assert await pushers_of(http, token) == []
    body = pusher("https://push.example.org/_matrix/push/v1/notify", profile_tag="tag")
    r = await set_pusher(http, token, body)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    listed = await pushers_of(http, token)
    assert listed == [{k: body[k] for k in ("pushkey", "kind", "app_id", "app_display_name",
                                            "device_display_name", "lang", "data",
                                            "profile_tag")}]
    # Setting again replaces.
    r = await set_pusher(http, token, {**body, "lang": "fr"})
    assert r.status_code == 200, r.text
    assert [p["lang"] for p in await pushers_of(http, token)] == ["fr"]
    r = await set_pusher(http, token, {"kind": None, "app_id": body["app_id"],
                                       "pushkey": body["pushkey"]})
    assert r.status_code == 200, r.text
    assert await pushers_of(http, token) == []


async def test_same_pushkey_moves_between_users_unless_append(http: httpx.AsyncClient) -> None:
    a, b = await register(http), await register(http)
    body = pusher("https://push.example.org/_matrix/push/v1/notify")
    assert (await set_pusher(http, a["access_token"], body)).status_code == 200
    assert (await set_pusher(http, b["access_token"], body)).status_code == 200
    assert await pushers_of(http, a["access_token"]) == []
    assert (await set_pusher(http, a["access_token"], {**body, "append": True})).status_code \
        == 200
    assert len(await pushers_of(http, a["access_token"])) == 1
    assert len(await pushers_of(http, b["access_token"])) == 1


async def test_validation(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    good = "https://push.example.org/_matrix/push/v1/notify"
    for url in ("ftp://push.example.org/_matrix/push/v1/notify",
                "https://push.example.org/other", "file:///_matrix/push/v1/notify",
                "not a url", "https://:99999/_matrix/push/v1/notify"):
        assert_error(await set_pusher(http, token, pusher(url)), 400, "M_INVALID_PARAM")
    body = pusher(good)
    del body["data"]["url"]
    assert_error(await set_pusher(http, token, body), 400, "M_MISSING_PARAM")
    for key in ("app_id", "pushkey", "lang", "app_display_name", "device_display_name",
                "data", "kind"):
        body = pusher(good)
        del body[key]
        assert_error(await set_pusher(http, token, body), 400, "M_MISSING_PARAM")
    assert_error(await set_pusher(http, token, pusher(good, kind="carrier-pigeon")), 400,
                 "M_INVALID_PARAM")
    assert_error(await set_pusher(http, token, pusher(good, pushkey="k" * 513)), 400,
                 "M_BAD_JSON")
    assert_error(await set_pusher(http, token, pusher(good, data=[])), 400, "M_BAD_JSON")
    r = await http.post(f"{CLIENT}/pushers/set", json=pusher(good))
    assert_error(r, 401, "M_MISSING_TOKEN")
    assert await pushers_of(http, token) == []


async def test_message_is_pushed_to_gateway(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    await set_displayname(http, bob, "Bobby")  # before joining: the member event carries it
    room_id = await create_room(http, alice["access_token"], preset="public_chat",
                                name="Tea room")
    await join_room(http, bob["access_token"], room_id)
    async with fake_gateway() as gateway:
        body = pusher(gateway.url)
        assert (await set_pusher(http, alice["access_token"], body)).status_code == 200
        event_id = await send_text(http, bob["access_token"], room_id, "hello alice")
        [request] = await gateway.wait_for(1)
    note = request["notification"]
    assert note["event_id"] == event_id
    assert note["room_id"] == room_id
    assert note["type"] == "m.room.message"
    assert note["sender"] == bob["user_id"]
    assert note["sender_display_name"] == "Bobby"
    assert note["content"]["body"] == "hello alice"
    assert note["room_name"] == "Tea room"
    assert note["prio"] == "high"
    assert note["counts"]["unread"] >= 1
    [device] = note["devices"]
    assert device["app_id"] == body["app_id"]
    assert device["pushkey"] == body["pushkey"]
    assert isinstance(device["pushkey_ts"], int)
    assert device["data"] == {"custom": "kept"}  # everything but the url
    assert device["tweaks"].get("sound") == "default"


async def test_event_id_only_format_and_room_name(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    async with fake_gateway() as gateway:
        body = pusher(gateway.url)
        body["data"]["format"] = "event_id_only"
        assert (await set_pusher(http, alice["access_token"], body)).status_code == 200
        event_id = await send_text(http, bob["access_token"], room_id, "secret")
        [request] = await gateway.wait_for(1)
    note = request["notification"]
    assert note["event_id"] == event_id
    assert note["room_id"] == room_id
    assert "content" not in note
    assert "sender" not in note
    assert note["devices"][0]["data"] == {"custom": "kept", "format": "event_id_only"}


async def test_failed_push_is_retried(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    async with fake_gateway() as gateway:
        gateway.answers = [(500, {}), (200, {"rejected": []})]
        assert (await set_pusher(http, alice["access_token"], pusher(gateway.url))
                ).status_code == 200
        event_id = await send_text(http, bob["access_token"], room_id, "try again")
        [request] = await gateway.wait_for(1)
    assert request["notification"]["event_id"] == event_id
    assert gateway.attempts == 2


async def test_rejected_pushkey_deletes_pusher(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    async with fake_gateway() as gateway:
        body = pusher(gateway.url)
        gateway.answers = [(200, {"rejected": [body["pushkey"]]})]
        assert (await set_pusher(http, alice["access_token"], body)).status_code == 200
        await send_text(http, bob["access_token"], room_id, "are you there?")
        with trio.fail_after(10):
            while await pushers_of(http, alice["access_token"]):  # noqa: ASYNC110 (a process)
                await trio.sleep(0.05)
        # Nothing more is sent to it.
        await send_text(http, bob["access_token"], room_id, "again")
        await trio.sleep(0.5)
        assert gateway.attempts == 1


async def test_sender_and_unnotified_users_are_not_pushed(http: httpx.AsyncClient) -> None:
    _alice, bob, room_id = await two_users_in_a_room(http)
    async with fake_gateway() as gateway:
        assert (await set_pusher(http, bob["access_token"], pusher(gateway.url))
                ).status_code == 200
        await send_text(http, bob["access_token"], room_id, "my own message")
        await trio.sleep(0.5)
        assert gateway.attempts == 0
