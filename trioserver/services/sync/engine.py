"""GET /sync: positions, rooms, streams, and the long-poll.

One pass reads the room-event position and the user's memberships in a single read transaction
(one snapshot, so they agree), asks every stream source for its changes up to its current
position, and builds the room sections. When an incremental sync has nothing to say, it waits on
the notifier for the user's key and their rooms' keys: the notifier position is taken *before*
the pass, so anything committed while the pass ran wakes the wait at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import trio

from trioserver.concurrency import Notifier
from trioserver.services.sync.filters import Filters, SyncFilter
from trioserver.services.sync.rooms import RoomSyncer, Window
from trioserver.services.sync.streams import (
    DEVICE_DELETIONS_KEY,
    StreamSource,
    SyncContext,
    SyncResult,
    room_key,
    user_key,
)
from trioserver.services.sync.tokens import EVENTS, SyncToken, parse_sync_token
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo
from trioserver.storage.repositories.events import MembershipRow

MAX_TIMEOUT_MS = 300_000

PresenceHook = Callable[[str, str | None], Awaitable[None]]
# Account data every initial sync carries even if the user never set it (m.push_rules).
InitialAccountData = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Snapshot:
    upto: int
    memberships: list[MembershipRow]
    changes: list[events_repo.StoredEvent]
    forgotten: set[str]
    active_rooms: set[str] | None  # rooms with events since `since` (None: initial sync)


# Keys every sync answer carries, even an empty one.
_ALWAYS = ("next_batch", "device_one_time_keys_count", "device_unused_fallback_key_types")
QUIET_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class _Quiet:
    """The last pass for one device: its token, and the notifier position and keys it saw."""

    token: str
    filter_param: str | None
    seen: int
    keys: tuple[str, ...]
    body: dict[str, Any]


@dataclass(frozen=True)
class SyncRequest:
    user_id: str
    device_id: str
    since: str | None
    timeout_ms: int
    full_state: bool
    filter_param: str | None
    set_presence: str | None


class SyncEngine:
    def __init__(self, db: Database, notifier: Notifier, filters: Filters, rooms: RoomSyncer,
                 sources: Sequence[StreamSource], presence_hook: PresenceHook | None = None,
                 initial_account_data: Sequence[InitialAccountData] = ()) -> None:
        self._db = db
        self._notifier = notifier
        self._filters = filters
        self._rooms = rooms
        self._sources = list(sources)
        self._presence_hook = presence_hook
        self._initial_account_data = list(initial_account_data)
        self._quiet: OrderedDict[tuple[str, str], _Quiet] = OrderedDict()

    async def sync(self, req: SyncRequest) -> dict[str, Any]:
        flt = await self._filters.resolve(req.user_id, req.filter_param)
        since = parse_sync_token(req.since) if req.since else None
        if self._presence_hook is not None:
            await self._presence_hook(req.user_id, req.set_presence)
        timeout_s = max(0, min(req.timeout_ms, MAX_TIMEOUT_MS)) / 1000
        deadline = trio.current_time() + timeout_s
        device = (req.user_id, req.device_id)
        quiet = self._quiet.get(device)
        if quiet is not None and since is not None and not req.full_state and \
                quiet.token == req.since and quiet.filter_param == req.filter_param and \
                all(self._notifier.latest(k) <= quiet.seen for k in quiet.keys):
            # Nothing was announced for this user or their rooms since the pass that produced
            # this token: it would find nothing, so skip it (the common case of idle clients).
            await self._acknowledge(req, since)
            remaining = deadline - trio.current_time()
            if remaining <= 0 or not await self._notifier.wait(quiet.keys, quiet.seen,
                                                                remaining):
                return dict(quiet.body)
        while True:
            seen = self._notifier.position
            body, keys, has_updates = await self._pass(req, since, flt)
            self._remember(device, req.filter_param, seen, keys, body)
            if has_updates or since is None or req.full_state:
                return body
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return body
            if not await self._notifier.wait(keys, seen, remaining):
                return body

    async def _acknowledge(self, req: SyncRequest, since: SyncToken) -> None:
        """Let streams that delete what a device has received (to-device) see the token."""
        ctx = SyncContext(req.user_id, req.device_id, (), initial=False)
        for source in self._sources:
            acknowledge = getattr(source, "acknowledge", None)
            if acknowledge is not None:
                await acknowledge(ctx, since.get(source.name))

    def _remember(self, device: tuple[str, str], filter_param: str | None, seen: int,
                  keys: list[str], body: dict[str, Any]) -> None:
        """What an idle follow-up sync from this body's token would answer."""
        quiet_body = {k: body[k] for k in _ALWAYS if k in body}
        self._quiet[device] = _Quiet(str(body["next_batch"]), filter_param, seen, tuple(keys),
                                     quiet_body)
        self._quiet.move_to_end(device)
        if len(self._quiet) > QUIET_CACHE_SIZE:
            self._quiet.popitem(last=False)

    async def _snapshot(self, user_id: str, since: int | None) -> _Snapshot:
        def txn(conn: apsw.Connection) -> _Snapshot:
            upto = events_repo.max_stream_ordering(conn)
            changes = (events_repo.membership_changes(conn, user_id, since, upto)
                       if since is not None else [])
            active = (events_repo.rooms_with_events(conn, since, upto)
                      if since is not None else None)
            return _Snapshot(upto, events_repo.user_memberships(conn, user_id), changes,
                             rooms_repo.forgotten(conn, user_id), active)

        return await self._db.read(txn)

    async def _pass(self, req: SyncRequest, since: SyncToken | None, flt: SyncFilter
                    ) -> tuple[dict[str, Any], list[str], bool]:
        since_events = since.events if since is not None else None
        snap = await self._snapshot(req.user_id, since_events)
        if since_events is not None and since_events > snap.upto:
            since_events = None  # a token from the future (e.g. a restored backup): start over
        # Memberships as of `upto` (current_state may already be ahead of the snapshot only if
        # an event committed after it; its ordering tells).
        current = {m.room_id: m for m in snap.memberships if m.stream_ordering <= snap.upto}
        joined = sorted(r for r, m in current.items() if m.membership == "join"
                        and flt.room.wants_room(r))

        positions: dict[str, int] = {EVENTS: snap.upto}
        result = SyncResult()
        ctx = SyncContext(req.user_id, req.device_id, joined, initial=since is None,
                          events_since=since_events, events_upto=snap.upto)
        for source in self._sources:
            upto = await source.current_position()
            stream_since = since.get(source.name) if since is not None else None
            if stream_since is not None and stream_since > upto:
                stream_since = None
            await source.collect(ctx, stream_since, upto, result)
            positions[source.name] = upto

        if since is None:
            present = {e.get("type") for e in result.account_data}
            for make in self._initial_account_data:
                event = await make(req.user_id)
                if event["type"] not in present:
                    result.account_data.append(event)
        _apply_filters(result, flt)
        changed_rooms: dict[str, list[events_repo.StoredEvent]] = {}
        for change in snap.changes:
            changed_rooms.setdefault(change.room_id, []).append(change)

        join: dict[str, Any] = {}
        for room_id in joined:
            extras = result.rooms.get(room_id)
            if since_events is not None and not req.full_state and extras is None and \
                    snap.active_rooms is not None and room_id not in snap.active_rooms:
                continue  # nothing happened in this room: skip it without reading anything
            newly_joined = room_id in changed_rooms and since_events is not None and \
                await self._was_not_joined(room_id, req.user_id, since_events)
            window = Window(room_id, None if newly_joined else since_events, snap.upto)
            section = await self._rooms.joined_room(
                req.user_id, req.device_id, window, flt.room, extras,
                full_state=req.full_state or newly_joined)
            if section is not None:
                join[room_id] = section

        invite: dict[str, Any] = {}
        knock: dict[str, Any] = {}
        for room_id, m in sorted(current.items()):
            if m.membership not in ("invite", "knock") or not flt.room.wants_room(room_id):
                continue
            if since_events is not None and room_id not in changed_rooms:
                continue
            stripped = await self._rooms.stripped_room_state(room_id, snap.upto, m.event_id)
            if m.membership == "invite":
                invite[room_id] = {"invite_state": {"events": stripped}}
            else:
                knock[room_id] = {"knock_state": {"events": stripped}}

        for room_id, stripped in result.remote_invites.items():
            # Invites from other servers to rooms we are not in (yet).
            if room_id not in current and flt.room.wants_room(room_id):
                invite[room_id] = {"invite_state": {"events": stripped}}

        for room_id, stripped in result.remote_knocks.items():
            if room_id not in current and flt.room.wants_room(room_id):
                knock[room_id] = {"knock_state": {"events": stripped}}

        leave: dict[str, Any] = {}
        for room_id in result.remote_invites_gone:
            if room_id not in current and flt.room.wants_room(room_id):
                leave[room_id] = {"timeline": {"events": [], "limited": False},
                                  "state": {"events": []}}
        for room_id, m in sorted(current.items()):
            if m.membership not in ("leave", "ban") or room_id in snap.forgotten or \
                    not flt.room.wants_room(room_id):
                continue
            if since_events is None and not flt.room.include_leave:
                continue
            if since_events is not None and room_id not in changed_rooms:
                continue
            window = Window(room_id, since_events, m.stream_ordering)
            leave[room_id] = await self._rooms.left_room(req.user_id, req.device_id, window,
                                                         flt.room)

        body: dict[str, Any] = {"next_batch": SyncToken(positions).encode()}
        rooms: dict[str, Any] = {}
        for name, section in (("join", join), ("invite", invite), ("knock", knock),
                              ("leave", leave)):
            if section:
                rooms[name] = section
        if rooms:
            body["rooms"] = rooms
        if result.account_data:
            body["account_data"] = {"events": result.account_data}
        if result.presence:
            body["presence"] = {"events": result.presence}
        if result.to_device:
            body["to_device"] = {"events": result.to_device}
        if result.device_lists_changed or result.device_lists_left:
            body["device_lists"] = {"changed": result.device_lists_changed,
                                    "left": result.device_lists_left}
        if result.one_time_keys_count is not None:
            body["device_one_time_keys_count"] = result.one_time_keys_count
        if result.unused_fallback_key_types is not None:
            body["device_unused_fallback_key_types"] = result.unused_fallback_key_types
        keys = [user_key(req.user_id), DEVICE_DELETIONS_KEY, *(room_key(r) for r in joined)]
        return body, keys, bool(rooms) or result.has_updates()

    async def _was_not_joined(self, room_id: str, user_id: str, position: int) -> bool:
        membership = await self._db.read(
            lambda c: events_repo.membership_at(c, room_id, user_id, position))
        return membership != "join"


def _apply_filters(result: SyncResult, flt: SyncFilter) -> None:
    """The filter's presence, account_data, room.ephemeral and room.account_data sections."""
    result.presence = flt.presence.select(result.presence)
    result.account_data = flt.account_data.select(result.account_data)
    for extras in result.rooms.values():
        extras.ephemeral = flt.room.ephemeral.select(extras.ephemeral)
        extras.account_data = flt.room.account_data.select(extras.account_data)
