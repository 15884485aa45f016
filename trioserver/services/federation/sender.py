"""Outbound federation: one queue per destination server, each a task in one nursery.

Events created here are queued to every other server in the room as they commit. A
destination's task sends what is queued in transactions of at most 50 PDUs
(`PUT /_matrix/federation/v1/send/{txnId}`); on failure it retries the same transaction with
exponential backoff (1 s doubling to 10 min), so a slow or dead server only delays itself:
local users never wait for it, and the other destinations carry on.

Each destination's last acknowledged position is stored (federation_destinations): after a
restart the sender queues again, from there, our events in the rooms that server is in. A
destination away so long that its queue overflows (MAX_QUEUE) loses the oldest PDUs from
memory only: once it is back and the queue drained, they are read again from the database and
sent, so nothing queued is lost to a restart or a long outage.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from trioserver.identifiers import split_user_id
from trioserver.services.events.event import Event
from trioserver.services.federation.room_servers import RoomServers
from trioserver.storage.db import Database
from trioserver.storage.repositories import federation_out as out_repo

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
MAX_EDU_QUEUE = 1_000
MAX_QUEUE = 10_000
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 600.0

SendTransaction = Callable[[str, str, dict[str, Any]], Awaitable[Any]]
# (destination, the EDUs of a transaction it acknowledged), for EDUs persisted elsewhere.
EduAckListener = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
# (destination) whose EDU queue overflowed and has now drained: EDUs persisted elsewhere
# (to-device) are queued again from where they are kept, a batch at a time; True if more wait
# (the listener is called again once that batch drained).
EduDropListener = Callable[[str], Awaitable[bool]]


CATCH_UP_LIMIT = 1000


class _Destination:
    def __init__(self) -> None:
        self.pending: list[tuple[int, dict[str, Any]]] = []  # (stream ordering, PDU)
        self.edus: list[dict[str, Any]] = []  # {"edu_type", "content"}, sent in order
        self.wakeup = trio.Event()
        self.sent = 0
        self.failures = 0
        self.backing_off = False
        self.edus_dropped = False  # the EDU queue overflowed since it last drained
        # Stream orderings (lowest, highest) of PDUs dropped from a full queue, to send again
        # from the database once the queue has drained.
        self.dropped: tuple[int, int] | None = None


class FederationSender:
    def __init__(self, server_name: str, servers: RoomServers,
                 send_transaction: SendTransaction, db: Database | None = None) -> None:
        self._db = db
        self._server_name = server_name
        self._servers = servers
        self._send = send_transaction
        self._destinations: dict[str, _Destination] = {}
        self._nursery: trio.Nursery | None = None
        self._txn_ids = itertools.count()
        self._boot = int(time.time() * 1000)
        self.edu_ack_listeners: list[EduAckListener] = []
        self.edu_drop_listeners: list[EduDropListener] = []

    def on_event(self, event: Event, stream_ordering: int) -> None:
        """Appender listener: queue our own events (never relay other servers' events)."""
        if self._nursery is None or not event.sender.endswith(f":{self._server_name}"):
            return
        self._nursery.start_soon(self._fan_out, event, stream_ordering)

    async def _fan_out(self, event: Event, stream_ordering: int) -> None:
        servers = set(await self._servers.of(event.room_id))
        if event.type == "m.room.member" and event.state_key is not None:
            # A kick, ban or leave takes the target's server out of the room: it must still
            # hear about it (and an invite's target server is not in the room yet).
            target = split_user_id(event.state_key)
            if target is not None:
                servers.add(target[1])
        for server in sorted(servers):
            if server != self._server_name:
                if server not in self._destinations and self._db is not None:
                    # Remember the destination before its first send, for catch-up.
                    await self._db.write(partial(out_repo.mark_acked, destination=server,
                                                 stream_ordering=stream_ordering - 1))
                self.queue(server, dict(event.pdu), stream_ordering)

    def queue(self, destination: str, pdu: dict[str, Any], stream_ordering: int = 0) -> None:
        dest = self._destinations.get(destination)
        if dest is None:
            dest = self._destinations[destination] = _Destination()
            assert self._nursery is not None
            self._nursery.start_soon(self._run_destination, destination, dest)
        if len(dest.pending) >= MAX_QUEUE:
            # The oldest goes for now; it is read again from the database once the destination
            # is back and its queue drained (`_requeue_dropped`).
            ordering, _ = dest.pending.pop(0)
            if ordering > 0:
                low, high = dest.dropped or (ordering, ordering)
                dest.dropped = (min(low, ordering), max(high, ordering))
        dest.pending.append((stream_ordering, pdu))
        dest.wakeup.set()

    def queue_edu(self, destination: str, edu_type: str, content: dict[str, Any]) -> None:
        """Send an EDU (typing, receipt, presence, device list update, to-device) with the
        destination's next transaction. EDUs are not kept across restarts; the streams they
        belong to (to-device, device lists) have their own catch-up: `edu_ack_listeners`
        hear which EDUs a destination acknowledged, and `edu_drop_listeners` when the queue,
        after overflowing (MAX_EDU_QUEUE, oldest dropped), has drained."""
        if self._nursery is None or destination == self._server_name:
            return
        dest = self._destinations.get(destination)
        if dest is None:
            dest = self._destinations[destination] = _Destination()
            self._nursery.start_soon(self._run_destination, destination, dest)
        if len(dest.edus) >= MAX_EDU_QUEUE:
            dest.edus.pop(0)
            dest.edus_dropped = True
        dest.edus.append({"edu_type": edu_type, "content": content})
        dest.wakeup.set()

    def stats(self) -> dict[str, dict[str, int]]:
        return {d: {"pending": len(q.pending), "edus": len(q.edus), "sent": q.sent,
                    "failures": q.failures, "backing_off": int(q.backing_off)}
                for d, q in self._destinations.items()}

    def totals(self) -> dict[str, int]:
        """For /metrics: queued PDUs and EDUs, and destinations currently backing off."""
        queues = self._destinations.values()
        return {"pending_pdus": sum(len(q.pending) for q in queues),
                "pending_edus": sum(len(q.edus) for q in queues),
                "backing_off": sum(1 for q in queues if q.backing_off),
                "destinations": len(self._destinations)}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._catch_up()
            await trio.sleep_forever()

    async def _catch_up(self) -> None:
        """Queue again what each known destination had not acknowledged before we stopped."""
        if self._db is None:
            return
        db = self._db
        for destination, last in await db.read(out_repo.destinations):
            pending = await db.read(partial(
                out_repo.unacked_events, destination=destination, after=last,
                our_server=self._server_name, limit=CATCH_UP_LIMIT))
            for stored in pending:
                self.queue(destination, dict(stored.pdu), stored.stream_ordering)

    async def _requeue_dropped(self, destination: str, dest: _Destination) -> None:
        """Queue again, oldest first and CATCH_UP_LIMIT at a time, the PDUs dropped from the
        destination's full queue while it was away."""
        assert dest.dropped is not None
        low, high = dest.dropped
        dest.dropped = None
        if self._db is None:
            return
        rows = await self._db.read(partial(
            out_repo.unacked_events, destination=destination, after=low - 1,
            our_server=self._server_name, limit=CATCH_UP_LIMIT))
        batch = [r for r in rows if r.stream_ordering <= high]
        for stored in batch:
            self.queue(destination, dict(stored.pdu), stored.stream_ordering)
        if len(rows) == CATCH_UP_LIMIT and batch and batch[-1].stream_ordering < high:
            dest.dropped = (batch[-1].stream_ordering + 1, high)

    async def _run_destination(self, destination: str, dest: _Destination) -> None:
        backoff = BACKOFF_START_S
        while True:
            if not dest.pending and not dest.edus:
                dest.wakeup = trio.Event()
                await dest.wakeup.wait()
            batch = dest.pending[:MAX_PDUS]
            edus = dest.edus[:MAX_EDUS]
            txn_id = f"{self._boot}.{next(self._txn_ids)}"
            body = {"origin": self._server_name, "origin_server_ts": int(time.time() * 1000),
                    "pdus": [pdu for _, pdu in batch], "edus": edus}
            while True:
                try:
                    await self._send(destination, txn_id, body)
                    break
                except Exception as e:  # a dead or garbage-answering server: back off
                    dest.failures += 1
                    dest.backing_off = True
                    log.info("federation send to %s failed (%s); retry in %.0f s",
                             destination, e, backoff)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
            backoff = BACKOFF_START_S
            dest.backing_off = False
            del dest.pending[:len(batch)]
            del dest.edus[:len(edus)]
            for listener in self.edu_ack_listeners:
                await listener(destination, edus)
            if dest.dropped is not None and not dest.pending:
                await self._requeue_dropped(destination, dest)
            if dest.edus_dropped and not dest.edus:
                # The destination is back and its queue drained: what overflowed while it was
                # away and is kept elsewhere (to-device messages) goes out now, in order.
                dest.edus_dropped = False
                for on_drop in self.edu_drop_listeners:
                    if await on_drop(destination):
                        dest.edus_dropped = True
            dest.sent += len(batch)
            acked = max((ordering for ordering, _ in batch), default=0)
            if self._db is not None and acked > 0:
                await self._db.write(partial(out_repo.mark_acked, destination=destination,
                                             stream_ordering=acked))
