"""Streaming request bodies for media uploads: their own size limit, and back-pressure.

Quart reads a request body into a buffer as fast as the client sends it, whether or not the
handler keeps up, and sizes that buffer's limit from MAX_CONTENT_LENGTH when the request object
is created, before routing. For uploads both are wrong: a 2 MiB image would be refused as a
too-large JSON body, and a 100 MB upload to a slow disk would pile up in memory. So upload
requests get the media limit, and their body reader stops taking data from hypercorn (which then
stops reading the socket) while more than `HIGH_WATER` bytes wait for the handler.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.typing import ASGIReceiveCallable
from quart.wrappers import Request
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest

HIGH_WATER = 2 * 1024 * 1024


class StreamingBody(TrioBody):
    """A body whose reader can wait until the handler has consumed what is buffered."""

    def __init__(self, expected_content_length: int | None,
                 max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._drained = trio.Event()

    async def __anext__(self) -> bytes:
        data = await super().__anext__()
        self._drained.set()
        self._drained = trio.Event()
        return data

    def buffered(self) -> int:
        return len(self._data)

    async def wait_below(self, limit: int) -> None:
        while (len(self._data) > limit and self._must_raise is None
               and not self._complete.is_set()):
            await self._drained.wait()


def media_aware_request(upload_paths: tuple[str, ...], media_limit: int) -> type[TrioRequest]:
    """A request class that gives uploads (POST/PUT under `upload_paths`) a streaming body."""

    class MediaAwareRequest(TrioRequest):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            method, path = args[0], args[2]
            if method in ("POST", "PUT") and path.startswith(upload_paths):
                kwargs["max_content_length"] = media_limit
                self.body_class = StreamingBody
            super().__init__(*args, **kwargs)

    return MediaAwareRequest


class BackPressureHTTPConnection(TrioASGIHTTPConnection):
    """Quart-trio's HTTP connection, pausing body reads while a streaming body is full."""

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        body = request.body
        while True:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
                elif isinstance(body, StreamingBody):
                    await body.wait_below(HIGH_WATER)
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()
