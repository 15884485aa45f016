"""Sliding sync extensions: to_device, e2ee, account_data, receipts and typing.

Each runs the same stream source as /v3/sync over the connection's own stream positions. The
per-room ones cover the rooms "in scope" (in a named list's window or a named subscription;
absent = all) and send their full current view for a room that enters the response for the
first time on this connection or (re-)enters the extension's scope (MSC4508: the client cleared
what it had when the room left scope, and the deltas it missed are gone), deltas afterwards;
receipts of a room sent `initial` are only those on its timeline and the user's own (MSC3960).
to_device has its own token (`since` / `next_batch`), independent of `pos`: a request with
`since` deletes what was delivered before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trioserver.errors import Codes, MatrixError
from trioserver.services.sliding_sync.model import Extensions, ExtensionScope
from trioserver.services.sync.streams import StreamSource, SyncContext, SyncResult
from trioserver.services.to_device import ToDeviceSource


@dataclass(frozen=True)
class ExtensionContext:
    user_id: str
    device_id: str
    windows: Mapping[str, Sequence[str]]  # list name -> room IDs in its window
    subscriptions: Sequence[str]
    joined: frozenset[str]
    new_rooms: frozenset[str]  # rooms sent with `initial` in this response
    events_since: int | None
    events_upto: int
    # Room -> event IDs of its timeline in this response.
    timelines: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class ExtensionResult:
    body: dict[str, Any]
    streams: dict[str, int]
    has_data: bool
    # Per-room extension -> the rooms it covered in this response.
    scopes: dict[str, frozenset[str]] = field(default_factory=dict)


def scope_rooms(scope: ExtensionScope, ctx: ExtensionContext) -> list[str]:
    names = scope.lists if scope.lists is not None and "*" not in scope.lists else \
        list(ctx.windows)
    rooms: list[str] = []
    for name in names:
        rooms.extend(ctx.windows.get(name, ()))
    subs = ctx.subscriptions if scope.rooms is None or "*" in scope.rooms else \
        [r for r in scope.rooms if r in ctx.subscriptions]
    rooms.extend(subs)
    return [r for r in dict.fromkeys(rooms) if r in ctx.joined]


InitialAccountData = Callable[[str], Awaitable[dict[str, Any]]]


class ExtensionsRunner:
    def __init__(self, *, account_data: StreamSource, receipts: StreamSource,
                 typing: StreamSource, to_device: ToDeviceSource, e2ee: StreamSource,
                 initial_account_data: Sequence[InitialAccountData] = ()) -> None:
        self._initial_account_data = list(initial_account_data)
        self._account_data = account_data
        self._receipts = receipts
        self._typing = typing
        self._to_device = to_device
        self._e2ee = e2ee

    async def run(self, ext: Extensions, ctx: ExtensionContext, streams: Mapping[str, int],
                  scopes: Mapping[str, frozenset[str]]) -> ExtensionResult:
        """`streams` and `scopes` are the connection's, as of the request's `pos`."""
        out = ExtensionResult({}, {}, False)
        if ext.to_device:
            await self._run_to_device(ext, ctx, out)
        if ext.e2ee:
            await self._run_e2ee(ctx, streams, out)
        if ext.account_data is not None:
            first_time = self._account_data.name not in streams
            result = await self._per_room(self._account_data, ext.account_data, ctx, streams,
                                          scopes, out, with_global=True)
            if first_time:
                # As in an initial /v3/sync: defaults such as m.push_rules the user never set.
                present = {e.get("type") for e in result.account_data}
                for make in self._initial_account_data:
                    event = await make(ctx.user_id)
                    if event["type"] not in present:
                        result.account_data.append(event)
            body: dict[str, Any] = {"global": result.account_data, "rooms": {
                r: x.account_data for r, x in result.rooms.items() if x.account_data}}
            out.body["account_data"] = body
            out.has_data |= bool(body["global"] or body["rooms"])
        for key, source, etype in (("receipts", self._receipts, "m.receipt"),
                                   ("typing", self._typing, "m.typing")):
            scope = ext.receipts if key == "receipts" else ext.typing
            if scope is None:
                continue
            result = await self._per_room(source, scope, ctx, streams, scopes, out)
            rooms = {}
            for room_id, extras in result.rooms.items():
                events = [e for e in extras.ephemeral if e.get("type") == etype]
                if events:
                    rooms[room_id] = _merge(events)
                if key == "receipts" and room_id in ctx.new_rooms and room_id in rooms:
                    event = _first_sight_receipts(rooms[room_id],
                                                  ctx.timelines.get(room_id, frozenset()),
                                                  ctx.user_id)
                    if event["content"]:
                        rooms[room_id] = event
                    else:
                        del rooms[room_id]
            out.body[key] = {"rooms": rooms}
            out.has_data |= bool(rooms)
        return out

    async def _per_room(self, source: StreamSource, scope: ExtensionScope,
                        ctx: ExtensionContext, streams: Mapping[str, int],
                        scopes: Mapping[str, frozenset[str]], out: ExtensionResult, *,
                        with_global: bool = False) -> SyncResult:
        rooms = scope_rooms(scope, ctx)
        upto = await source.current_position()
        since = streams.get(source.name)
        if since is not None and since > upto:
            since = None
        before = scopes.get(source.name, frozenset())
        entering = {r for r in rooms if r in ctx.new_rooms or r not in before}
        result = SyncResult()
        old = [r for r in rooms if r not in entering] if since is not None else rooms
        if old or with_global:
            await source.collect(self._sync_ctx(ctx, old, since), since, upto, result)
        fresh = [r for r in rooms if r in entering] if since is not None else []
        if fresh:
            # A room entering scope gets the full current view, not just the delta.
            first = SyncResult()
            await source.collect(self._sync_ctx(ctx, fresh, None), None, upto, first)
            for room_id in fresh:
                if room_id in first.rooms:
                    extras = result.room(room_id)
                    extras.ephemeral.extend(first.rooms[room_id].ephemeral)
                    extras.account_data.extend(first.rooms[room_id].account_data)
        out.streams[source.name] = upto
        out.scopes[source.name] = frozenset(rooms)
        return result

    @staticmethod
    def _sync_ctx(ctx: ExtensionContext, rooms: Sequence[str], since: int | None
                  ) -> SyncContext:
        return SyncContext(ctx.user_id, ctx.device_id, list(rooms), initial=since is None,
                           events_since=ctx.events_since, events_upto=ctx.events_upto)

    async def _run_to_device(self, ext: Extensions, ctx: ExtensionContext,
                             out: ExtensionResult) -> None:
        since: int | None = None
        if ext.to_device_since is not None:
            if not ext.to_device_since.isdigit() or len(ext.to_device_since) > 18:
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid to_device since token")
            since = int(ext.to_device_since)
        upto = await self._to_device.current_position()
        if since is not None and since > upto:
            since = None
        sync_ctx = self._sync_ctx(ctx, [], since)
        await self._to_device.acknowledge(sync_ctx, since)
        result = SyncResult()
        await self._to_device.collect(sync_ctx, since, upto, result)
        events = result.to_device[:ext.to_device_limit] if ext.to_device_limit else []
        # Everything collected is in (since, upto]; when the limit cut it, the rest comes next
        # time from the same `since` (nothing is deleted before it is acknowledged).
        next_batch = upto if len(events) == len(result.to_device) else since or 0
        out.body["to_device"] = {"next_batch": str(next_batch), "events": events}
        out.has_data |= bool(events)

    async def _run_e2ee(self, ctx: ExtensionContext, streams: Mapping[str, int],
                        out: ExtensionResult) -> None:
        upto = await self._e2ee.current_position()
        since = streams.get(self._e2ee.name)
        if since is not None and since > upto:
            since = None
        result = SyncResult()
        await self._e2ee.collect(self._sync_ctx(ctx, sorted(ctx.joined), since), since, upto,
                                 result)
        out.streams[self._e2ee.name] = upto
        out.body["e2ee"] = {
            "device_one_time_keys_count": result.one_time_keys_count or {},
            "device_unused_fallback_key_types": result.unused_fallback_key_types or [],
            "device_lists": {"changed": result.device_lists_changed,
                             "left": result.device_lists_left},
        }
        out.has_data |= bool(result.device_lists_changed or result.device_lists_left)


def _first_sight_receipts(event: dict[str, Any], timeline: frozenset[str], user_id: str
                          ) -> dict[str, Any]:
    """The receipts of a room sent `initial`: those on its timeline events, and the user's own
    (MSC3960: never all of a big room's receipts on old events)."""
    content: dict[str, Any] = {}
    for event_id, by_type in event["content"].items():
        if event_id in timeline:
            content[event_id] = by_type
            continue
        own = {t: {user_id: by_user[user_id]} for t, by_user in by_type.items()
               if user_id in by_user}
        if own:
            content[event_id] = own
    return {"type": "m.receipt", "content": content}


def _merge(events: list[dict[str, Any]]) -> dict[str, Any]:
    """One m.receipt (contents merged) or the newest m.typing for a room."""
    if events[0].get("type") == "m.typing":
        return events[-1]
    content: dict[str, Any] = {}
    for event in events:
        for event_id, by_type in event.get("content", {}).items():
            slot = content.setdefault(event_id, {})
            for receipt_type, by_user in by_type.items():
                slot.setdefault(receipt_type, {}).update(by_user)
    return {"type": "m.receipt", "content": content}
