"""The metrics listener's ASGI app: GET /metrics (Prometheus text) and GET /health.

It is deliberately not the client app: nothing here is reachable on the public listeners, and
the listener binds to loopback unless the operator says otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from trioserver.metrics import Metrics

PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def create_metrics_app(metrics: Metrics, healthy: Callable[[], Awaitable[bool]]) -> ASGIFramework:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD"):
            status, ctype, body = 405, b"application/json", (
                b'{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}')
        elif path == "/metrics":
            status, ctype, body = 200, PROMETHEUS_TYPE, (await metrics.render()).encode()
        elif path == "/health":
            ok = await healthy()
            status, ctype, body = (200 if ok else 503), b"text/plain", (
                b"OK" if ok else b"unavailable")
        else:
            status, ctype, body = 404, b"application/json", (
                b'{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}')
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())],
                    "trailers": False})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body,
                    "more_body": False})

    return app
