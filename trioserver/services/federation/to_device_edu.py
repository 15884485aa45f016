"""Send-to-device messages between servers: EDU `m.direct_to_device` (Server-Server API
"Send-to-device messaging": ordered, exactly once, per destination device).

Out: a sendToDevice request for other servers' users writes one EDU per destination server,
with a fresh `message_id`, to an outbox table in the same transaction that claims the
client's transaction ID (`stage`). One task (`run`) hands the outbox to the federation
sender in id order, so a destination receives its EDUs in the order they were sent; a row is
deleted only when the destination acknowledged the transaction that carried it (`on_sent`,
a sender listener). At start-up the task queues again whatever the outbox still holds.

In: messages for our users are delivered to their inbox when the sender belongs to the
origin server. The (origin, message_id) is recorded in the same transaction as the delivery,
and kept SEEN_RETENTION_MS, so a transaction retried (even after our restart) is delivered
once.

The sender keeps at most MAX_EDU_QUEUE EDUs in memory per destination; one dropped there (a
destination away for long) stays in the outbox, and once the destination is back and its
queue has drained, `requeue` hands it the destination's outbox again, oldest first, a batch
at a time (the receiver drops any message_id it already had).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import apsw
import trio

from trioserver.concurrency import Drainer
from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import split_user_id
from trioserver.services.clock import now_ms
from trioserver.services.to_device import Messages, parse_messages
from trioserver.storage.db import Database
from trioserver.storage.repositories import federation_to_device as repo

log = logging.getLogger(__name__)

EDU_TYPE = "m.direct_to_device"
SEEN_RETENTION_MS = 7 * 24 * 3600 * 1000
OUTBOX_BATCH = 500

Claim = Callable[[apsw.Connection], bool]


class QueueEdu(Protocol):
    def __call__(self, destination: str, edu_type: str, content: dict[str, Any]) -> None: ...


class Deliver(Protocol):
    def __call__(self, sender: str, event_type: str, messages: Messages,
                 claim: Claim) -> Awaitable[None]: ...


class FederatedToDevice:
    def __init__(self, server_name: str, db: Database, deliver: Deliver, queue_edu: QueueEdu,
                 *, clock: Callable[[], int] = now_ms) -> None:
        """`deliver(sender, type, messages, claim)` queues messages for our users unless
        `claim` (run in the same transaction) says they were seen (ToDevice.deliver_remote)."""
        self._server_name = server_name
        self._db = db
        self._deliver = deliver
        self._queue_edu = queue_edu
        self._clock = clock
        self._queued_upto = 0  # outbox ids up to here were handed to the sender
        self._loop = Drainer(self.queue_outbox, "cannot queue the to-device outbox")

    def stage(self, conn: apsw.Connection, sender: str, event_type: str,
              messages: Messages) -> bool:
        """Inside ToDevice.send's transaction: write one EDU per other server to the outbox.
        True if any was written (then call `wake` once it committed)."""
        by_server: dict[str, Messages] = {}
        for user_id, devices in messages.items():
            parts = split_user_id(user_id)
            if parts is not None and parts[1] != self._server_name:
                by_server.setdefault(parts[1], {})[user_id] = devices
        message_id = secrets.token_urlsafe(16)
        for server, users in sorted(by_server.items()):
            repo.add_outgoing(conn, server, message_id, {
                "sender": sender, "type": event_type, "message_id": message_id,
                "messages": users})
        return bool(by_server)

    def wake(self) -> None:
        """New rows were committed to the outbox."""
        self._loop.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hand the outbox to the sender in id order; start after the sender runs."""
        await self._loop.run(task_status=task_status)

    async def queue_outbox(self) -> None:
        """Queue the outbox rows not handed to the sender yet, oldest first."""
        while True:
            rows = await self._db.read(partial(repo.outgoing_after, after=self._queued_upto,
                                               limit=OUTBOX_BATCH))
            for row in rows:
                self._queue_edu(row.destination, EDU_TYPE, row.content)
                self._queued_upto = row.id
            if len(rows) < OUTBOX_BATCH:
                return

    async def requeue(self, destination: str) -> bool:
        """Sender drop listener: queue again, oldest first, up to OUTBOX_BATCH of the EDUs the
        destination has not acknowledged (less than the sender's queue holds, so none is
        dropped again); True if more are waiting."""
        rows = await self._db.read(partial(repo.outgoing_to, destination=destination,
                                           after=0, limit=OUTBOX_BATCH + 1))
        for row in rows[:OUTBOX_BATCH]:
            self._queue_edu(row.destination, EDU_TYPE, row.content)
        return len(rows) > OUTBOX_BATCH

    async def on_sent(self, destination: str, edus: list[dict[str, Any]]) -> None:
        """Sender listener: `destination` acknowledged a transaction carrying `edus`."""
        message_ids = [e["content"]["message_id"] for e in edus if e["edu_type"] == EDU_TYPE]
        if message_ids:
            await self._db.write(partial(repo.delete_sent, destination=destination,
                                         message_ids=message_ids))

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        """EDU handler for m.direct_to_device."""
        sender, event_type = content.get("sender"), content.get("type")
        message_id = content.get("message_id")
        if not isinstance(sender, str) or not isinstance(event_type, str) \
                or not isinstance(message_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "sender, type and message_id are required")
        parts = split_user_id(sender)
        if parts is None or parts[1] != origin:
            raise MatrixError(403, Codes.FORBIDDEN, "sender is not on the origin server")
        messages = parse_messages(content.get("messages"))
        now = self._clock()
        await self._deliver(sender, event_type, messages, partial(
            repo.claim_received, origin=origin, message_id=message_id, now_ms=now,
            prune_before_ms=now - SEEN_RETENTION_MS))
