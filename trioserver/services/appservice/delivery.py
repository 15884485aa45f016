"""Pushing events to application services (spec "Application Service API": Pushing events).

One task per registration with a `url`. It reads the events table after the appservice's stored
position, in stream order, keeps the events that interest it, and sends up to 100 of them as one
transaction: PUT /_matrix/app/v1/transactions/{txnId} with `Authorization: Bearer <hs_token>`.
The transaction (its ID, body and the position it completes) is written before it is first sent,
so a failure or a restart re-sends the same txn ID and body; the position moves on only after a
200. Events are thus delivered in order and, as the appservice sees txn IDs, exactly once.

The append path only sets a wake-up flag (never blocking event persistence); failures back off
exponentially from 1 s to 5 min.

Before a transaction is recorded, local users in the appservice's user namespace that the events
name (sender, member target) but that do not exist yet are asked about
(GET /_matrix/app/v1/users/{userId}), so a bridge can create its ghost before it sees the event,
as Synapse does.

Ephemeral data (spec v1.13 "Pushing ephemeral data", for registrations with
`receive_ephemeral`) goes out in the next transaction's `ephemeral` list. Read receipts are read
from the database after the appservice's receipts position, which moves with the transaction
that carried them, like events (receipts.py): those stored while the appservice is down reach it
once, across restarts. Typing and presence changes are queued in memory per appservice (bounded;
typing is ephemeral and presence is current state, so a restart may drop what was not yet sent):
the room's current typers, the newest presence of each user the appservice shares a room with.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from urllib.parse import quote

import apsw
import httpx
import trio

from trioserver.services.appservice import e2ee_extensions as ext
from trioserver.services.appservice import receipts as as_receipts
from trioserver.services.appservice.queries import ask_user
from trioserver.services.appservice.registration import Registration
from trioserver.services.appservice.registry import AppServices
from trioserver.services.clock import now_ms
from trioserver.services.events.event import Event
from trioserver.services.presence import UserPresence, presence_content
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.client_format import client_event
from trioserver.storage.db import Database
from trioserver.storage.repositories import appservice as as_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.repositories.appservice import (
    PendingTxn,
    Positions,
    RoomFacts,
    StreamRow,
)

log = logging.getLogger(__name__)

MAX_EVENTS_PER_TXN = 100
MAX_EPHEMERAL_QUEUE = 5000
MAX_USER_QUERIES_PER_TXN = 20
SCAN_BATCH = 1000
REQUEST_TIMEOUT_S = 30.0


def room_is_interesting(reg: Registration, server_name: str, room_id: str, facts: RoomFacts
                        ) -> bool:
    """A namespaced room, a room with a namespaced alias, or one a namespaced local user (or
    the appservice's sender) is joined to (Synapse looks at local members only, too)."""
    if reg.is_interested_in_room(room_id):
        return True
    if any(reg.is_interested_in_alias(a) for a in facts.aliases):
        return True
    suffix = ":" + server_name
    return any(u.endswith(suffix) and reg.is_interested_in_user(u, server_name)
               for u in facts.joined)


def is_interesting(reg: Registration, server_name: str, row: StreamRow, facts: RoomFacts
                   ) -> bool:
    """Spec: events from or about namespaced users, in namespaced rooms or rooms with a
    namespaced alias, and (what bridges rely on) every event of a room a namespaced user is in."""
    if reg.is_interested_in_user(row.sender, server_name):
        return True
    if row.type == "m.room.member" and row.state_key is not None \
            and reg.is_interested_in_user(row.state_key, server_name):
        return True
    return room_is_interesting(reg, server_name, row.room_id, facts)


@dataclass(frozen=True)
class EphemeralChange:
    """A queued typing or presence change (turned into events when a transaction is built, so
    typing shows the room's state at that moment)."""

    kind: str  # "m.typing" or "m.presence"
    room_id: str | None
    user_id: str
    data: tuple[Any, ...] = ()


def transaction_url(base: str, txn_id: int) -> str:
    return f"{base.rstrip('/')}/_matrix/app/v1/transactions/{quote(str(txn_id), safe='')}"


class AppserviceDelivery:
    def __init__(self, db: Database, cache: RoomCache, appservices: AppServices, *,
                 first_retry_s: float = 1.0, max_retry_s: float = 300.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._db = db
        self._cache = cache
        self._appservices = appservices
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._transport = transport
        self._wake: dict[str, trio.Event] = {}
        self._retry_now: dict[str, trio.Event] = {}
        self._skip_saved_at: dict[tuple[str, str], float] = {}  # (as_id, stream) -> time
        self._ephemeral: dict[str, deque[EphemeralChange]] = {
            r.id: deque(maxlen=MAX_EPHEMERAL_QUEUE)
            for r in appservices.all() if r.url and r.receive_ephemeral}
        # Who is typing in a room now; set by the composition root.
        self.typing_in: Callable[[str], list[str]] = lambda _room_id: []
        self.sent_transactions = 0

    @property
    def wants_ephemeral(self) -> bool:
        return bool(self._ephemeral)

    # -- called from the append path (synchronous, must not block) ----------------------------

    def on_event(self, _event: Event, _stream_ordering: int) -> None:
        for wake in self._wake.values():
            wake.set()

    def retry_now(self, as_id: str) -> None:
        """The appservice showed it is up (a successful ping): end its back-off now."""
        retry = self._retry_now.get(as_id)
        if retry is not None:
            retry.set()

    # -- ephemeral listeners (synchronous, must not block) ------------------------------------

    def _queue(self, change: EphemeralChange) -> None:
        for as_id, queue in self._ephemeral.items():
            queue.append(change)
            wake = self._wake.get(as_id)
            if wake is not None:
                wake.set()

    def typing_changed(self, room_id: str, user_id: str, _typing: bool) -> None:
        self._queue(EphemeralChange("m.typing", room_id, user_id))

    def receipt_stored(self, *_receipt: object) -> None:
        """A receipt was stored: nothing is queued, the next transaction reads it from the
        database; wake the appservices that receive ephemeral data."""
        for as_id in self._ephemeral:
            wake = self._wake.get(as_id)
            if wake is not None:
                wake.set()

    def presence_changed(self, user_id: str, presence: UserPresence) -> None:
        self._queue(EphemeralChange("m.presence", None, user_id, (
            presence.state, presence.status_msg, presence.last_active_ts,
            presence.currently_active)))

    def to_device_queued(self, recipients: list[str]) -> None:
        """To-device messages were queued for these local users (MSC2409 to-device)."""
        server_name = self._appservices.server_name
        for reg in self._appservices.all():
            wake = self._wake.get(reg.id)
            if wake is not None and reg.receive_ephemeral and any(
                    reg.is_interested_in_user(u, server_name) for u in recipients):
                wake.set()

    async def device_list_changed(self, _change: object) -> None:
        """A device list changed (MSC3202): whether it interests an appservice is decided when
        its next transaction is built."""
        for reg in self._appservices.all():
            wake = self._wake.get(reg.id)
            if wake is not None and reg.msc3202:
                wake.set()

    @property
    def wants_device_lists(self) -> bool:
        return any(r.url and r.msc3202 for r in self._appservices.all())

    # -- the background task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                     transport=self._transport) as client, \
                trio.open_nursery() as nursery:
            for reg in self._appservices.all():
                if reg.url:
                    self._wake[reg.id] = trio.Event()
                    await nursery.start(self._deliver_forever, client, reg)
            task_status.started()

    async def _deliver_forever(self, client: httpx.AsyncClient, reg: Registration, *,
                               task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                               ) -> None:
        position = await self._db.write(partial(as_repo.position, as_id=reg.id))
        task_status.started()
        delay = self._first_retry_s
        while True:
            wake = self._wake[reg.id] = trio.Event()  # events after this are seen next round
            # A successful ping from now on cuts the back-off short.
            retry = self._retry_now[reg.id] = trio.Event()
            try:
                txn = await self._db.read(partial(as_repo.pending, as_id=reg.id))
                if txn is None:
                    txn, position = await self._next_transaction(reg, position)
                if txn is None:
                    await wake.wait()
                    continue
                if await self._send(client, reg, txn):
                    await self._db.write(partial(as_repo.acknowledge, as_id=reg.id,
                                                 txn_id=txn.txn_id))
                    position = Positions(
                        max(position.events, txn.upto_pos),
                        max(position.to_device, txn.upto_to_device or 0),
                        max(position.device_lists, txn.upto_device_list or 0),
                        max(position.receipts, txn.upto_receipts or 0))
                    self.sent_transactions += 1
                    delay = self._first_retry_s
                    continue
            except Exception:
                log.exception("appservice %s: delivery failed", reg.id)
            with trio.move_on_after(delay):
                await retry.wait()
            delay = self._first_retry_s if retry.is_set() else min(delay * 2,
                                                                    self._max_retry_s)

    async def _next_transaction(self, reg: Registration, positions: Positions
                                ) -> tuple[PendingTxn | None, Positions]:
        """Record the next transaction after `positions` (None if nothing interests the
        appservice, having skipped past what does not) and the new positions."""
        server_name = self._appservices.server_name
        wanted: list[StreamRow] = []
        position = positions.events
        upto = position
        while True:
            rows = await self._db.read(
                partial(as_repo.events_after, after=position, limit=SCAN_BATCH))
            if not rows:
                break
            facts = await self._db.read(
                partial(as_repo.room_facts, room_ids={x.room_id for x in rows}))
            upto = rows[-1].stream_ordering
            for row in rows:
                if is_interesting(reg, server_name, row, facts[row.room_id]):
                    wanted.append(row)
                    if len(wanted) == MAX_EVENTS_PER_TXN:
                        upto = row.stream_ordering
                        break
            if wanted:
                break
            position = upto
            if self._may_save_skip(reg.id, "events"):
                await self._db.write(partial(as_repo.advance, as_id=reg.id, last_pos=upto))
        positions = replace(positions, events=position)
        receipts = await self._receipts(reg, positions.receipts)
        ephemeral = await self._ephemeral_events(reg, receipts.events)
        events = await self._cache.events(r.event_id for r in wanted) if wanted else {}
        extensions = await self._extensions(reg, positions, wanted, events, ephemeral)
        if extensions.more or receipts.more:
            self._wake[reg.id].set()  # a scan stopped early: go on without waiting
        if not wanted and not ephemeral and not extensions.has_data():
            # Only messages, changes and receipts of no interest were scanned: skip past them.
            moved = extensions.upto_to_device is not None \
                or extensions.upto_device_list is not None
            if moved or (receipts.upto is not None
                         and self._may_save_skip(reg.id, "receipts")):
                await self._db.write(partial(
                    as_repo.advance_extensions, as_id=reg.id,
                    to_device=extensions.upto_to_device,
                    device_list=extensions.upto_device_list, receipts=receipts.upto))
            positions = replace(
                positions,
                to_device=extensions.upto_to_device or positions.to_device,
                device_lists=extensions.upto_device_list or positions.device_lists,
                receipts=receipts.upto or positions.receipts)
            return None, positions
        await self._query_unknown_users(reg, wanted)
        body: dict[str, Any] = {"events": [client_event(events[r.event_id]) for r in wanted
                                           if r.event_id in events]}
        for key in reg.ephemeral_keys:
            body[key] = ephemeral
        extensions.add_to(body, reg)
        txn = await self._db.write(partial(
            as_repo.record, as_id=reg.id, upto_pos=upto, body=body,
            upto_to_device=extensions.upto_to_device,
            upto_device_list=extensions.upto_device_list, upto_receipts=receipts.upto))
        return txn, positions

    def _may_save_skip(self, as_id: str, stream: str) -> bool:
        """Skipping is idempotent: the stored position need not follow every message or receipt
        of no interest (after a crash they are only scanned again), so write it at most once a
        second per stream."""
        now = trio.current_time()
        if now - self._skip_saved_at.get((as_id, stream), -1e9) < 1.0:
            return False
        self._skip_saved_at[as_id, stream] = now
        return True

    async def _receipts(self, reg: Registration, after: int) -> as_receipts.ReceiptScan:
        """The receipts after `after` for a registration receiving ephemeral data."""
        if not reg.receive_ephemeral:
            return as_receipts.ReceiptScan()
        server_name = self._appservices.server_name
        return await self._db.read(partial(
            as_receipts.collect, reg=reg, server_name=server_name, after=after,
            room_interest=partial(room_is_interesting, reg, server_name)))

    async def _extensions(self, reg: Registration, positions: Positions,
                          wanted: list[StreamRow], events: dict[str, Event],
                          ephemeral: list[dict[str, Any]]) -> ext.Extensions:
        """The unstable e2ee extensions (to-device, MSC3202) the registration asked for."""
        if not reg.receive_ephemeral and not reg.msc3202:
            return ext.Extensions()
        server_name = self._appservices.server_name
        members = [ext.MemberChange(e.room_id, str(e.state_key), e.membership or "")
                   for r in wanted if (e := events.get(r.event_id)) is not None
                   and e.type == "m.room.member" and e.state_key is not None]
        room_ids = {r.room_id for r in wanted}
        room_ids.update(str(e["room_id"]) for e in ephemeral if e.get("room_id"))
        return await self._db.read(partial(
            ext.collect, reg=reg, server_name=server_name,
            after_to_device=positions.to_device, after_device_list=positions.device_lists,
            members=members, room_ids=room_ids,
            room_interest=partial(room_is_interesting, reg, server_name),
            sending=bool(wanted or ephemeral)))

    async def _query_unknown_users(self, reg: Registration, rows: list[StreamRow]) -> None:
        """Ask the appservice about local namespaced users the events name but that do not
        exist yet, so it can create them before it sees the events (as Synapse does)."""
        server_name = self._appservices.server_name
        named = {u for r in rows for u in (r.sender, r.state_key if r.type == "m.room.member"
                                           else None)
                 if u and u.endswith(":" + server_name) and u != reg.sender(server_name)
                 and any(n.matches(u) for n in reg.users)}
        if not named:
            return
        known = await self._db.read(
            lambda c: {u for u in named if users_repo.user_exists(c, u)})
        for user_id in sorted(named - known)[:MAX_USER_QUERIES_PER_TXN]:
            await ask_user(reg, user_id, self._transport)

    async def _ephemeral_events(self, reg: Registration, receipts: list[dict[str, Any]]
                                ) -> list[dict[str, Any]]:
        """Drain the appservice's queued typing and presence changes into events it may see,
        around the receipts read from the database."""
        queue = self._ephemeral.get(reg.id)
        if not queue:
            return list(receipts)
        changes = list(queue)
        queue.clear()
        server_name = self._appservices.server_name
        presence_users = {c.user_id for c in changes if c.kind == "m.presence"}

        def load(conn: apsw.Connection) -> tuple[dict[str, RoomFacts], dict[str, set[str]]]:
            rooms_of = {u: as_repo.joined_rooms(conn, u) for u in presence_users}
            room_ids = {c.room_id for c in changes if c.room_id is not None}
            room_ids.update(r for rooms in rooms_of.values() for r in rooms)
            return as_repo.room_facts(conn, room_ids), rooms_of

        facts, rooms_of = await self._db.read(load)
        interesting = {room_id for room_id, f in facts.items()
                       if room_is_interesting(reg, server_name, room_id, f)}
        out: list[dict[str, Any]] = []
        typing_rooms = dict.fromkeys(c.room_id for c in changes
                                     if c.kind == "m.typing" and c.room_id in interesting)
        for room_id in typing_rooms:
            out.append({"type": "m.typing", "room_id": room_id,
                        "content": {"user_ids": self.typing_in(str(room_id))}})
        out.extend(receipts)
        newest: dict[str, EphemeralChange] = {}
        for c in changes:
            if c.kind == "m.presence":
                newest[c.user_id] = c
        now = now_ms()
        for user_id, c in newest.items():
            if not (reg.is_interested_in_user(user_id, server_name)
                    or rooms_of.get(user_id, set()) & interesting):
                continue
            state, status_msg, last_active_ts, currently_active = c.data
            out.append({"type": "m.presence", "sender": user_id, "content": presence_content(
                state, status_msg, last_active_ts, currently_active, now)})
        return out

    async def _send(self, client: httpx.AsyncClient, reg: Registration, txn: PendingTxn
                    ) -> bool:
        assert reg.url is not None
        url = transaction_url(reg.url, txn.txn_id)
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S + 5):
                response = await client.put(
                    url, content=txn.body.encode(),
                    headers={"Authorization": f"Bearer {reg.hs_token}",
                             "Content-Type": "application/json"})
        except (httpx.HTTPError, trio.TooSlowError) as e:
            log.info("appservice %s unreachable: %s", reg.id, e)
            return False
        if response.status_code != 200:
            log.info("appservice %s answered txn %d with %d", reg.id, txn.txn_id,
                     response.status_code)
            return False
        return True
