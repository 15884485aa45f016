"""Pushing events to application services (spec "Application Service API": Pushing events).

One task per registration with a `url`. It reads the events table after the appservice's stored
position, in stream order, keeps the events that interest it, and sends up to 100 of them as one
transaction: PUT /_matrix/app/v1/transactions/{txnId} with `Authorization: Bearer <hs_token>`.
The transaction (its ID, body and the position it completes) is written before it is first sent,
so a failure or a restart re-sends the same txn ID and body; the position moves on only after a
200. Events are thus delivered in order and, as the appservice sees txn IDs, exactly once.

The append path only sets a wake-up flag (never blocking event persistence); failures back off
exponentially from 1 s to 5 min.
"""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import quote

import httpx
import trio

from trioserver.services.appservice.registration import Registration
from trioserver.services.appservice.registry import AppServices
from trioserver.services.events.event import Event
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.client_format import client_event
from trioserver.storage.db import Database
from trioserver.storage.repositories import appservice as as_repo
from trioserver.storage.repositories.appservice import PendingTxn, RoomFacts, StreamRow

log = logging.getLogger(__name__)

MAX_EVENTS_PER_TXN = 100
SCAN_BATCH = 1000
REQUEST_TIMEOUT_S = 30.0


def is_interesting(reg: Registration, server_name: str, row: StreamRow, facts: RoomFacts
                   ) -> bool:
    """Spec: events from or about namespaced users, in namespaced rooms or rooms with a
    namespaced alias, and (what bridges rely on) every event of a room a namespaced user is in."""
    if reg.is_interested_in_user(row.sender, server_name):
        return True
    if row.type == "m.room.member" and row.state_key is not None \
            and reg.is_interested_in_user(row.state_key, server_name):
        return True
    if reg.is_interested_in_room(row.room_id):
        return True
    if any(reg.is_interested_in_alias(a) for a in facts.aliases):
        return True
    return any(reg.is_interested_in_user(u, server_name) for u in facts.joined)


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
        self.sent_transactions = 0

    # -- called from the append path (synchronous, must not block) ----------------------------

    def on_event(self, _event: Event, _stream_ordering: int) -> None:
        for wake in self._wake.values():
            wake.set()

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
                    position = max(position, txn.upto_pos)
                    self.sent_transactions += 1
                    delay = self._first_retry_s
                    continue
            except Exception:
                log.exception("appservice %s: delivery failed", reg.id)
            await trio.sleep(delay)
            delay = min(delay * 2, self._max_retry_s)

    async def _next_transaction(self, reg: Registration, position: int
                                ) -> tuple[PendingTxn | None, int]:
        """Record the next transaction after `position` (None if no event interests the
        appservice, having skipped past those that do not) and the new position."""
        while True:
            rows = await self._db.read(
                partial(as_repo.events_after, after=position, limit=SCAN_BATCH))
            if not rows:
                return None, position
            facts = await self._db.read(
                partial(as_repo.room_facts, room_ids={x.room_id for x in rows}))
            wanted: list[StreamRow] = []
            upto = rows[-1].stream_ordering
            for row in rows:
                if is_interesting(reg, self._appservices.server_name, row,
                                  facts[row.room_id]):
                    wanted.append(row)
                    if len(wanted) == MAX_EVENTS_PER_TXN:
                        upto = row.stream_ordering
                        break
            if not wanted:
                await self._db.write(partial(as_repo.advance, as_id=reg.id, last_pos=upto))
                position = upto
                continue
            events = await self._cache.events(r.event_id for r in wanted)
            body = {"events": [client_event(events[r.event_id]) for r in wanted
                               if r.event_id in events]}
            txn = await self._db.write(partial(as_repo.record, as_id=reg.id, upto_pos=upto,
                                               body=body))
            return txn, position

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
