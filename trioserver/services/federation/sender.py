"""Outbound federation: one queue per destination server, each a task in one nursery.

Events created here are queued to every other server in the room as they commit. A
destination's task sends what is queued in transactions of at most 50 PDUs
(`PUT /_matrix/federation/v1/send/{txnId}`); on failure it retries the same transaction with
exponential backoff (1 s doubling to 10 min), so a slow or dead server only delays itself:
local users never wait for it, and the other destinations carry on.

Queues live in memory (a restart drops what a down server had not received yet; it catches
up from our forward extremities when it next sends us something or backfills).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trioserver.identifiers import split_user_id
from trioserver.services.events.event import Event
from trioserver.services.federation.room_servers import RoomServers

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_QUEUE = 10_000
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 600.0

SendTransaction = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class _Destination:
    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.wakeup = trio.Event()
        self.sent = 0
        self.failures = 0


class FederationSender:
    def __init__(self, server_name: str, servers: RoomServers,
                 send_transaction: SendTransaction) -> None:
        self._server_name = server_name
        self._servers = servers
        self._send = send_transaction
        self._destinations: dict[str, _Destination] = {}
        self._nursery: trio.Nursery | None = None
        self._txn_ids = itertools.count()
        self._boot = int(time.time() * 1000)

    def on_event(self, event: Event, stream_ordering: int) -> None:
        """Appender listener: queue our own events (never relay other servers' events)."""
        if self._nursery is None or not event.sender.endswith(f":{self._server_name}"):
            return
        self._nursery.start_soon(self._fan_out, event)

    async def _fan_out(self, event: Event) -> None:
        servers = set(await self._servers.of(event.room_id))
        if event.type == "m.room.member" and event.state_key is not None:
            # A kick, ban or leave takes the target's server out of the room: it must still
            # hear about it (and an invite's target server is not in the room yet).
            target = split_user_id(event.state_key)
            if target is not None:
                servers.add(target[1])
        for server in sorted(servers):
            if server != self._server_name:
                self.queue(server, dict(event.pdu))

    def queue(self, destination: str, pdu: dict[str, Any]) -> None:
        dest = self._destinations.get(destination)
        if dest is None:
            dest = self._destinations[destination] = _Destination()
            assert self._nursery is not None
            self._nursery.start_soon(self._run_destination, destination, dest)
        if len(dest.pending) >= MAX_QUEUE:
            dest.pending.pop(0)  # a server that never comes back must not exhaust memory
        dest.pending.append(pdu)
        dest.wakeup.set()

    def stats(self) -> dict[str, dict[str, int]]:
        return {d: {"pending": len(q.pending), "sent": q.sent, "failures": q.failures}
                for d, q in self._destinations.items()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def _run_destination(self, destination: str, dest: _Destination) -> None:
        backoff = BACKOFF_START_S
        while True:
            if not dest.pending:
                dest.wakeup = trio.Event()
                await dest.wakeup.wait()
            batch = dest.pending[:MAX_PDUS]
            txn_id = f"{self._boot}.{next(self._txn_ids)}"
            body = {"origin": self._server_name,
                    "origin_server_ts": int(time.time() * 1000), "pdus": batch, "edus": []}
            while True:
                try:
                    await self._send(destination, txn_id, body)
                    break
                except Exception as e:
                    dest.failures += 1
                    log.info("federation send to %s failed (%s); retry in %.0f s",
                             destination, e, backoff)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
            backoff = BACKOFF_START_S
            del dest.pending[:len(batch)]
            dest.sent += len(batch)
