"""The HTTP/1.1 the fake servers of the tests speak (appservice, push gateway): one request
per connection, read whole; a JSON answer with `Connection: close`; served on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


async def read_request(stream: trio.SocketStream) -> Request | None:
    """The request on `stream`, or None if the peer closed before sending it whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path = lines[0].decode().split(" ")[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    return Request(method, path, headers, body)


async def send_json(stream: trio.SocketStream, status: int, payload: bytes) -> None:
    await stream.send_all(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)


@asynccontextmanager
async def serving(handler: Callable[[trio.SocketStream], Awaitable[None]]
                  ) -> AsyncIterator[int]:
    """Serve `handler` on 127.0.0.1 until the block ends; yields the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()
