"""Interoperability: a real bridge library, mautrix-python, against the homeserver.

interop/mautrix/echo_bridge.py is a small mautrix AppService run as a subprocess: its bot joins
rooms it is invited to and a ghost `@echo_<user>` echoes each message. The tests drive it as a
normal user over HTTP: echoes arrive in order and once, nothing is lost or repeated over a bridge
restart, the exclusive namespace holds, and alias queries and ephemeral events reach the bridge.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    register,
    room_path,
    send_text,
    unique,
)
from tests.server_process import ServerProcess

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mautrix") is None,
    reason="mautrix is not installed (pip install 'mautrix>=0.21,<0.22', in the dev extra)")

BRIDGE = Path(__file__).resolve().parents[2] / "interop" / "mautrix" / "echo_bridge.py"
BOT = "echobot"
N_MESSAGES = 20

ServerFactory = Callable[..., ServerProcess]
Record = dict[str, Any]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Bridge:
    """The echo bridge subprocess; its JSON lines (across restarts) collect in `out_path`."""
    registration: Path
    homeserver: ServerProcess
    port: int
    out_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def records(self, kind: str | None = None) -> list[Record]:
        lines = self.out_path.read_text(encoding="utf-8").splitlines() \
            if self.out_path.exists() else []
        return [r for r in map(json.loads, lines) if kind is None or r["kind"] == kind]

    async def wait_for(self, check: Callable[[list[Record]], bool], within_s: float = 10
                       ) -> list[Record]:
        with trio.move_on_after(within_s):
            while not check(records := self.records()):
                assert self.proc is not None
                assert self.proc.poll() is None, self.log()
                await trio.sleep(0.02)
            return records
        raise AssertionError(f"bridge: timed out; records {self.records()}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""

    def _spawn(self) -> None:
        with self.out_path.open("ab") as out, self.log_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(BRIDGE), str(self.registration), self.homeserver.url,
                 self.homeserver.server_name, str(self.port)], stdout=out, stderr=err)

    async def start(self) -> None:
        ready_before = len(self.records("ready"))
        self._spawn()
        await self.wait_for(lambda rs: sum(r["kind"] == "ready" for r in rs) > ready_before,
                            within_s=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _write_registration(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "echo-registration.yaml"
    path.write_text(
        f"id: echo\nurl: http://127.0.0.1:{port}\nas_token: {unique('as-token-')}\n"
        f"hs_token: {unique('hs-token-')}\nsender_localpart: {BOT}\nrate_limited: false\n"
        "receive_ephemeral: true\nnamespaces:\n"
        "  users:\n    - exclusive: true\n      regex: '@echo_.*'\n"
        "  aliases:\n    - exclusive: true\n      regex: '#echo_.*'\n"
        "  rooms: []\n", encoding="utf-8")
    return path


@pytest.fixture
def bridge(tmp_path: Path, server_factory: ServerFactory) -> Iterator[Bridge]:
    """A homeserver with the echo bridge's registration, and the (not yet started) bridge."""
    port = _free_port()
    registration = _write_registration(tmp_path, port)
    server = server_factory(
        "--open-registration", "--no-rate-limits",
        config_text=f'appservice_registrations = ["{registration}"]\n')
    b = Bridge(registration, server, port, tmp_path / "bridge.jsonl", tmp_path / "bridge.log")
    try:
        yield b
    finally:
        b.stop()


class Timeline:
    """One user's /sync view of one room: timeline events with the time they became visible."""

    def __init__(self, http: httpx.AsyncClient, token: str, room_id: str) -> None:
        self.http, self.token, self.room_id = http, token, room_id
        self.events: list[tuple[float, Record]] = []
        self.since: str | None = None
        self.filter = json.dumps({"room": {"rooms": [room_id], "timeline": {"limit": 200}}})

    async def pull(self, timeout_ms: int = 1000) -> None:
        params = {"filter": self.filter, "timeout": str(timeout_ms)}
        if self.since is not None:
            params["since"] = self.since
        r = await self.http.get(f"{CLIENT}/sync", params=params, headers=bearer(self.token))
        assert r.status_code == 200, r.text
        now = trio.current_time()
        body = r.json()
        self.since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(self.room_id, {})
        self.events += [(now, e) for e in room.get("timeline", {}).get("events", [])]

    async def wait_for(self, check: Callable[[list[Record]], bool], within_s: float = 10
                       ) -> float:
        """The time at which `check` first held for the events seen so far."""
        with trio.fail_after(within_s):
            while not check([e for _, e in self.events]):
                await self.pull()
        return self.events[-1][0] if self.events else trio.current_time()


def _bodies(events: list[Record], sender: str) -> list[str]:
    return [e["content"].get("body") for e in events
            if e["type"] == "m.room.message" and e["sender"] == sender]


def _has_body(body: str, sender: str) -> Callable[[list[Record]], bool]:
    return lambda events: body in _bodies(events, sender)


async def _room_with_bot(http: httpx.AsyncClient, bridge: Bridge
                         ) -> tuple[dict[str, Any], str, str]:
    """A new user, their private room with the bridge bot joined, and the user's ghost ID."""
    user = await register(http)
    token = user["access_token"]
    room_id = await create_room(http, token, preset="private_chat")
    bot_id = f"@{BOT}:{bridge.homeserver.server_name}"
    r = await http.post(room_path(room_id, "invite"), json={"user_id": bot_id},
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    await bridge.wait_for(lambda rs: any(r["kind"] == "joined" and r["room_id"] == room_id
                                         for r in rs))
    ghost = f"@echo_{user['user_id'][1:].split(':')[0]}:{bridge.homeserver.server_name}"
    return user, room_id, ghost


def _as_token(bridge: Bridge) -> str:
    return next(line.split(": ", 1)[1] for line in
                bridge.registration.read_text(encoding="utf-8").splitlines()
                if line.startswith("as_token: "))


async def _all_messages(http: httpx.AsyncClient, token: str, room_id: str) -> list[Record]:
    r = await http.get(room_path(room_id, "messages"), params={"dir": "b", "limit": "500"},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["chunk"]))


async def test_echoes_arrive_in_order_once_across_a_bridge_restart(bridge: Bridge) -> None:
    await bridge.start()
    async with httpx.AsyncClient(base_url=bridge.homeserver.url, timeout=15) as http:
        user, room_id, ghost = await _room_with_bot(http, bridge)
        token = user["access_token"]
        timeline = Timeline(http, token, room_id)
        await timeline.pull(0)

        latencies = []
        for n in range(N_MESSAGES):
            sent_at = trio.current_time()
            await send_text(http, token, room_id, f"m{n}")
            seen_at = await timeline.wait_for(_has_body(f"echo: m{n}", ghost))
            latencies.append(seen_at - sent_at)
        first = [f"echo: m{n}" for n in range(N_MESSAGES)]
        assert _bodies([e for _, e in timeline.events], ghost) == first

        # The ghost's last echo comes back to the bridge in a later transaction than the
        # message it answers, so once the bridge has it every earlier transaction was answered.
        await bridge.wait_for(lambda rs: any(
            r["kind"] == "event" and r["body"] == first[-1] for r in rs))
        bridge.stop()
        later = [await send_text(http, token, room_id, f"down{n}") for n in range(5)]
        assert len(later) == 5
        await bridge.start()
        await timeline.wait_for(_has_body("echo: down4", ghost), within_s=20)
        await trio.sleep(1)  # room for a duplicate to show up
        await timeline.pull(0)

        expected = first + [f"echo: down{n}" for n in range(5)]
        assert _bodies([e for _, e in timeline.events], ghost) == expected
        messages = await _all_messages(http, token, room_id)
        assert _bodies(messages, ghost) == expected
        assert _bodies(messages, user["user_id"]) == \
            [f"m{n}" for n in range(N_MESSAGES)] + [f"down{n}" for n in range(5)]
        echoed = [r["source"] for r in bridge.records("echoed")]
        assert len(echoed) == len(set(echoed)) == len(expected)
        assert bridge.records("error") == [], bridge.log()

    latencies.sort()
    print(f"\nmautrix echo round trip (send -> echo in the sender's /sync) over {N_MESSAGES}"
          f" messages: median {statistics.median(latencies) * 1000:.1f} ms,"
          f" max {latencies[-1] * 1000:.1f} ms")


async def test_a_normal_user_cannot_register_in_the_exclusive_namespace(bridge: Bridge
                                                                         ) -> None:
    async with httpx.AsyncClient(base_url=bridge.homeserver.url, timeout=15) as http:
        r = await http.post(f"{CLIENT}/register", json={
            "username": "echo_x", "password": "correct horse battery staple",
            "auth": {"type": "m.login.dummy"}})
        assert_error(r, 400, "M_EXCLUSIVE")


async def test_joining_an_unknown_namespaced_alias_asks_the_bridge(bridge: Bridge) -> None:
    await bridge.start()
    alias = f"#echo_lobby:{bridge.homeserver.server_name}"
    async with httpx.AsyncClient(base_url=bridge.homeserver.url, timeout=15) as http:
        user = await register(http)
        r = await http.post(f"{CLIENT}/join/{quote(alias, safe='')}", json={},
                            headers=bearer(user["access_token"]))
        assert r.status_code == 200, f"{r.text}\n{bridge.log()}"
        created = bridge.records("room_created")
        assert [c["alias"] for c in created] == [alias]
        assert r.json()["room_id"] == created[0]["room_id"]
        r = await http.get(f"{CLIENT}/directory/room/{quote(alias, safe='')}")
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == created[0]["room_id"]


async def test_inviting_an_unknown_namespaced_user_asks_the_bridge(bridge: Bridge) -> None:
    await bridge.start()
    ghost = f"@echo_{unique('newcomer')}:{bridge.homeserver.server_name}"
    async with httpx.AsyncClient(base_url=bridge.homeserver.url, timeout=15) as http:
        user = await register(http)
        room_id = await create_room(http, user["access_token"])
        r = await http.post(room_path(room_id, "invite"), json={"user_id": ghost},
                            headers=bearer(user["access_token"]))
        assert r.status_code == 200, r.text
        await bridge.wait_for(lambda rs: any(r["kind"] == "ghost_created" for r in rs))
        assert [q["user_id"] for q in bridge.records("query_user")] == [ghost]
        # The bridge registered the ghost while answering: the appservice can now act as it.
        r = await http.get(f"{CLIENT}/account/whoami", params={"user_id": ghost},
                           headers=bearer(_as_token(bridge)))
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == ghost


async def test_typing_reaches_the_bridge(bridge: Bridge) -> None:
    await bridge.start()
    async with httpx.AsyncClient(base_url=bridge.homeserver.url, timeout=15) as http:
        user, room_id, _ = await _room_with_bot(http, bridge)
        r = await http.put(room_path(room_id, "typing", user["user_id"]),
                           json={"typing": True, "timeout": 10000},
                           headers=bearer(user["access_token"]))
        assert r.status_code == 200, r.text
        await bridge.wait_for(lambda rs: any(
            r["kind"] == "ephemeral" and r["type"] == "m.typing"
            and r["event"].get("room_id") == room_id
            and user["user_id"] in r["event"]["content"]["user_ids"] for r in rs))


async def test_the_bot_can_register(bridge: Bridge) -> None:
    """What mautrix's `ensure_registered()` sends for the bridge bot: 200, or M_USER_IN_USE
    if it exists already; the sender_localpart user belongs to the appservice."""
    as_token = _as_token(bridge)
    async with httpx.AsyncClient(base_url=bridge.homeserver.url, timeout=15) as http:
        r = await http.post(f"{CLIENT}/register", params={"kind": "user"},
                            json={"username": BOT, "type": "m.login.application_service",
                                  "inhibit_login": True}, headers=bearer(as_token))
    assert r.status_code == 200 or r.json().get("errcode") == "M_USER_IN_USE", r.text
