"""Application services creating entities on demand, owning their namespaces and receiving
ephemeral data (spec "Application Service API": Querying, Pushing ephemeral data; Client-Server
extensions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from tests.e2e.fake_appservice import QUERY_PREFIX, TXN_PREFIX, fake_appservice
from tests.e2e.helpers import (
    assert_error,
    bearer,
    create_room,
    register,
    room_path,
    send_text,
    unique,
)
from tests.server_process import ServerProcess

ServerFactory = Callable[..., ServerProcess]
AS_TOKEN = "as-token-queries"
HS_TOKEN = "hs-token-queries"


def _registration(tmp_path: Path, url: str, *, ephemeral: bool = True, as_id: str = "lazy",
                  prefix: str = "ghost") -> str:
    path = tmp_path / f"{unique('as')}.yaml"
    path.write_text(
        f"id: {as_id}\nurl: {url}\nas_token: {AS_TOKEN}-{as_id}\nhs_token: {HS_TOKEN}-{as_id}\n"
        f"sender_localpart: {as_id}bot\nreceive_ephemeral: {str(ephemeral).lower()}\n"
        "namespaces:\n"
        f"  users:\n    - exclusive: true\n      regex: '@{prefix}_.*'\n"
        f"  aliases:\n    - exclusive: true\n      regex: '#{prefix}_.*'\n"
        "  rooms: []\n", encoding="utf-8")
    return str(path)


def _start(server_factory: ServerFactory, *registrations: str) -> ServerProcess:
    listed = ", ".join(f'"{r}"' for r in registrations)
    return server_factory("--open-registration",
                          config_text=f"appservice_registrations = [{listed}]\n")


def _as(token_id: str = "lazy", user_id: str | None = None) -> tuple[dict[str, str],
                                                                     dict[str, str]]:
    params = {} if user_id is None else {"user_id": user_id}
    return bearer(f"{AS_TOKEN}-{token_id}"), params


async def _register_ghost(http: httpx.AsyncClient, user_id: str) -> int:
    headers, _ = _as()
    r = await http.post("/_matrix/client/v3/register", headers=headers, json={
        "type": "m.login.application_service", "username": user_id[1:].split(":")[0],
        "inhibit_login": True})
    return r.status_code


def _server_name(user: dict[str, Any]) -> str:
    return str(user["user_id"]).split(":", 1)[1]


async def test_an_unknown_namespaced_user_is_queried_before_the_event_is_pushed(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service:
        server = _start(server_factory, _registration(tmp_path, service.url))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            queried: list[str] = []

            async def on_query(kind: str, ident: str) -> int:
                queried.append(ident)
                return await _register_ghost(http, ident) if kind == "users" else 404

            service.on_query = on_query
            alice = await register(http)
            ghost = f"@ghost_{unique('g')}:{_server_name(alice)}"
            room_id = await create_room(http, alice["access_token"])
            r = await http.post(room_path(room_id, "invite"), json={"user_id": ghost},
                                headers=bearer(alice["access_token"]))
            assert r.status_code == 200, r.text
            invites = await service.wait_for(1, "m.room.member")
            # The ghost now exists: the appservice acts as it and joins.
            headers, params = _as(user_id=ghost)
            r = await http.post(room_path(room_id, "join"), json={}, headers=headers,
                                params=params)
            assert r.status_code == 200, r.text
    assert queried == [ghost]
    assert invites[0]["state_key"] == ghost
    query_at = next(a.at for a in service.attempts if a.path.startswith(QUERY_PREFIX + "users"))
    push_at = next(a.at for a in service.attempts if a.path.startswith(TXN_PREFIX)
                   and ghost in a.body.decode())
    assert query_at < push_at


async def test_an_unknown_namespaced_alias_is_created_by_the_appservice(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service:
        server = _start(server_factory, _registration(tmp_path, service.url))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            queried: list[str] = []

            async def on_query(kind: str, ident: str) -> int:
                queried.append(ident)
                name = ident[1:].split(":")[0]
                if kind != "rooms" or name.endswith("_refused"):
                    return 404
                headers, _ = _as()
                r = await http.post("/_matrix/client/v3/createRoom", headers=headers, json={
                    "room_alias_name": name, "preset": "public_chat"})
                return 200 if r.status_code == 200 else 500

            service.on_query = on_query
            alice = await register(http)
            hs = _server_name(alice)
            token = alice["access_token"]
            alias = f"#ghost_{unique('lobby')}:{hs}"
            r = await http.get(f"/_matrix/client/v3/directory/room/{quote(alias)}",
                               headers=bearer(token))
            assert r.status_code == 200, r.text
            room_id = r.json()["room_id"]
            # Joining by the alias works, and a second lookup needs no query.
            r = await http.post(f"/_matrix/client/v3/join/{quote(alias)}", json={},
                                headers=bearer(token))
            assert r.status_code == 200, r.text
            assert r.json()["room_id"] == room_id
            refused = f"#ghost_{unique('x')}_refused:{hs}"
            r = await http.get(f"/_matrix/client/v3/directory/room/{quote(refused)}",
                               headers=bearer(token))
            assert_error(r, 404, "M_NOT_FOUND")
            # Outside every namespace: no query at all.
            r = await http.get(f"/_matrix/client/v3/directory/room/{quote('#other:' + hs)}",
                               headers=bearer(token))
            assert_error(r, 404, "M_NOT_FOUND")
    assert queried == [alias, refused]


async def test_exclusive_aliases_are_refused_to_others_and_owned_by_the_appservice(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service:
        server = _start(server_factory, _registration(tmp_path, service.url))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice = await register(http)
            hs = _server_name(alice)
            token = alice["access_token"]
            room_id = await create_room(http, token)
            taken = f"#ghost_{unique('a')}:{hs}"
            r = await http.put(f"/_matrix/client/v3/directory/room/{quote(taken)}",
                               json={"room_id": room_id}, headers=bearer(token))
            assert_error(r, 400, "M_EXCLUSIVE")
            r = await http.post("/_matrix/client/v3/createRoom", headers=bearer(token),
                                json={"room_alias_name": f"ghost_{unique('b')}"})
            assert_error(r, 400, "M_EXCLUSIVE")
            # The appservice may set it, and remove it although it did not create the room.
            headers, _ = _as()
            r = await http.put(f"/_matrix/client/v3/directory/room/{quote(taken)}",
                               json={"room_id": room_id}, headers=headers)
            assert r.status_code == 200, r.text
            r = await http.delete(f"/_matrix/client/v3/directory/room/{quote(taken)}",
                                  headers=headers)
            assert r.status_code == 200, r.text
            # A normal alias outside the namespace is still the user's.
            mine = f"#alice_{unique('c')}:{hs}"
            r = await http.put(f"/_matrix/client/v3/directory/room/{quote(mine)}",
                               json={"room_id": room_id}, headers=bearer(token))
            assert r.status_code == 200, r.text


async def _bridged_room(http: httpx.AsyncClient, ghost_prefix: str = "ghost"
                        ) -> tuple[dict[str, Any], str, str]:
    """Alice's room with a ghost of the appservice joined; (alice, room, ghost ID)."""
    alice = await register(http)
    ghost = f"@{ghost_prefix}_{unique('g')}:{_server_name(alice)}"
    assert await _register_ghost(http, ghost) == 200
    room_id = await create_room(http, alice["access_token"], preset="public_chat")
    headers, params = _as(user_id=ghost)
    r = await http.post(room_path(room_id, "join"), json={}, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return alice, room_id, ghost


async def test_ephemeral_data_reaches_appservices_that_asked_for_it(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service, fake_appservice() as quiet:
        server = _start(server_factory, _registration(tmp_path, service.url),
                        _registration(tmp_path, quiet.url, ephemeral=False, as_id="quiet",
                                      prefix="quiet"))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice, room_id, ghost = await _bridged_room(http)
            token = alice["access_token"]
            # The quiet appservice's user is in the room too: it gets the events, no ephemeral.
            r = await http.post("/_matrix/client/v3/register", headers=_as("quiet")[0], json={
                "type": "m.login.application_service", "username": unique("quiet_"),
                "inhibit_login": True})
            assert r.status_code == 200, r.text
            r = await http.post(room_path(room_id, "join"), json={},
                                headers=_as("quiet")[0], params={"user_id": r.json()["user_id"]})
            assert r.status_code == 200, r.text
            # A room the appservice has no interest in.
            elsewhere = await create_room(http, token)

            r = await http.put(room_path(elsewhere, "typing", alice["user_id"]),
                               json={"typing": True, "timeout": 30000}, headers=bearer(token))
            assert r.status_code == 200, r.text
            r = await http.put(room_path(room_id, "typing", alice["user_id"]),
                               json={"typing": True, "timeout": 30000}, headers=bearer(token))
            assert r.status_code == 200, r.text
            await service.wait_until(lambda: any(
                alice["user_id"] in e["content"]["user_ids"]
                for e in service.ephemeral("m.typing")))

            event_id = await send_text(http, token, room_id, "read me")
            for receipt_type in ("m.read.private", "m.read"):
                r = await http.post(room_path(room_id, "receipt", receipt_type, event_id),
                                    json={}, headers=bearer(token))
                assert r.status_code == 200, r.text
            headers, params = _as(user_id=ghost)
            r = await http.post(room_path(room_id, "receipt", "m.read.private", event_id),
                                json={}, headers=headers, params=params)
            assert r.status_code == 200, r.text
            await service.wait_until(lambda: any(
                ghost in e["content"].get(event_id, {}).get("m.read.private", {})
                for e in service.ephemeral("m.receipt")))

            r = await http.put(f"/_matrix/client/v3/presence/{quote(alice['user_id'])}/status",
                               json={"presence": "online", "status_msg": "bridging"},
                               headers=bearer(token))
            assert r.status_code == 200, r.text
            await service.wait_until(lambda: any(
                e["sender"] == alice["user_id"] for e in service.ephemeral("m.presence")))
            await quiet.wait_for(1)  # the quiet one got the message
            await trio.sleep(0.3)

    typing = service.ephemeral("m.typing")
    assert {e["room_id"] for e in typing} == {room_id}  # nothing from the other room
    receipts = service.ephemeral("m.receipt")
    assert all(e["room_id"] == room_id for e in receipts)
    readers = {(user, rtype) for e in receipts
               for rtype, users in e["content"][event_id].items() for user in users}
    assert (alice["user_id"], "m.read") in readers
    assert (ghost, "m.read.private") in readers
    assert (alice["user_id"], "m.read.private") not in readers  # not the appservice's user
    presence = [e for e in service.ephemeral("m.presence") if e["sender"] == alice["user_id"]]
    assert presence[-1]["content"]["presence"] == "online"
    assert presence[-1]["content"]["status_msg"] == "bridging"
    assert all("ephemeral" not in body for _, body in quiet.accepted())
