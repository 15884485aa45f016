"""The composition root: open the stores, build the services, run every task in one nursery."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.typing import ASGIFramework

from trioserver import __version__, systemd_notify
from trioserver.api.forwarded import trust_proxies
from trioserver.api.metrics_app import create_metrics_app
from trioserver.api.observe import observe
from trioserver.app import create_app, shield_send
from trioserver.config import Config, split_listen
from trioserver.metrics import Metrics
from trioserver.net.serve import Endpoint, open_tcp_listeners, serve
from trioserver.net.tls_reload import reload_on_sighup
from trioserver.services.container import Services, build_services
from trioserver.services.events.signing import load_or_create_signing_key
from trioserver.services.federation.sender import FederationSender
from trioserver.storage.db import Database
from trioserver.storage.ttl_store import TTLStore

log = logging.getLogger("trioserver")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def hypercorn_config() -> HyperConfig:
    hc = HyperConfig()
    hc.accesslog = None  # trioserver.access logs requests (api/observe.py)
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 75.0
    hc.include_server_header = False
    hc.h11_max_incomplete_size = 64 * 1024
    hc.ssl_handshake_timeout = 10.0
    return hc


async def _wait_for_signal(stop: trio.Event, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    # The receiver stays open until the server has stopped: a second signal (a supervisor
    # that signals every process, an impatient ^C) must not kill a graceful shutdown half-way.
    # Two later windows matter too (the one-file binary's bootloader forwards systemd's SIGTERM
    # a moment after the server got its own): trio re-raises a signal still queued when the
    # receiver closes through the handler that was there before it, and Python resets its
    # handlers to the default while the interpreter exits. So: a handler that ignores signals
    # once shutdown has begun, and the signals ignored outright once the receiver is closed.
    def after_receiver(signum: int, _frame: object) -> None:
        if stop.is_set():
            return
        signal.signal(signum, signal.SIG_DFL)  # before the receiver is open: the default
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, after_receiver)
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            # Started (so SIGTERM is ours) before anything is announced as listening.
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if stop.is_set():
                    log.info("received %s again; already shutting down", name)
                else:
                    log.info("received %s, shutting down", name)
                    stop.set()
    finally:
        if stop.is_set():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)


async def _federation_total(sender: FederationSender, key: str) -> float:
    return sender.totals()[key]


def _register_gauges(metrics: Metrics, services: Services) -> None:
    started = time.time()

    async def value(read: Callable[[], float]) -> float:
        return read()

    def rss_bytes() -> float:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    metrics.gauge("trioserver_long_polls_waiting", "Long-polls (/sync) waiting for news.",
                  partial(value, services.notifier.waiting_tasks))
    metrics.gauge("trioserver_db_write_queue", "Writes queued for the database writer.",
                  partial(value, lambda: services.db.queued_writes))
    metrics.gauge("trioserver_db_bytes", "Size of the database and its WAL on disk.",
                  partial(value, services.db.file_bytes))
    metrics.gauge("trioserver_media_bytes", "Bytes of media and thumbnails stored.",
                  services.media.stored_bytes)
    metrics.gauge("trioserver_process_resident_memory_bytes", "Resident memory (RSS).",
                  partial(value, rss_bytes))
    metrics.gauge("trioserver_process_start_time_seconds", "Start time, Unix seconds.",
                  partial(value, lambda: started))
    sender = services.federation_sender
    for key, help_text in (("pending_pdus", "Our events queued for other servers."),
                           ("pending_edus", "EDUs queued for other servers."),
                           ("backing_off", "Destination servers in backoff after failures."),
                           ("destinations", "Servers we have sent to since start-up.")):
        metrics.gauge(f"trioserver_federation_{key}", help_text,
                      partial(_federation_total, sender, key))


async def _endpoints(config: Config, services: Services, metrics: Metrics) -> list[Endpoint]:
    """Build the apps and bind every listener (before anything is announced as ready)."""
    app: ASGIFramework = shield_send(create_app(services))
    app = trust_proxies(observe(app, metrics, log_requests=config.access_log),
                        config.trusted_proxies)
    endpoints = [Endpoint("client", app, await open_tcp_listeners("client", *split_listen(
        config.listen)))]
    if config.tls.enabled:
        # Imported here: pyOpenSSL and cryptography cost start-up time only when used.
        from trioserver.net.tls_context import build_server_context
        from trioserver.net.tls_stream import TLSListener

        # Checked before binding: a bad certificate stops start-up with a clear message.
        context = build_server_context(Path(config.tls.cert), Path(config.tls.key),
                                       pq_only=config.tls.pq_only, http2=config.tls.http2)
        sockets = await open_tcp_listeners("tls", *split_listen(config.tls.listen))
        tls = [TLSListener(s, context, metrics.observe_tls_handshake) for s in sockets]
        endpoints.append(Endpoint("tls", app, tls, scheme="https"))
    if config.federation.enabled and config.federation.listen:
        # Plain HTTP for federation behind a TLS terminator (the TLS front serves it too).
        sockets = await open_tcp_listeners("federation", *split_listen(config.federation.listen))
        endpoints.append(Endpoint("federation", app, sockets))
    if config.metrics.listen:
        sockets = await open_tcp_listeners("metrics", *split_listen(config.metrics.listen))
        endpoints.append(Endpoint("metrics", create_metrics_app(metrics, services.db.healthy),
                                  sockets))
    return endpoints


def _tls_reload(config: Config, endpoints: list[Endpoint]
                ) -> tuple[list[Any], Callable[[], Any] | None]:
    """The TLS listeners and how to build their context again (for SIGHUP)."""
    listeners = [x for ep in endpoints if ep.name == "tls" for x in ep.listeners]
    if not listeners:
        return [], None
    from trioserver.net.tls_context import build_server_context

    return listeners, partial(build_server_context, Path(config.tls.cert),
                              Path(config.tls.key), pq_only=config.tls.pq_only,
                              http2=config.tls.http2)


def _announce(config: Config, endpoints: list[Endpoint]) -> None:
    client, others = endpoints[0], endpoints[1:]
    print(f"trioserver {__version__} listening on {client.urls[0]} "
          f"(server name {config.server_name}, data in {config.data_dir})", flush=True)
    for ep in others:
        suffix = "/metrics" if ep.name == "metrics" else ""
        print(f"{ep.name} listening on {', '.join(u + suffix for u in ep.urls)}", flush=True)
    systemd_notify.notify("READY=1", f"STATUS=serving {config.server_name} on {client.urls[0]}")


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
        metrics = Metrics()
        db.on_commit = metrics.observe_commit
        _register_gauges(metrics, services)
        endpoints = await _endpoints(config, services, metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            for user_id in await services.accounts.ensure_appservice_senders():
                log.info("created the application service sender %s", user_id)
            await nursery.start(ttl.run)
            await nursery.start(services.typing.run)
            await nursery.start(services.presence.run)
            await nursery.start(services.admin_watch.run)
            await nursery.start(services.federation_sender.run)
            await nursery.start(services.federated_to_device.run)
            await nursery.start(services.federation_ephemeral.run)
            await nursery.start(services.search.run)
            await nursery.start(services.push_delivery.run)
            await nursery.start(services.appservice_delivery.run)
            await nursery.start(services.room_parter.run)
            await nursery.start(services.push_retention.run)
            await nursery.start(services.device_list_sender.run)
            await nursery.start(systemd_notify.run_watchdog)
            await nursery.start(_wait_for_signal, stop)
            await nursery.start(reload_on_sighup, *_tls_reload(config, endpoints))
            async with trio.open_nursery() as http:
                await http.start(partial(serve, endpoints, hypercorn_config(), stop=stop,
                                         grace_s=config.shutdown_grace_s))
                client_url = endpoints[0].urls[0]
                services.info.base_url = config.base_url(int(client_url.rsplit(":", 1)[1]))
                _announce(config, endpoints)
                if on_ready is not None:
                    on_ready(client_url.split("://", 1)[1])
                await stop.wait()
                systemd_notify.notify("STOPPING=1")
                # Waiting /sync long-polls answer now instead of holding shutdown up.
                services.notifier.close()
            # serve() returns once in-flight requests have finished (or the grace period
            # ended); only then are the writer and the other tasks stopped, so every write a
            # request started is committed.
            nursery.cancel_scope.cancel()
    finally:
        db.close()
    log.info("stopped")
