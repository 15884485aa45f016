"""`rate_limits.events_per_user`: messages, state and redactions per local user (429
M_LIMIT_EXCEEDED with retry_after_ms), and the appservice `rate_limited` opt-out."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import ServerFactory
from tests.e2e.helpers import (
    assert_error,
    bearer,
    create_room,
    join_room,
    register,
    room_path,
    send_text,
    unique,
)

LIMIT = "[rate_limits]\nevents_per_user = { per_second = 0.01, burst = 3 }\n"


async def test_events_per_user_are_limited(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", config_text=LIMIT)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        alice = await register(http)
        bob = await register(http)
        room_id = await create_room(http, alice["access_token"], preset="public_chat")
        await join_room(http, bob["access_token"], room_id)
        first = await send_text(http, alice["access_token"], room_id, "one")
        r = await http.put(room_path(room_id, "state", "m.room.topic"), json={"topic": "t"},
                           headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        r = await http.put(room_path(room_id, "redact", first, "r1"), json={},
                           headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        r = await http.put(room_path(room_id, "send", "m.room.message", "t4"),
                           json={"msgtype": "m.text", "body": "four"},
                           headers=bearer(alice["access_token"]))
        body = assert_error(r, 429, "M_LIMIT_EXCEEDED")
        assert body["retry_after_ms"] > 0
        # Another user has a bucket of their own; reading is never limited.
        await send_text(http, bob["access_token"], room_id, "bob's")
        r = await http.get(room_path(room_id, "messages"), params={"dir": "b"},
                           headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text


def _registration(tmp_path: Path, as_id: str, rate_limited: bool) -> str:
    path = tmp_path / f"{as_id}.yaml"
    path.write_text(
        f"id: {as_id}\nurl: null\nas_token: {as_id}-as\nhs_token: {as_id}-hs\n"
        f"sender_localpart: {as_id}bot\nrate_limited: {str(rate_limited).lower()}\n"
        f"namespaces:\n  users:\n    - exclusive: true\n      regex: '@{as_id}_.*'\n",
        encoding="utf-8")
    return str(path)


async def test_appservice_users_follow_rate_limited(server_factory: ServerFactory,
                                                    tmp_path: Path) -> None:
    free = _registration(tmp_path, "free", rate_limited=False)
    bound = _registration(tmp_path, "bound", rate_limited=True)
    srv = server_factory("--open-registration", config_text=(
        f'appservice_registrations = ["{free}", "{bound}"]\n' + LIMIT))
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        alice = await register(http)
        room_id = await create_room(http, alice["access_token"], preset="public_chat")

        async def ghost_sends(as_id: str, count: int) -> list[int]:
            auth = bearer(f"{as_id}-as")
            r = await http.post("/_matrix/client/v3/register", headers=auth, json={
                "type": "m.login.application_service", "username": unique(f"{as_id}_"),
                "inhibit_login": True})
            assert r.status_code == 200, r.text
            ghost = {"user_id": r.json()["user_id"]}
            r = await http.post(room_path(room_id, "join"), json={}, headers=auth,
                                params=ghost)
            assert r.status_code == 200, r.text
            statuses = []
            for n in range(count):
                r = await http.put(room_path(room_id, "send", "m.room.message", f"g{n}"),
                                   json={"msgtype": "m.text", "body": str(n)}, headers=auth,
                                   params=ghost)
                statuses.append(r.status_code)
            return statuses

        assert await ghost_sends("free", 6) == [200] * 6
        assert await ghost_sends("bound", 5) == [200, 200, 200, 429, 429]
        # The sender of a rate-limited appservice is still exempt (spec: "The sender is
        # excluded").
        auth = bearer("bound-as")
        r = await http.post(room_path(room_id, "join"), json={}, headers=auth)
        assert r.status_code == 200, r.text
        for n in range(5):
            r = await http.put(room_path(room_id, "send", "m.room.message", f"s{n}"),
                               json={"msgtype": "m.text", "body": str(n)}, headers=auth)
            assert r.status_code == 200, r.text
