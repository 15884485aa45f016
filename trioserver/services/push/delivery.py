"""Push delivery: POST each committed notification to the user's push gateways.

The append path only hands notifications to a bounded in-memory inbox (never blocking event
persistence; a full inbox drops and logs). `run` reads the inbox, finds the users' http pushers
and feeds one bounded queue per pusher, each drained by its own task that POSTs to the gateway
(spec "Push Gateway API": POST /_matrix/push/v1/notify), retrying with exponential backoff.
Pushkeys the gateway reports as `rejected` delete their pusher.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from trioserver.services.events.event import Event
from trioserver.services.push.actions import Notified
from trioserver.services.push.pushers import Pushers
from trioserver.services.rooms.cache import RoomCache
from trioserver.storage.db import Database
from trioserver.storage.repositories import pushers as pushers_repo
from trioserver.storage.repositories.events import StateMap
from trioserver.storage.repositories.pushers import PusherRow

log = logging.getLogger(__name__)

INBOX_SIZE = 10_000
PUSHER_QUEUE_SIZE = 100
REQUEST_TIMEOUT_S = 15.0
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class _Pending:
    """One notification for one user, with what the gateway body needs from the room."""

    room_id: str
    notified: Notified
    sender_display_name: str | None
    room_name: str | None
    room_alias: str | None


def tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            out[action["set_tweak"]] = action.get("value", True)
    return out


def notify_body(pending: _Pending, pusher: PusherRow, unread: int) -> dict[str, Any]:
    """The gateway request (spec push_notifier.yaml) for one pusher."""
    n = pending.notified
    event: Event = n.event
    device_tweaks = tweaks(n.actions)
    device: dict[str, Any] = {"app_id": pusher.app_id, "pushkey": pusher.pushkey,
              "pushkey_ts": pusher.pushkey_ts // 1000,
              "data": {k: v for k, v in pusher.data.items() if k != "url"},
              "tweaks": device_tweaks}
    note: dict[str, Any] = {"event_id": event.event_id, "room_id": pending.room_id,
                            "counts": {"unread": unread}, "devices": [device]}
    prio = "high" if n.highlight or "sound" in device_tweaks else "low"
    note["prio"] = prio
    if pusher.data.get("format") == "event_id_only":
        return {"notification": note}
    note.update({"type": event.type, "sender": event.sender, "content": dict(event.content)})
    if pending.sender_display_name is not None:
        note["sender_display_name"] = pending.sender_display_name
    if pending.room_name is not None:
        note["room_name"] = pending.room_name
    if pending.room_alias is not None:
        note["room_alias"] = pending.room_alias
    if event.type == "m.room.member":
        note["user_is_target"] = event.state_key == n.user_id
    return {"notification": note}


class PushDelivery:
    def __init__(self, db: Database, cache: RoomCache, pushers: Pushers, *,
                 first_retry_s: float = 1.0, max_retry_s: float = 300.0,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self._db = db
        self._cache = cache
        self._pushers = pushers
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._max_attempts = max_attempts
        self._inbox_send, self._inbox = trio.open_memory_channel[
            tuple[str, StateMap, Sequence[Notified]]](INBOX_SIZE)
        # user ID -> their http pushers (None: not loaded); dropped when they change.
        self._by_user: dict[str, list[PusherRow]] = {}
        self._queues: dict[tuple[str, str, str], trio.MemorySendChannel[_Pending]] = {}
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None
        self.delivered = 0
        pushers.add_listener(self._pushers_changed)

    # -- called from the append path (synchronous, must not block) ----------------------------

    def on_notify(self, room_id: str, state_after: StateMap,
                  notified: Sequence[Notified]) -> None:
        try:
            self._inbox_send.send_nowait((room_id, state_after, notified))
        except trio.WouldBlock:
            log.warning("push inbox full: dropped %d notifications in %s", len(notified), room_id)

    def _pushers_changed(self, user_id: str) -> None:
        self._by_user.pop(user_id, None)
        for key in [k for k in self._queues if k[0] == user_id]:
            self._queues.pop(key).close()  # its task sends what is queued, then ends

    # -- the background task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client, \
                trio.open_nursery() as nursery:
            self._client = client
            self._nursery = nursery
            task_status.started()
            async for room_id, state_after, notified in self._inbox:
                try:
                    await self._dispatch(room_id, state_after, notified)
                except Exception:
                    log.exception("push dispatch failed in %s", room_id)

    async def _http_pushers(self, user_ids: set[str]) -> dict[str, list[PusherRow]]:
        missing = {u for u in user_ids if u not in self._by_user}
        if missing:
            rows = await self._db.read(lambda c: pushers_repo.http_pushers_of(c, missing))
            loaded: dict[str, list[PusherRow]] = {u: [] for u in missing}
            for row in rows:
                loaded[row.user_id].append(row)
            self._by_user.update(loaded)
        return {u: self._by_user.get(u, []) for u in user_ids}

    async def _dispatch(self, room_id: str, state_after: StateMap,
                        notified: Sequence[Notified]) -> None:
        by_user = await self._http_pushers({n.user_id for n in notified})
        wanted = [n for n in notified if by_user.get(n.user_id)]
        if not wanted:
            return
        room_name, room_alias = await self._room_names(state_after)
        senders = await self._display_names(state_after, {n.event.sender for n in wanted})
        for n in wanted:
            pending = _Pending(room_id, n, senders.get(n.event.sender), room_name, room_alias)
            for pusher in by_user[n.user_id]:
                self._enqueue(pusher, pending)

    async def _room_names(self, state: StateMap) -> tuple[str | None, str | None]:
        ids = [state[k] for k in (("m.room.name", ""), ("m.room.canonical_alias", ""))
               if k in state]
        found = await self._cache.events(ids)
        name = alias = None
        for event in found.values():
            if event.type == "m.room.name" and isinstance(event.content.get("name"), str):
                name = event.content["name"] or None
            elif event.type == "m.room.canonical_alias" and \
                    isinstance(event.content.get("alias"), str):
                alias = event.content["alias"]
        return name, alias

    async def _display_names(self, state: StateMap, senders: set[str]) -> dict[str, str]:
        ids = {s: state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state}
        found = await self._cache.events(ids.values())
        out: dict[str, str] = {}
        for sender, event_id in ids.items():
            event = found.get(event_id)
            name = event.content.get("displayname") if event is not None else None
            if isinstance(name, str) and name:
                out[sender] = name
        return out

    def _enqueue(self, pusher: PusherRow, pending: _Pending) -> None:
        key = (pusher.user_id, pusher.app_id, pusher.pushkey)
        queue = self._queues.get(key)
        if queue is None:
            assert self._nursery is not None
            queue, receive = trio.open_memory_channel[_Pending](PUSHER_QUEUE_SIZE)
            self._queues[key] = queue
            self._nursery.start_soon(self._deliver_all, pusher, queue, receive)
        try:
            queue.send_nowait(pending)
        except trio.WouldBlock:
            log.warning("push queue of %s/%s full: dropped a notification",
                        pusher.user_id, pusher.app_id)

    async def _deliver_all(self, pusher: PusherRow, queue: trio.MemorySendChannel[_Pending],
                           receive: trio.MemoryReceiveChannel[_Pending]) -> None:
        key = (pusher.user_id, pusher.app_id, pusher.pushkey)
        async with receive:
            async for pending in receive:
                try:
                    if not await self._deliver(pusher, pending):
                        break  # the pusher was rejected and deleted
                except Exception:
                    log.exception("push to %s failed", pusher.app_id)
        if self._queues.get(key) is queue:
            del self._queues[key]
        queue.close()

    async def _deliver(self, pusher: PusherRow, pending: _Pending) -> bool:
        """POST one notification, retrying; False if the gateway rejected the pushkey."""
        url = str(pusher.data.get("url", ""))
        if urlsplit(url).scheme not in ("http", "https"):
            return True  # refused at /pushers/set too; never another scheme
        unread = await self._db.read(
            lambda c: pushers_repo.unread_total(c, pusher.user_id))
        body = notify_body(pending, pusher, unread)
        delay = self._first_retry_s
        for attempt in range(1, self._max_attempts + 1):
            answer = await self._post(url, body)
            if answer is not None:
                rejected = answer.get("rejected") if isinstance(answer, dict) else None
                if isinstance(rejected, list) and pusher.pushkey in rejected:
                    log.info("gateway rejected pushkey of %s/%s: deleting the pusher",
                             pusher.user_id, pusher.app_id)
                    await self._pushers.delete(pusher.user_id, pusher.app_id, pusher.pushkey)
                    return False
                self.delivered += 1
                return True
            if attempt < self._max_attempts:
                await trio.sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
        log.warning("gave up pushing %s to %s/%s after %d attempts",
                    pending.notified.event.event_id, pusher.user_id, pusher.app_id,
                    self._max_attempts)
        return True

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        """The gateway's JSON answer (or {}), or None on a failure worth retrying."""
        assert self._client is not None
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S + 5):
                response = await self._client.post(url, json=body)
        except (httpx.HTTPError, trio.TooSlowError) as e:
            log.info("push gateway %s unreachable: %s", url, e)
            return None
        if response.status_code >= 500 or response.status_code == 429:
            log.info("push gateway %s answered %d", url, response.status_code)
            return None
        if response.status_code >= 400:
            # The gateway refuses this request; retrying it would not help.
            log.warning("push gateway %s refused a notification: %d", url,
                        response.status_code)
            return {}
        try:
            return response.json()
        except ValueError:
            return {}

