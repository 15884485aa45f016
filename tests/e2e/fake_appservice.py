"""A fake application service for tests: a tiny HTTP/1.1 server on 127.0.0.1 recording each
PUT /_matrix/app/v1/transactions/{txnId} (and answering queries)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import trio

from tests.e2e.one_shot_http import read_request, send_json, serving

TXN_PREFIX = "/_matrix/app/v1/transactions/"
QUERY_PREFIX = "/_matrix/app/v1/"
THIRDPARTY_PREFIX = "/_matrix/app/v1/thirdparty/"


@dataclass(frozen=True)
class Attempt:
    method: str
    path: str
    authorization: str
    body: bytes
    status: int
    at: float  # trio.current_time() when it arrived


@dataclass
class FakeAppservice:
    port: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    # Statuses to answer transactions with, in order; once used up, 200.
    answers: list[int] = field(default_factory=list)
    _arrived: trio.Event = field(default_factory=trio.Event)
    # Answers GET /_matrix/app/v1/users/{userId} and /rooms/{alias}: called with (kind, ID),
    # kind "users" or "rooms"; returns the status (may first create the entity on the server).
    on_query: Callable[[str, str], Awaitable[int]] | None = None
    # Answers GET /_matrix/app/v1/thirdparty/...: path without the query string -> (status,
    # JSON value, or raw bytes sent as they are); unknown paths are 404. `thirdparty_delay_s`
    # delays every such answer (to look like a hung bridge).
    thirdparty: dict[str, tuple[int, Any]] = field(default_factory=dict)
    thirdparty_delay_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[tuple[str, dict[str, Any]]]:
        """(txn ID, body) of each transaction answered 200, in arrival order."""
        return [(a.path.removeprefix(TXN_PREFIX), json.loads(a.body)) for a in self.attempts
                if a.status == 200 and a.path.startswith(TXN_PREFIX)]

    def delivered(self, event_type: str = "m.room.message") -> list[dict[str, Any]]:
        return [e for _, body in self.accepted() for e in body["events"]
                if e["type"] == event_type]

    def ephemeral(self, event_type: str) -> list[dict[str, Any]]:
        return [e for _, body in self.accepted() for e in body.get("ephemeral", [])
                if e["type"] == event_type]

    async def wait_until(self, check: Callable[[], bool], within_s: float = 15) -> None:
        with trio.fail_after(within_s):
            while not check():
                await self._arrived.wait()
                self._arrived = trio.Event()

    async def wait_for(self, count: int, event_type: str = "m.room.message",
                       within_s: float = 15) -> list[dict[str, Any]]:
        with trio.fail_after(within_s):
            while len(self.delivered(event_type)) < count:
                await self._arrived.wait()
                self._arrived = trio.Event()
        return self.delivered(event_type)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            request = await read_request(stream)
            if request is None:
                return
            method, path, headers, body = (request.method, request.path, request.headers,
                                           request.body)
            status = 200
            if path.startswith(TXN_PREFIX) and self.answers:
                status = self.answers.pop(0)
            kind, _, ident = path.removeprefix(QUERY_PREFIX).partition("/")
            if method == "GET" and path.startswith(QUERY_PREFIX) and kind in ("users", "rooms"):
                status = 404 if self.on_query is None else await self.on_query(
                    kind, unquote(ident))
            payload = b"{}"
            if method == "GET" and path.startswith(THIRDPARTY_PREFIX):
                status, answer = self.thirdparty.get(
                    path.partition("?")[0], (404, {"errcode": "M_NOT_FOUND", "error": "no"}))
                payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                await trio.sleep(self.thirdparty_delay_s)
            self.attempts.append(Attempt(method, path, headers.get("authorization", ""), body,
                                         status, trio.current_time()))
            self._arrived.set()
            await send_json(stream, status, payload)


@asynccontextmanager
async def fake_appservice() -> AsyncIterator[FakeAppservice]:
    service = FakeAppservice()
    async with serving(service._handle) as port:
        service.port = port
        yield service
