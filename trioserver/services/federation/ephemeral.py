"""Typing, read receipts and presence across servers (Server-Server API EDUs).

Out: the typing, receipt and presence services call listeners after each change; for our own
users, a listener only puts a job on a bounded queue (never awaiting), and `run` turns each job
into `m.typing`, `m.receipt` or `m.presence` EDUs for the servers concerned: the other servers
in the room (typing, receipts) or sharing a room with the user (presence). When the queue is
full (nothing drains it, or a burst), the newest job is dropped: these are ephemeral.

In: an EDU counts only for users of the server that sent it, and only where that user is joined
here (the spec's "verify that the user is in the room, and is a user belonging to the sending
server"); anything else in it is ignored, the rest of the EDU still applies.

Timeouts, as Synapse: another server's typer expires after `REMOTE_TYPING_TIMEOUT_S` without
news, and while one of our users keeps renewing their typing, it is sent again at most every
`TYPING_PING_INTERVAL_S` (below that timeout), so a renewal is not one EDU per keystroke.
Servers count another server's user offline after 30 minutes without news (Synapse's
FEDERATION_TIMEOUT, and ours), so the presence of our users who are not offline is sent again
when `PRESENCE_PING_INTERVAL_S` passed since it was last sent, changed or not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from trioserver.errors import MatrixError
from trioserver.identifiers import split_user_id
from trioserver.services.clock import now_ms
from trioserver.services.federation.room_servers import RoomServers
from trioserver.services.presence import Presence, UserPresence, presence_content
from trioserver.services.receipts.service import READ, Receipts
from trioserver.services.typing_notifications import Typing
from trioserver.storage.db import Database
from trioserver.storage.repositories import presence as presence_repo

log = logging.getLogger(__name__)

REMOTE_TYPING_TIMEOUT_S = 60.0
TYPING_PING_INTERVAL_S = 40.0
MAX_JOBS = 1_000
PRESENCE_PING_INTERVAL_S = 25 * 60.0

QueueEdu = Callable[[str, str, dict[str, Any]], None]
OriginAllowed = Callable[[str, str], Awaitable[bool]]
Job = Callable[[], Awaitable[None]]


def _server_of(user_id: Any) -> str | None:
    parts = split_user_id(user_id) if isinstance(user_id, str) else None
    return parts[1] if parts is not None else None


class EphemeralFederation:
    def __init__(self, server_name: str, db: Database, servers: RoomServers,
                 queue_edu: QueueEdu, *, typing: Typing, receipts: Receipts,
                 presence: Presence, origin_allowed: OriginAllowed,
                 clock: Callable[[], float] = trio.current_time,
                 presence_ping_interval_s: float = PRESENCE_PING_INTERVAL_S) -> None:
        self._server_name = server_name
        self._db = db
        self._servers = servers
        self._queue_edu = queue_edu
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._origin_allowed = origin_allowed
        self._clock = clock
        self._ping_interval = presence_ping_interval_s
        self._presence_sent: dict[str, float] = {}  # our user -> when last sent (clock)
        self._jobs_in, self._jobs = trio.open_memory_channel[Job](MAX_JOBS)
        self._typing_sent: dict[tuple[str, str], float] = {}  # (room, user) -> last "typing"
        typing.add_listener(self.typing_changed)
        receipts.add_listener(self.receipt_stored)
        presence.add_listener(self.presence_changed)

    def _ours(self, user_id: str) -> bool:
        return _server_of(user_id) == self._server_name

    def _later(self, job: Job) -> None:
        try:
            self._jobs_in.send_nowait(job)
        except trio.WouldBlock:
            log.info("ephemeral federation queue full: an EDU is dropped")

    # -- out ------------------------------------------------------------------------------

    def typing_changed(self, room_id: str, user_id: str, typing: bool) -> None:
        if not self._ours(user_id):
            return
        key = (room_id, user_id)
        if typing:
            now = self._clock()
            last = self._typing_sent.get(key)
            if last is not None and now - last < TYPING_PING_INTERVAL_S:
                return  # still typing, and the other servers' timeout is not near
            self._typing_sent[key] = now
        elif self._typing_sent.pop(key, None) is None:
            return
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        self._later(partial(self._to_room, room_id, "m.typing", content))

    def receipt_stored(self, room_id: str, user_id: str, receipt_type: str, thread_id: str,
                       event_id: str, ts: int) -> None:
        if receipt_type != READ or not self._ours(user_id):
            return  # private receipts stay here; others' receipts are their server's to send
        data: dict[str, Any] = {"ts": ts}
        if thread_id:
            data["thread_id"] = thread_id
        content = {room_id: {READ: {user_id: {"event_ids": [event_id], "data": data}}}}
        self._later(partial(self._to_room, room_id, "m.receipt", content))

    def presence_changed(self, user_id: str, p: UserPresence) -> None:
        if self._ours(user_id):
            self._presence_sent[user_id] = self._clock()
            self._later(partial(self._presence_out, user_id, p))

    async def _to_room(self, room_id: str, edu_type: str, content: dict[str, Any]) -> None:
        for server in sorted(await self._servers.of(room_id)):
            if server != self._server_name:
                self._queue_edu(server, edu_type, content)

    async def _presence_out(self, user_id: str, p: UserPresence) -> None:
        audience = await self._db.read(lambda c: presence_repo.audience(c, user_id))
        servers = {s for u in audience if (s := _server_of(u)) is not None}
        servers.discard(self._server_name)
        if not servers:
            return
        # Mid-queue, last_active_ago is counted when sent, not when the change happened.
        update = {"user_id": user_id, **presence_content(
            p.state, p.status_msg, p.last_active_ts, p.currently_active,
            now_ms())}
        for server in sorted(servers):
            self._queue_edu(server, "m.presence", {"push": [update]})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Turn queued changes into EDUs, one at a time (so a stop follows its start)."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._presence_keepalive)
            async for job in self._jobs:
                try:
                    await job()
                except Exception:
                    log.exception("ephemeral EDU not sent")
            nursery.cancel_scope.cancel()

    async def _presence_keepalive(self) -> None:
        """Send again the presence of our users who are not offline once
        PRESENCE_PING_INTERVAL_S passed since it was last sent."""
        while True:
            await trio.sleep(self._ping_interval / 5)
            self.ping_presence()

    def ping_presence(self) -> int:
        """One round of the keep-alive; returns how many users' presence was queued."""
        now = self._clock()
        active = [(u, p) for u, p in self._presence.not_offline() if self._ours(u)]
        for gone in self._presence_sent.keys() - {u for u, _ in active}:
            del self._presence_sent[gone]
        due = [(u, p) for u, p in active
               if now - self._presence_sent.get(u, float("-inf")) >= self._ping_interval]
        for user_id, p in due:
            self._presence_sent[user_id] = now
            self._later(partial(self._presence_out, user_id, p))
        return len(due)

    # -- in -------------------------------------------------------------------------------

    def register(self, on_edu: Callable[[str, Callable[[str, dict[str, Any]],
                                                        Awaitable[None]]], None]) -> None:
        on_edu("m.typing", self.typing_edu)
        on_edu("m.receipt", self.receipt_edu)
        on_edu("m.presence", self.presence_edu)

    async def typing_edu(self, origin: str, content: dict[str, Any]) -> None:
        room_id, user_id, typing = (content.get("room_id"), content.get("user_id"),
                                    content.get("typing"))
        if not isinstance(room_id, str) or not isinstance(typing, bool) or \
                _server_of(user_id) != origin or not await self._origin_allowed(origin, room_id):
            log.info("m.typing from %s ignored: %s in %s", origin, user_id, room_id)
            return
        assert isinstance(user_id, str)
        if not await self._typing.set_remote(room_id, user_id, typing,
                                             REMOTE_TYPING_TIMEOUT_S):
            log.info("m.typing from %s ignored: %s not joined to %s", origin, user_id, room_id)

    async def receipt_edu(self, origin: str, content: dict[str, Any]) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict) or not isinstance(by_type.get(READ), dict) or \
                    not await self._origin_allowed(origin, room_id):
                continue
            for user_id, receipt in by_type[READ].items():
                if _server_of(user_id) != origin or not isinstance(receipt, dict):
                    log.info("m.receipt from %s ignored for %s", origin, user_id)
                    continue
                event_ids, data = receipt.get("event_ids"), receipt.get("data")
                data = data if isinstance(data, dict) else {}
                ts = data.get("ts")
                if not isinstance(event_ids, list) or not event_ids:
                    continue
                try:
                    await self._receipts.put_remote(
                        user_id, room_id, event_ids[-1], data.get("thread_id"),
                        ts if isinstance(ts, int) and not isinstance(ts, bool) else now_ms())
                except MatrixError as e:  # not joined, unknown event: this receipt only
                    log.info("m.receipt from %s for %s ignored: %s", origin, user_id,
                             e.message)

    async def presence_edu(self, origin: str, content: dict[str, Any]) -> None:
        push = content.get("push")
        for update in push if isinstance(push, list) else []:
            if not isinstance(update, dict) or _server_of(update.get("user_id")) != origin:
                log.info("m.presence from %s ignored for a user of another server", origin)
                continue
            ago, status = update.get("last_active_ago"), update.get("status_msg")
            try:
                await self._presence.set_remote(
                    update["user_id"], str(update.get("presence")),
                    status if isinstance(status, str) else None,
                    ago if isinstance(ago, int) and not isinstance(ago, bool) else None,
                    update.get("currently_active") is True)
            except MatrixError as e:
                log.info("m.presence from %s refused: %s", origin, e.message)
