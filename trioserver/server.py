"""The composition root: open the stores, build the services, run every task in one nursery."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from functools import partial

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from trioserver import __version__
from trioserver.app import create_app, shield_send
from trioserver.config import Config
from trioserver.services.container import build_services
from trioserver.services.events.signing import load_or_create_signing_key
from trioserver.storage.db import Database
from trioserver.storage.ttl_store import TTLStore

log = logging.getLogger("trioserver")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def hypercorn_config(config: Config) -> HyperConfig:
    hc = HyperConfig()
    host, port = config.listen_host, config.listen_port
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    # Many clients hold a long-poll open at once; the default backlog of 100 drops connections.
    hc.backlog = 2048
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 5.0
    hc.keep_alive_timeout = 75.0
    hc.include_server_header = False
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()
            return


async def main(
    config: Config,
    *,
    on_ready: Callable[[str], None] | None = None,
    stop: trio.Event | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM (or `stop` is set)."""
    stop = stop or trio.Event()
    db = Database.open(
        config.database_path,
        readers=config.database.reader_connections,
        synchronous=config.database.synchronous,
    )
    try:
        ttl = TTLStore()
        signing_key = load_or_create_signing_key(config.data_dir / "signing.key")
        services = build_services(config, db, ttl, signing_key)
        app = shield_send(create_app(services))
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            await nursery.start(ttl.run)
            await nursery.start(services.typing.run)
            await nursery.start(services.presence.run)
            nursery.start_soon(_wait_for_signal, stop)
            async with trio.open_nursery() as http:
                binds: list[str] = await http.start(
                    partial(serve, app, hypercorn_config(config), shutdown_trigger=stop.wait)
                )
                bound = binds[0]
                services.info.base_url = config.base_url(int(bound.rsplit(":", 1)[1]))
                print(
                    f"trioserver {__version__} listening on {bound} "
                    f"(server name {config.server_name}, data in {config.data_dir})",
                    flush=True,
                )
                if on_ready is not None:
                    on_ready(bound)
            # hypercorn returns once `stop` is set and in-flight requests have drained; only
            # then are the writer and the sweeper stopped.
            nursery.cancel_scope.cancel()
    finally:
        db.close()
    log.info("stopped")
