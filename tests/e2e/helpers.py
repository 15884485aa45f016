"""Client-side helpers for end-to-end tests."""

from __future__ import annotations

import itertools
import os
from typing import Any
from urllib.parse import quote

import httpx

PASSWORD = "correct horse battery staple"
_counter = itertools.count()


def unique(prefix: str = "user") -> str:
    """A username no other test in this session uses."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    http: httpx.AsyncClient,
    username: str | None = None,
    password: str = PASSWORD,
    **extra: Any,
) -> dict[str, Any]:
    """Register (completing m.login.dummy) and return the 200 body."""
    body: dict[str, Any] = {
        "username": username or unique(),
        "password": password,
        "auth": {"type": "m.login.dummy"},
        **extra,
    }
    r = await http.post("/_matrix/client/v3/register", json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def login(
    http: httpx.AsyncClient, user: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        **extra,
    }
    return await http.post("/_matrix/client/v3/login", json=body)


def password_auth(user_id: str, password: str = PASSWORD, session: str | None = None
                  ) -> dict[str, Any]:
    """A UIA `auth` dict for the m.login.password stage."""
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def assert_error(r: httpx.Response, status: int, errcode: str) -> dict[str, Any]:
    """Assert a Matrix error response and return its body."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["errcode"] == errcode, body
    assert isinstance(body.get("error", ""), str)
    return body


async def whoami(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/_matrix/client/v3/account/whoami", headers=bearer(token))


CLIENT = "/_matrix/client/v3"


def room_path(room_id: str, *parts: str) -> str:
    """`/_matrix/client/v3/rooms/{roomId}/...`, each part URL-encoded."""
    return "/".join([f"{CLIENT}/rooms/{quote(room_id, safe='')}",
                     *(quote(p, safe="") for p in parts)])


async def create_room(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    """POST /createRoom with `body`; return the new room ID."""
    r = await http.post(f"{CLIENT}/createRoom", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def send_text(http: httpx.AsyncClient, token: str, room_id: str, body: str) -> str:
    """Send an m.text message; return its event ID."""
    r = await http.put(room_path(room_id, "send", "m.room.message", unique("txn")),
                       json={"msgtype": "m.text", "body": body}, headers=bearer(token))
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


async def get_state(http: httpx.AsyncClient, token: str, room_id: str, event_type: str,
                    state_key: str = "") -> httpx.Response:
    """GET /rooms/{roomId}/state/{eventType}/{stateKey} (the raw response)."""
    return await http.get(room_path(room_id, "state", event_type, state_key),
                          headers=bearer(token))


async def put_state(http: httpx.AsyncClient, token: str, room_id: str, event_type: str,
                    content: dict[str, Any], state_key: str = "") -> httpx.Response:
    """PUT /rooms/{roomId}/state/{eventType}/{stateKey} (the raw response)."""
    return await http.put(room_path(room_id, "state", event_type, state_key), json=content,
                          headers=bearer(token))


async def two_users_in_a_room(http: httpx.AsyncClient) -> tuple[dict[str, Any],
                                                               dict[str, Any], str]:
    """Register Alice and Bob; Alice creates a public room and Bob joins it."""
    alice = await register(http)
    bob = await register(http)
    room_id = await create_room(http, alice["access_token"], preset="public_chat")
    r = await http.post(room_path(room_id, "join"), json={}, headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    return alice, bob, room_id


async def user_and_token(http: httpx.AsyncClient) -> tuple[str, str]:
    """Register a fresh user; return (user_id, access_token)."""
    reg = await register(http)
    return reg["user_id"], reg["access_token"]


async def join_room(http: httpx.AsyncClient, token: str, room_id: str, **body: Any) -> None:
    """POST /rooms/{roomId}/join and check it answered with the room ID."""
    r = await http.post(room_path(room_id, "join"), json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id}
