"""Deactivation takes the user out of every room (joined rooms left, invites rejected, knocks
retracted) in the background, removes their pushers, and with "erase" their non-event data;
the offline `trioserver deactivate` does the same through a running server or the next start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.cli_process import run_cli
from tests.e2e.helpers import (
    PASSWORD,
    bearer,
    create_room,
    join_room,
    password_auth,
    register,
    room_path,
    send_text,
    unique,
)

DEACTIVATE = "/_matrix/client/v3/account/deactivate"


async def deactivate(http: httpx.AsyncClient, account: dict[str, Any], **body: Any) -> None:
    auth = bearer(account["access_token"])
    r = await http.post(DEACTIVATE, json={}, headers=auth)
    session = r.json()["session"]
    r = await http.post(DEACTIVATE, headers=auth, json={
        **body, "auth": password_auth(account["user_id"], PASSWORD, session)})
    assert r.status_code == 200, r.text


async def membership(http: httpx.AsyncClient, token: str, room_id: str, user_id: str
                     ) -> str | None:
    r = await http.get(room_path(room_id, "state", "m.room.member", user_id),
                       headers=bearer(token))
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    value: str = r.json()["membership"]
    return value


async def wait_for_leave(http: httpx.AsyncClient, token: str, rooms: list[str],
                         user_id: str, within_s: float = 10.0) -> None:
    with trio.move_on_after(within_s):
        while True:
            found = [await membership(http, token, r, user_id) for r in rooms]
            if all(m == "leave" for m in found):
                return
            await trio.sleep(0.1)
    raise AssertionError(f"{user_id} still has {found} in {rooms}")


async def rooms_in_every_state(http: httpx.AsyncClient, owner: dict[str, Any],
                               user: dict[str, Any]) -> list[str]:
    """Rooms of `owner` where `user` is joined (two), invited, and knocking."""
    token = owner["access_token"]
    joined = [await create_room(http, token, preset="public_chat") for _ in range(2)]
    for room_id in joined:
        await join_room(http, user["access_token"], room_id)
    invited = await create_room(http, token, preset="private_chat")
    r = await http.post(room_path(invited, "invite"), json={"user_id": user["user_id"]},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    knocked = await create_room(http, token, room_version="11", initial_state=[{
        "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    r = await http.post(f"/_matrix/client/v3/knock/{knocked}", json={},
                        headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text
    return [*joined, invited, knocked]


def read_db(data_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(data_dir / "trioserver.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


async def test_deactivation_leaves_every_room(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        owner = await register(http, unique("owner"))
        leaver = await register(http, unique("leaver"))
        rooms = await rooms_in_every_state(http, owner, leaver)
        await send_text(http, leaver["access_token"], rooms[0], "goodbye")
        r = await http.post("/_matrix/client/v3/pushers/set", headers=bearer(
            leaver["access_token"]), json={
            "kind": "http", "app_id": "a.b", "pushkey": "k", "app_display_name": "A",
            "device_display_name": "D", "lang": "en",
            "data": {"url": "http://127.0.0.1:9/_matrix/push/v1/notify"}})
        assert r.status_code == 200, r.text

        await deactivate(http, leaver)
        await wait_for_leave(http, owner["access_token"], rooms, leaver["user_id"])
        # The rooms go on without them; the owner sees the leave in the timeline.
        await send_text(http, owner["access_token"], rooms[0], "still here")
        r = await http.get(room_path(rooms[0], "joined_members"),
                           headers=bearer(owner["access_token"]))
        assert list(r.json()["joined"]) == [owner["user_id"]]
    assert read_db(srv.data_dir, "SELECT count(*) FROM pushers WHERE user_id = ?",
                   leaver["user_id"]) == [(0,)]
    assert read_db(srv.data_dir, "SELECT count(*) FROM deactivation_queue") == [(0,)]
    assert read_db(srv.data_dir, "SELECT erased FROM users WHERE user_id = ?",
                   leaver["user_id"]) == [(0,)]


async def test_erase_removes_non_event_data(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        keeper = await register(http, unique("keeper"))
        eraser = await register(http, unique("eraser"))
        for account in (keeper, eraser):
            path = f"/_matrix/client/v3/user/{account['user_id']}/account_data/m.test"
            r = await http.put(path, json={"secret": 1},
                               headers=bearer(account["access_token"]))
            assert r.status_code == 200, r.text
        await deactivate(http, eraser, erase=True)
        await deactivate(http, keeper)
    counts = {uid: read_db(srv.data_dir,
                           "SELECT count(*) FROM account_data WHERE user_id = ?", uid)[0][0]
              for uid in (keeper["user_id"], eraser["user_id"])}
    assert counts == {keeper["user_id"]: 1, eraser["user_id"]: 0}
    assert read_db(srv.data_dir, "SELECT user_id FROM users WHERE erased = 1") == [
        (eraser["user_id"],)]


async def test_offline_deactivation_leaves_rooms_in_a_running_server(
        server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        owner = await register(http, unique("owner"))
        leaver = await register(http, unique("leaver"))
        rooms = await rooms_in_every_state(http, owner, leaver)
        out = await run_cli("deactivate", leaver["user_id"], "--data-dir", srv.data_dir)
        assert out.returncode == 0, out.stderr
        await wait_for_leave(http, owner["access_token"], rooms, leaver["user_id"])


async def test_queue_survives_a_restart(server_factory: ServerFactory,
                                        tmp_path: Path) -> None:
    data_dir = tmp_path / "hs"
    srv = server_factory("--open-registration", "--no-rate-limits", data_dir=data_dir)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        owner = await register(http, unique("owner"))
        leaver = await register(http, unique("leaver"))
        rooms = await rooms_in_every_state(http, owner, leaver)
    srv.stop()
    out = await run_cli("deactivate", leaver["user_id"], "--data-dir", srv.data_dir)
    assert out.returncode == 0, out.stderr
    assert read_db(srv.data_dir, "SELECT user_id FROM deactivation_queue") == [
        (leaver["user_id"],)]
    srv = server_factory("--open-registration", "--no-rate-limits", data_dir=data_dir)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        await wait_for_leave(http, owner["access_token"], rooms, leaver["user_id"])
    assert read_db(srv.data_dir, "SELECT count(*) FROM deactivation_queue") == [(0,)]


async def _bodies_seen(http: httpx.AsyncClient, token: str, room_id: str, sender: str
                       ) -> list[Any]:
    r = await http.get(room_path(room_id, "messages"), params={"dir": "b", "limit": "50"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["content"].get("body") for e in r.json()["chunk"]
            if e["type"] == "m.room.message" and e["sender"] == sender]


async def test_erased_users_events_are_redacted_for_later_joiners(
        server_factory: ServerFactory) -> None:
    """Spec (deactivateAccount `erase`): users who join after the erasure are served redacted
    copies of the erased user's events; users who could see them before still can. Without
    `erase`, nothing is redacted."""
    srv = server_factory("--open-registration", "--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        owner = await register(http, unique("owner"))
        eraser = await register(http, unique("eraser"))
        keeper = await register(http, unique("keeper"))
        room_id = await create_room(http, owner["access_token"], preset="public_chat")
        for account in (eraser, keeper):
            await join_room(http, account["access_token"], room_id)
        secret = await send_text(http, eraser["access_token"], room_id, "erase me")
        await send_text(http, keeper["access_token"], room_id, "keep me")
        await deactivate(http, eraser, erase=True)
        await deactivate(http, keeper)
        newcomer = await register(http, unique("newcomer"))
        await join_room(http, newcomer["access_token"], room_id)

        # The owner was there: the original. The newcomer: redacted; the keeper's stays.
        assert await _bodies_seen(http, owner["access_token"], room_id,
                                  eraser["user_id"]) == ["erase me"]
        assert await _bodies_seen(http, newcomer["access_token"], room_id,
                                  eraser["user_id"]) == [None]
        assert await _bodies_seen(http, newcomer["access_token"], room_id,
                                  keeper["user_id"]) == ["keep me"]
        r = await http.get(room_path(room_id, "event", secret),
                           headers=bearer(newcomer["access_token"]))
        assert r.status_code == 200, r.text
        assert r.json()["content"] == {}
        r = await http.get(room_path(room_id, "event", secret),
                           headers=bearer(owner["access_token"]))
        assert r.json()["content"]["body"] == "erase me"
        # The newcomer's /sync timeline too.
        r = await http.get("/_matrix/client/v3/sync", headers=bearer(newcomer["access_token"]),
                           params={"filter": '{"room": {"timeline": {"limit": 50}}}'})
        timeline = r.json()["rooms"]["join"][room_id]["timeline"]["events"]
        erased = [e for e in timeline if e["event_id"] == secret]
        assert [e["content"] for e in erased] == [{}]
        # Search does not hand the erased text to the newcomer either.
        r = await http.post("/_matrix/client/v3/search", headers=bearer(
            newcomer["access_token"]), json={"search_categories": {"room_events": {
                "search_term": "erase"}}})
        results = r.json()["search_categories"]["room_events"]["results"]
        assert all(x["result"]["content"] == {} for x in results
                   if x["result"]["event_id"] == secret)
