"""Every HTTP route the server has, fed bad input: never a 5xx, and every 4xx is Matrix JSON.

The routes come from the real app's URL map (built in-process, never served), so a route added
later is fuzzed without touching this file. Path parameters are filled with real values (a room,
an event, a user, a device...) so the requests reach the handlers' body and query parsing, and
once per parameter with hostile values. Routes that would end user 1's session run last, as
user 2, one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.helpers import (
    PASSWORD,
    bearer,
    create_room,
    join_room,
    login,
    register,
    send_text,
    unique,
)
from tests.server_process import ServerProcess

CONCURRENCY = 8
REQUEST_TIMEOUT_S = 30.0
JSON_TYPE = {"Content-Type": "application/json"}
PARAM = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")

# Bodies every route gets (None: no body at all).
WRONG_TYPES: dict[str, Any] = {
    "body": 5, "msgtype": [], "membership": {}, "user_id": 7, "content": "x", "auth": "x",
    "device_id": [], "displayname": 3, "reason": {}, "limit": "x", "filter": 5, "timeout": "x",
}
BODIES: tuple[tuple[str, bytes | None], ...] = (
    ("no body", None),
    ("invalid JSON", b"{"),
    ("array", b"[]"),
    ("null", b"null"),
    ("string", b'"s"'),
    ("wrong-typed fields", json.dumps(WRONG_TYPES).encode()),
    ("arrays nested 500 deep", b"[" * 500 + b"]" * 500),
    ("arrays nested 5000 deep", b"[" * 5000 + b"]" * 5000),
)
BAD_QUERIES = (
    "limit=abc&from=zzz&dir=q&timeout=-5&filter=%7B",
    "limit=-1&from=&to=%00&since=s99_x&dir=&full_state=maybe&set_presence=q&width=x&height=-1"
    "&method=z&animated=q&allow_redirect=2&ts=x&server_name=%40&via=!&filter=%5B%5D&search=%00",
)
# Raw values, percent-encoded into the path: NUL, overlong, traversal, empty sigils, a literal
# "%00" (double decoding), unicode with a bidi override, CRLF.
HOSTILE = ("\x00", "x" * 300, "../../etc/passwd", "@:", "!", "%00", "\u202e\U0001f600",
           "\r\nX-Injected: 1")

# Routes that could end the session or membership of whoever calls them: run last, as user 2.
DESTRUCTIVE = {
    ("POST", "/_matrix/client/v3/logout"),
    ("POST", "/_matrix/client/v3/logout/all"),
    ("POST", "/_matrix/client/v3/account/deactivate"),
    ("POST", "/_matrix/client/v3/account/password"),
    ("POST", "/_matrix/client/v3/delete_devices"),
    ("DELETE", "/_matrix/client/v3/devices/<device_id>"),
    ("POST", "/_matrix/client/v3/rooms/<room_id>/leave"),
    ("POST", "/_matrix/client/v3/rooms/<room_id>/forget"),
}


def enumerate_routes(tmp: Path) -> list[tuple[str, str]]:
    """(method, rule) for every route of the app `trioserver serve` runs, HEAD/OPTIONS aside."""
    from trioserver.app import create_app
    from trioserver.config import Config
    from trioserver.services.container import build_services
    from trioserver.services.events.signing import load_or_create_signing_key
    from trioserver.storage.db import Database
    from trioserver.storage.ttl_store import TTLStore

    tmp.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(Config(), data_dir=tmp)
    db = Database.open(config.database_path)
    try:
        services = build_services(config, db, TTLStore(),
                                  load_or_create_signing_key(tmp / "signing.key"))
        app = create_app(services)
        routes = {(method, rule.rule) for rule in app.url_map.iter_rules()
                  for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    finally:
        db.close()
    return sorted(routes, key=lambda mr: (mr[1], mr[0]))


@dataclass
class Identity:
    user_id: str
    token: str
    device_id: str


@dataclass
class World:
    """The real values path parameters are filled with."""

    server_name: str
    user1: Identity
    user2: Identity
    room_id: str
    event_id: str
    media_id: str
    filter_id: str
    backup_version: str
    key_id: str
    txns: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))

    def segment(self, name: str, who: Identity) -> str:
        """The value of parameter `name`, percent-encoded as one path segment (or more)."""
        raw = {
            "room_id": self.room_id,
            "room_id_or_alias": self.room_id,
            "user_id": who.user_id,
            "event_id": self.event_id,
            "device_id": who.device_id,
            "txn_id": f"fuzz{next(self.txns)}",
            "event_type": "m.room.message",
            "server_name": self.server_name,
            "media_id": self.media_id,
            "file_name": "x.txt",
            "filter_id": self.filter_id,
            "version": self.backup_version,
            "key_id": self.key_id,
            "alias": f"#fuzz:{self.server_name}",
            "kind": "override",
            "rule_id": ".m.rule.master",
            "receipt_type": "m.read",
            "rel_type": "m.thread",
            "data_type": "m.fuzz",
            "tag": "u.fuzz",
        }.get(name, "x")
        if name == "rest":  # /profile/<path:rest>: "{userId}" or "{userId}/{keyName}"
            return f"{quote(who.user_id, safe='')}/displayname"
        return quote(raw, safe="")


@dataclass(frozen=True)
class Case:
    method: str
    rule: str
    label: str
    auth: bool
    body: bytes | None
    query: str = ""
    hostile: tuple[str, str] | None = None  # (parameter, raw value)

    def path(self, world: World, who: Identity) -> str:
        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if self.hostile is not None and self.hostile[0] == name:
                return quote(self.hostile[1], safe="")
            return world.segment(name, who)

        path = PARAM.sub(fill, self.rule)
        return f"{path}?{self.query}" if self.query else path


def build_cases(method: str, rule: str) -> list[Case]:
    cases = [Case(method, rule, label, auth, body)
             for auth in (True, False) for label, body in BODIES]
    if method == "GET":
        cases += [Case(method, rule, f"bad query {q!r}", auth, None, q)
                  for auth in (True, False) for q in BAD_QUERIES]
    for name in PARAM.findall(rule):
        body = None if method in ("GET", "DELETE") else b"{}"
        cases += [Case(method, rule, f"{name}={value!r}", True, body, hostile=(name, value))
                  for value in HOSTILE]
    return cases


def problem(r: httpx.Response) -> str | None:
    """Why `r` is not an acceptable answer to bad input (None: it is)."""
    if r.status_code >= 500:
        return "server error"
    if r.status_code < 400:
        return None
    if not r.headers.get("content-type", "").startswith("application/json"):
        return f"content-type {r.headers.get('content-type')!r}"
    try:
        body = r.json()
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict):
        return "body is not a JSON object"
    if r.status_code == 401 and isinstance(body.get("flows"), list) and "errcode" not in body:
        return None  # user-interactive auth: the spec's 401 carries flows, not errcode
    errcode = body.get("errcode")
    if not isinstance(errcode, str) or not errcode.startswith("M_"):
        return f"errcode {errcode!r}"
    if not isinstance(body.get("error"), str):
        return f"error {body.get('error')!r}"
    return None


@dataclass
class Run:
    client: httpx.AsyncClient
    world: World
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    async def send(self, case: Case, who: Identity) -> httpx.Response | None:
        headers: dict[str, str] = {}
        if case.auth:
            headers.update(bearer(who.token))
        if case.body is not None:
            headers.update(JSON_TYPE)
        path = case.path(self.world, who)
        self.requests += 1
        where = f"{case.method} {path[:160]} [{case.rule}] ({case.label}, " \
                f"{'authenticated' if case.auth else 'anonymous'})"
        try:
            # No retry: a response sent before the request body arrived must say
            # `Connection: close` (app.shield_send), so a kept-alive connection is never
            # dropped under the client's next request.
            r = await self.client.request(case.method, path, content=case.body,
                                          headers=headers)
        except httpx.HTTPError as e:
            self.failures.append(f"{where}: no response: {e!r}")
            return None
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        why = problem(r)
        if why is not None:
            self.failures.append(f"{where}: {r.status_code} {why}: {r.text[:200]!r}")
        return r


async def _setup(http: httpx.AsyncClient, server_name: str) -> World:
    reg1 = await register(http)
    reg2 = await register(http)
    user1 = Identity(reg1["user_id"], reg1["access_token"], reg1["device_id"])
    user2 = Identity(reg2["user_id"], reg2["access_token"], reg2["device_id"])
    room_id = await create_room(http, user1.token, preset="public_chat")
    await join_room(http, user2.token, room_id)
    event_id = await send_text(http, user1.token, room_id, "fuzz target")

    r = await http.post("/_matrix/media/v3/upload", content=b"hello",
                        headers={**bearer(user1.token), "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    media_server, media_id = r.json()["content_uri"].removeprefix("mxc://").split("/")
    assert media_server == server_name

    r = await http.post(f"/_matrix/client/v3/user/{quote(user1.user_id)}/filter",
                        json={"room": {"timeline": {"limit": 5}}}, headers=bearer(user1.token))
    assert r.status_code == 200, r.text
    filter_id: str = r.json()["filter_id"]

    r = await http.post("/_matrix/client/v3/room_keys/version",
                        json={"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                              "auth_data": {"public_key": "A" * 43}},
                        headers=bearer(user1.token))
    assert r.status_code == 200, r.text
    version: str = r.json()["version"]

    r = await http.get("/_matrix/key/v2/server")
    assert r.status_code == 200, r.text
    key_id = next(iter(r.json()["verify_keys"]))
    return World(server_name, user1, user2, room_id, event_id, media_id, filter_id, version,
                 key_id)


async def _relogin_user2(run: Run) -> None:
    """Give user 2 a working token again after a logout route (or report why not)."""
    user2 = run.world.user2
    r = await run.client.get("/_matrix/client/v3/account/whoami", headers=bearer(user2.token))
    if r.status_code == 200:
        return
    r = await login(run.client, user2.user_id, PASSWORD)
    if r.status_code != 200:
        run.failures.append(f"user 2 can no longer log in: {r.status_code} {r.text[:200]!r}")
        return
    user2.token, user2.device_id = r.json()["access_token"], r.json()["device_id"]


def _server_errors(srv: ServerProcess) -> str:
    """The server log's ERROR records and tracebacks."""
    out: list[str] = []
    keep = False
    for line in srv.log().splitlines():
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
            keep = True
        elif re.match(r"\d{4}-\d\d-\d\d ", line):
            keep = False
        if keep:
            out.append(line)
    return "\n".join(out)[-20000:]


async def test_fuzz_every_route_never_5xx(server_factory: ServerFactory, tmp_path: Path) -> None:
    started = time.monotonic()
    routes = enumerate_routes(tmp_path / "routes")
    assert len(routes) > 150, routes
    srv = server_factory("--open-registration", "--no-rate-limits")
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=srv.url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        world = await _setup(client, srv.server_name)
        run = Run(client, world)

        # Everything but the destructive routes, as user 1, concurrently.
        limiter = trio.CapacityLimiter(CONCURRENCY)

        async def one(case: Case) -> None:
            async with limiter:
                await run.send(case, world.user1)

        async with trio.open_nursery() as nursery:
            for method, rule in routes:
                if (method, rule) not in DESTRUCTIVE:
                    for case in build_cases(method, rule):
                        nursery.start_soon(one, case)

        # The destructive ones as user 2, one at a time, logging back in after a logout.
        for method, rule in routes:
            if (method, rule) in DESTRUCTIVE:
                for case in build_cases(method, rule):
                    r = await run.send(case, world.user2)
                    if r is not None and r.status_code < 300:
                        await _relogin_user2(run)

        # User 1 was never logged out, and the server still answers.
        r = await client.get("/_matrix/client/v3/account/whoami",
                             headers=bearer(world.user1.token))
        if r.status_code != 200:
            run.failures.append(f"user 1's token stopped working: {r.status_code} {r.text!r}")
        await _relogin_user2(run)
        r = await client.get("/_matrix/client/versions")
        assert r.status_code == 200, r.text
        # Registration still works (no lock or table left broken by the fuzz).
        await register(client, unique("after"))

    elapsed = time.monotonic() - started
    print(f"\nfuzzed {len(routes)} routes with {run.requests} requests in {elapsed:.1f}s; "
          f"statuses {dict(sorted(run.statuses.items()))}")
    assert not run.failures, (
        f"{len(run.failures)} bad answers out of {run.requests} requests:\n"
        + "\n".join(run.failures) + "\n\nserver log errors:\n" + _server_errors(srv))
