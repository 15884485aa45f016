"""Read notifications are deleted once older than `push.keep_read_notifications_days`; unread
ones (the counts) stay whatever their age."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.helpers import bearer, create_room, join_room, register, room_path, send_text

PASS_S = 0.3


def _config(days: int) -> str:
    return f"[push]\nkeep_read_notifications_days = {days}\nretention_interval_s = {PASS_S}\n"


def _rows(data_dir: Path, user_id: str) -> int:
    conn = apsw.Connection(str(data_dir / "trioserver.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("SELECT count(*) FROM push_actions WHERE user_id = ?",
                           (user_id,)).fetchone()
        assert row is not None
        return int(row[0])
    finally:
        conn.close()


async def _setup(http: httpx.AsyncClient) -> tuple[dict[str, Any], str, list[str]]:
    alice = await register(http)
    bob = await register(http)
    room_id = await create_room(http, alice["access_token"], preset="public_chat")
    await join_room(http, bob["access_token"], room_id)
    sent = [await send_text(http, alice["access_token"], room_id, f"m{i}") for i in range(3)]
    r = await http.post(room_path(room_id, "receipt", "m.read", sent[1]), json={},
                        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    return bob, room_id, sent


async def _notified(http: httpx.AsyncClient, token: str) -> list[str]:
    r = await http.get("/_matrix/client/v3/notifications", headers=bearer(token))
    assert r.status_code == 200, r.text
    return [n["event"]["event_id"] for n in r.json()["notifications"]]


async def test_read_notifications_are_deleted_unread_ones_kept(
        server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits", config_text=_config(0))
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        bob, room_id, sent = await _setup(http)
        with trio.fail_after(10):
            # Polling another process's database: there is no event to wait on.
            while _rows(srv.data_dir, bob["user_id"]) != 1:  # noqa: ASYNC110
                await trio.sleep(PASS_S)
        assert await _notified(http, bob["access_token"]) == [sent[2]]
        r = await http.get("/_matrix/client/v3/sync", headers=bearer(bob["access_token"]))
        counts = r.json()["rooms"]["join"][room_id]["unread_notifications"]
        assert counts["notification_count"] == 1


async def test_recent_read_notifications_are_kept(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits", config_text=_config(30))
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        bob, _room_id, sent = await _setup(http)
        await trio.sleep(PASS_S * 4)  # a few passes
        assert _rows(srv.data_dir, bob["user_id"]) == 3
        assert await _notified(http, bob["access_token"]) == list(reversed(sent))
