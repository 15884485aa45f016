"""A fake push gateway for tests: a tiny HTTP/1.1 server on 127.0.0.1 recording each POST."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

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
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                body += chunk
            self.attempts += 1
            status, answer = self.answers.pop(0) if self.answers else (200, {"rejected": []})
            if status == 200 and head.split(b" ")[1].decode() == NOTIFY_PATH:
                self.requests.append(json.loads(body))
                self._arrived.set()
            payload = json.dumps(answer).encode()
            await stream.send_all(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload)


@asynccontextmanager
async def fake_gateway() -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, gateway._handle, 0,
                                                host="127.0.0.1"))
        gateway.port = listeners[0].socket.getsockname()[1]
        yield gateway
        nursery.cancel_scope.cancel()
