"""The sliding sync engine: lists, subscriptions, room results, extensions and long-polling.

One pass computes, at one room-event position, which rooms match the request's lists (after
filters, within ranges) and subscriptions, and sends those the connection has not seen or that
changed since it last saw them (new events, membership, a grown timeline_limit or
required_state). With nothing to send and a `pos`, it waits on the notifier for the user's
rooms and streams until something arrives or `timeout` passes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio

from trioserver.concurrency import Notifier
from trioserver.services.sliding_sync import required_state as rs_rules
from trioserver.services.sliding_sync.connections import ConnectionStore, ConnState, RoomSent
from trioserver.services.sliding_sync.extensions import ExtensionContext, ExtensionsRunner
from trioserver.services.sliding_sync.model import RoomConfig, SlidingRequest
from trioserver.services.sliding_sync.room_data import RoomDataBuilder, RoomRequest
from trioserver.services.sliding_sync.room_list import Entry, RoomList, RoomLister
from trioserver.services.sync.streams import (
    DEVICE_DELETIONS_KEY,
    StreamSource,
    SyncContext,
    SyncResult,
    room_key,
    user_key,
)

MAX_TIMEOUT_MS = 60_000
UNREAD = "un"

PresenceHook = Callable[[str, str | None], Awaitable[None]]


class SlidingSyncEngine:
    def __init__(self, notifier: Notifier, lister: RoomLister, builder: RoomDataBuilder,
                 extensions: ExtensionsRunner, unread: StreamSource,
                 connections: ConnectionStore | None = None,
                 presence_hook: PresenceHook | None = None) -> None:
        self._notifier = notifier
        self._lister = lister
        self._builder = builder
        self._extensions = extensions
        self._unread = unread
        self.connections = connections or ConnectionStore()
        self._presence_hook = presence_hook

    async def sync(self, user_id: str, device_id: str, req: SlidingRequest, *,
                   unread_counts: bool) -> dict[str, Any]:
        """The response in the engine's shape (see shapes.py), with `pos`."""
        conn, state = self.connections.begin(user_id, device_id, req.conn_id, req.pos)
        if self._presence_hook is not None:
            await self._presence_hook(user_id, req.set_presence)
        timeout_s = (max(0, min(req.timeout_ms, MAX_TIMEOUT_MS)) / 1000
                     if req.pos is not None else 0.0)
        deadline = trio.current_time() + timeout_s
        while True:
            seen = self._notifier.position
            body, new_state, keys, has_updates = await self._pass(
                user_id, device_id, req, state, unread_counts=unread_counts)
            remaining = deadline - trio.current_time()
            if has_updates or remaining <= 0:
                break
            if not await self._notifier.wait(keys, seen, remaining):
                break
        new_state = replace(new_state, number=self.connections.new_number(conn))
        body["pos"] = self.connections.commit(conn, new_state)
        return body

    async def _pass(self, user_id: str, device_id: str, req: SlidingRequest, state: ConnState,
                    *, unread_counts: bool
                    ) -> tuple[dict[str, Any], ConnState, list[str], bool]:
        rooms = await self._lister.build(user_id, state.rooms.keys())
        configs: dict[str, list[RoomConfig]] = {}
        in_lists: dict[str, list[str]] = {}
        windows: dict[str, tuple[str, ...]] = {}
        lists_out: dict[str, Any] = {}
        for name, lc in req.lists.items():
            entries = await self._lister.filtered(user_id, rooms, lc.filters)
            picked, ops = _window(entries, lc.ranges)
            windows[name] = tuple(e.room_id for e in picked)
            lists_out[name] = {"count": len(entries), "ops": ops}
            for entry in picked:
                configs.setdefault(entry.room_id, []).append(lc.config)
                in_lists.setdefault(entry.room_id, []).append(name)
        subscriptions: list[str] = []
        for room_id, config in req.room_subscriptions.items():
            if room_id in rooms.visible:  # others are silently ignored (MSC4186)
                configs.setdefault(room_id, []).append(config)
                subscriptions.append(room_id)

        unread_changed = await self._unread_changed(user_id, device_id, rooms, state,
                                                    unread_counts)
        results: dict[str, dict[str, Any]] = {}
        sent_now = dict(state.rooms)
        new_rooms: set[str] = set()
        for room_id, room_configs in configs.items():
            entry = rooms.by_id.get(room_id) or rooms.visible[room_id]
            combined = rs_rules.combine(room_configs)
            is_dm = room_id in rooms.dm_rooms
            sent = state.rooms.get(room_id)
            if sent is not None and not _changed(entry, combined, sent, is_dm) and \
                    room_id not in unread_changed:
                continue
            data, room_sent = await self._builder.build(user_id, device_id, RoomRequest(
                entry, combined, sent, rooms.upto, state.events, is_dm,
                tuple(in_lists.get(room_id, ()))))
            results[room_id] = data
            sent_now[room_id] = room_sent
            if data.get("initial"):
                new_rooms.add(room_id)
        if unread_counts:
            await self._add_unread(user_id, device_id, rooms, results)

        joined = frozenset(r for r, e in rooms.visible.items() if e.membership == "join")
        timelines = {r: frozenset(e["event_id"] for e in data.get("timeline", ()))
                     for r, data in results.items()}
        ext = await self._extensions.run(req.extensions, ExtensionContext(
            user_id, device_id, windows, subscriptions, joined, frozenset(new_rooms),
            state.events or None, rooms.upto, timelines), state.streams, state.ext_scopes)
        streams = {**state.streams, **ext.streams}
        if unread_counts:
            streams[UNREAD] = await self._unread.current_position()
        body: dict[str, Any] = {"lists": lists_out, "rooms": results,
                                "extensions": ext.body}
        new_state = ConnState(number=state.number, events=rooms.upto, streams=streams,
                              rooms=sent_now, windows=windows,
                              ext_scopes={**state.ext_scopes, **ext.scopes})
        keys = [user_key(user_id), DEVICE_DELETIONS_KEY, *(room_key(r) for r in joined)]
        lists_moved = windows != state.windows
        has_updates = bool(results) or ext.has_data or lists_moved or req.pos is None
        return body, new_state, keys, has_updates

    async def _unread_changed(self, user_id: str, device_id: str, rooms: RoomList,
                              state: ConnState, unread_counts: bool) -> set[str]:
        """Rooms whose notification counts moved since the connection's last response."""
        since = state.streams.get(UNREAD)
        if not unread_counts or since is None:
            return set()
        joined = [r for r, e in rooms.visible.items() if e.membership == "join"]
        result = SyncResult()
        await self._unread.collect(SyncContext(user_id, device_id, joined, initial=False),
                                   since, await self._unread.current_position(), result)
        return {r for r, x in result.rooms.items() if x.unread_notifications is not None}

    async def _add_unread(self, user_id: str, device_id: str, rooms: RoomList,
                          results: dict[str, dict[str, Any]]) -> None:
        joined = [r for r in results if rooms.visible[r].membership == "join"]
        if not joined:
            return
        result = SyncResult()
        await self._unread.collect(SyncContext(user_id, device_id, joined, initial=True),
                                   None, await self._unread.current_position(), result)
        for room_id in joined:
            extras = result.rooms.get(room_id)
            counts = extras.unread_notifications if extras is not None else None
            results[room_id]["unread"] = counts or {"notification_count": 0,
                                                    "highlight_count": 0}


def _changed(entry: Entry, config: RoomConfig, sent: RoomSent, is_dm: bool) -> bool:
    return (entry.activity > sent.events_pos or entry.membership != sent.membership
            or config.timeline_limit > sent.timeline_have
            or config.required_state != sent.config.required_state
            or is_dm != sent.is_dm)


def _window(entries: list[Entry], ranges: tuple[tuple[int, int], ...] | None
            ) -> tuple[list[Entry], list[dict[str, Any]]]:
    """The entries inside the ranges (all when None), and the unstable shape's SYNC ops."""
    if ranges is None:
        return entries, [{"op": "SYNC", "range": [0, max(len(entries) - 1, 0)],
                          "room_ids": [e.room_id for e in entries]}]
    picked: dict[str, Entry] = {}
    ops: list[dict[str, Any]] = []
    for start, end in ranges:
        part = entries[start:end + 1]
        ops.append({"op": "SYNC", "range": [start, end], "room_ids": [e.room_id for e in part]})
        for entry in part:
            picked.setdefault(entry.room_id, entry)
    return list(picked.values()), ops
