"""ASGI wrapper: one access-log line and the request metrics for every HTTP request.

The line holds the client address, method, path without its query string (where tokens could be
passed), status, latency and the authenticated user. Bodies and headers are never logged.
Status 499 means the client went away before a response started (as nginx logs it).
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from trioserver.metrics import Metrics

access_log = logging.getLogger("trioserver.access")

# Keys the app writes into the ASGI scope for this wrapper to read.
ROUTE_KEY = "trioserver.route"
USER_KEY = "trioserver.user"
CLIENT_GONE = 499


def annotate(scope: Any, key: str, value: str) -> None:
    """Leave a note in the request's ASGI scope (a plain dict at run time)."""
    cast(dict[str, Any], scope)[key] = value


def observe(app: ASGIFramework, metrics: Metrics, *, log_requests: bool) -> ASGIFramework:
    async def wrapped(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = CLIENT_GONE

        async def send_and_note(message: ASGISendEvent) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - start
            notes = cast(dict[str, Any], scope)
            route = str(notes.get(ROUTE_KEY, "unmatched"))
            metrics.observe_request(route, scope["method"], status, elapsed)
            if log_requests:
                client = scope.get("client")
                access_log.info(
                    '%s "%s %s" %d %.1fms %s',
                    client[0] if client else "-", scope["method"], scope["path"], status,
                    elapsed * 1000, notes.get(USER_KEY, "-"),
                )

    return wrapped
