"""Serve ASGI apps on several listeners at once, with one graceful shutdown.

hypercorn's own `serve()` binds its sockets itself and only knows Python's `ssl` module. This loop
uses hypercorn's connection handling (`TCPServer`, one per connection) on listeners we make: the
plain client listener, the TLS front (`tls_stream.TLSListener`) and the metrics listener, each
with its own app.

Shutdown, once `stop` is set: the listening sockets close (new connections are refused), idle
keep-alive connections close, requests in flight get `grace_s` seconds to finish, then whatever
is left is cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HyperConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState, LifespanState

log = logging.getLogger("trioserver.http")

BACKLOG = 2048


class ListenError(Exception):
    """A listener could not be bound; says which one and where."""

    def __init__(self, name: str, address: str, error: OSError) -> None:
        super().__init__(f"cannot listen on {address} ({name}): {error.strerror or error}")
        self.error = error


@dataclass
class Endpoint:
    """One app served on some listeners. `urls` is filled in once they are bound."""

    name: str
    app: ASGIFramework
    listeners: Sequence[trio.abc.Listener[Any]]
    scheme: str = "http"
    urls: list[str] = field(default_factory=list)


async def open_tcp_listeners(name: str, host: str, port: int) -> list[trio.SocketListener]:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return await trio.open_tcp_listeners(port, host=host or None, backlog=BACKLOG)
    except OSError as e:
        raise ListenError(name, address, e) from e


def bound_address(listener: trio.abc.Listener[Any]) -> tuple[str, int]:
    inner = getattr(listener, "transport_listener", listener)
    assert isinstance(inner, trio.SocketListener)
    sockname = inner.socket.getsockname()
    return str(sockname[0]), int(sockname[1])


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(
    endpoints: Sequence[Endpoint],
    config: HyperConfig,
    *,
    stop: trio.Event,
    grace_s: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `stop` is set, then shut down gracefully (see the module docstring)."""
    for ep in endpoints:
        ep.urls = [_url(ep.scheme, *bound_address(lis)) for lis in ep.listeners]
    context = WorkerContext(None)
    state: LifespanState = {}
    # The first endpoint is the application proper; it gets the ASGI lifespan events.
    lifespan = Lifespan(ASGIWrapper(endpoints[0].app), config, state)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for ep in endpoints:
                    handler = partial(TCPServer, ASGIWrapper(ep.app), config, context,
                                      ConnectionState(state.copy()))
                    accepting.start_soon(partial(trio.serve_listeners, handler, list(ep.listeners),
                                                 handler_nursery=connections))
                task_status.started()
                await stop.wait()
                accepting.cancel_scope.cancel()
            for ep in endpoints:
                for listener in ep.listeners:
                    await listener.aclose()
            log.info("listeners closed; waiting up to %.0f s for requests in flight", grace_s)
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + grace_s
        if connections.cancel_scope.cancelled_caught:
            log.warning("requests still running after %.0f s were cancelled", grace_s)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
