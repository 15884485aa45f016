"""A fake push gateway for tests: a tiny HTTP/1.1 server on 127.0.0.1 recording each POST."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.e2e.one_shot_http import read_request, send_json, serving

NOTIFY_PATH = "/_matrix/push/v1/notify"


@dataclass
class FakeGateway:
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Answers to give, in order; once used up, 200 {"rejected": []}.
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    attempts: int = 0
    _arrived: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{NOTIFY_PATH}"

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """The first `count` notifications that were answered 200 (within 10 s)."""
        with trio.fail_after(10):
            while len(self.requests) < count:
                await self._arrived.wait()
                self._arrived = trio.Event()
        return self.requests[:count]

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            request = await read_request(stream)
            if request is None:
                return
            self.attempts += 1
            status, answer = self.answers.pop(0) if self.answers else (200, {"rejected": []})
            if status == 200 and request.path == NOTIFY_PATH:
                self.requests.append(json.loads(request.body))
                self._arrived.set()
            payload = json.dumps(answer).encode()
            await send_json(stream, status, payload)


@asynccontextmanager
async def fake_gateway() -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    async with serving(gateway._handle) as port:
        gateway.port = port
        yield gateway
