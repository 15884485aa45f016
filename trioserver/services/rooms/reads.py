"""Reading rooms: single events, state, members, /messages, /context, joined rooms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import apsw

from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.services.events.event import Event
from trioserver.services.rooms.bundles import bundle
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.rooms.client_format import client_event
from trioserver.services.rooms.visibility import Visibility, joined_at
from trioserver.storage.db import Database
from trioserver.storage.repositories import deactivation as deactivation_repo
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import relations as relations_repo
from trioserver.storage.repositories.events import StoredEvent

MAX_LIMIT = 1000
SCAN_BUDGET = 5000  # events examined per /messages request before answering partially


@dataclass(frozen=True)
class EventFilter:
    """RoomEventFilter (the parts that apply to timeline pagination)."""

    limit: int = 10
    types: list[str] | None = None
    not_types: list[str] = field(default_factory=list)
    senders: list[str] | None = None
    not_senders: list[str] = field(default_factory=list)
    contains_url: bool | None = None
    lazy_load_members: bool = False
    unread_thread_notifications: bool = False

    def matches_type_and_sender(self, event_type: str, sender: str | None) -> bool:
        if self.types is not None and not any(_glob(t, event_type) for t in self.types):
            return False
        if any(_glob(t, event_type) for t in self.not_types):
            return False
        if sender is not None:
            if self.senders is not None and sender not in self.senders:
                return False
            if sender in self.not_senders:
                return False
        return True

    def select(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Client-format events (account data, ephemeral, presence) this filter keeps, at
        most `limit` of them."""
        kept = [e for e in events
                if self.matches_type_and_sender(str(e.get("type", "")), e.get("sender"))]
        return kept[:self.limit]

    def matches(self, event: Event) -> bool:
        if not self.matches_type_and_sender(event.type, event.sender):
            return False
        if self.contains_url is not None:
            has_url = isinstance(event.content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True


def _glob(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def target_sender(event: dict[str, Any]) -> str:
    return str(event["sender"])


# History fetched from other servers (backfill) is stored below position 0, oldest lowest.
MIN_POSITION = -(2**62)


def parse_token(token: str) -> int:
    """A pagination token ("t12", "t-5" in backfilled history) or a sync token
    ("e12.ad3..."): its room-event position."""
    digits = token[1:].removeprefix("-")
    if token.startswith("t") and digits.isdigit() and len(token) <= 21:
        return int(token[1:])
    if token.startswith("e"):
        head = token.split(".", 1)[0]
        if head[1:].isdigit() and len(head) <= 20:
            return int(head[1:])
    raise MatrixError(400, Codes.INVALID_PARAM, "Invalid pagination token")


def make_token(position: int) -> str:
    return f"t{max(position, MIN_POSITION)}"


class RoomReader:
    def __init__(self, db: Database, cache: RoomCache) -> None:
        self._db = db
        self._cache = cache
        self._visibility = Visibility(db)
        # Set by the composition root with federation: fetch older history of a room from the
        # other servers in it; returns how many events were added.
        self.backfill: Callable[[str], Awaitable[int]] | None = None
        # Users who asked for erasure (loaded on first use, then kept current by mark_erased).
        self._erased: set[str] | None = None
        self._marked: set[str] = set()

    def mark_erased(self, user_id: str) -> None:
        """The user was deactivated with erasure (the database already says so)."""
        self._marked.add(user_id)  # also covers a first load racing with this erasure

    async def _erased_for(self, reader: str | None, events: Sequence[Event]) -> set[str]:
        """Events to show `reader` redacted because their sender asked for erasure: those at
        which the reader was not joined (who could see them then still can; spec
        deactivateAccount `erase`). Message events only: room state stays whole (a room named
        by an erased user keeps its name; their membership events carry nothing erasable)."""
        if reader is None:
            return set()
        if self._erased is None:
            self._erased = await self._db.read(deactivation_repo.erased_users)
        erased = self._erased | self._marked if self._marked else self._erased
        targets = [e.event_id for e in events
                   if e.sender in erased and e.state_key is None and e.sender != reader]
        if not targets:
            return set()
        joined = await self._db.read(lambda c: joined_at(c, reader, targets))
        return set(targets) - joined

    async def _room(self, room_id: str) -> RoomView:
        view = await self._cache.room(room_id)
        if view is None:
            raise not_found("Unknown room")
        return view

    async def _parse(self, stored: Sequence[StoredEvent]) -> list[Event]:
        found = await self._cache.events(s.event_id for s in stored)
        return [found[s.event_id] for s in stored]

    async def format(self, events: Sequence[Event], device: tuple[str, str] | None = None,
                     user_id: str | None = None) -> list[dict[str, Any]]:
        """Client format, with accepted redactions applied and bundled aggregations
        (`unsigned.m.relations`) added; `device` (user, device) gets the transaction IDs of the
        events it sent itself; `user_id` (default: the device's) is who reads them."""
        ids = [e.event_id for e in events]
        reader = user_id if user_id is not None else device[0] if device is not None else None
        # State events are never edited and rarely thread roots: keep member lists cheap.
        parents = [e.event_id for e in events if e.state_key is None]

        def txn(conn: apsw.Connection
                ) -> tuple[dict[str, str], dict[str, str], relations_repo.Aggregations]:
            txn_ids = events_repo.txn_ids_for_device(conn, device[0], device[1], ids) \
                if device is not None else {}
            return (events_repo.redactions_of(conn, ids), txn_ids,
                    relations_repo.aggregations(conn, parents, reader))

        redactions, txn_ids, found = await self._db.read(txn)
        because = await self._cache.events(redactions.values())
        bundled = await bundle([e for e in events if e.event_id not in redactions], found,
                               self._cache.events, reader)
        erased = await self._erased_for(reader, events)
        out = [client_event(e, redacted_because=because.get(redactions.get(e.event_id, "")),
                            txn_id=txn_ids.get(e.event_id), erased=e.event_id in erased)
               for e in events]
        for formatted in out:
            relations = bundled.get(formatted["event_id"])
            if relations is not None:
                formatted.setdefault("unsigned", {})["m.relations"] = relations
        return out

    async def membership(self, view: RoomView, user_id: str) -> str | None:
        event_id = view.state.get(("m.room.member", user_id))
        if event_id is None:
            return None
        return (await self._cache.events([event_id]))[event_id].membership

    async def _state_for_user(self, view: RoomView, user_id: str) -> events_repo.StateMap:
        """Current state for members (and world_readable rooms); state at leave for leavers."""
        membership = await self.membership(view, user_id)
        if membership == "join" or await self._world_readable(view):
            return view.state
        if membership in ("leave", "ban") and (leave_id := view.state.get(
                ("m.room.member", user_id))) is not None:
            def txn(conn: apsw.Connection) -> events_repo.StateMap:
                stored = events_repo.get_events(conn, [leave_id])[leave_id]
                return events_repo.load_state_group(conn, stored.state_after)

            return await self._db.read(txn)
        raise forbidden("You are not in this room")

    async def _world_readable(self, view: RoomView) -> bool:
        hv_id = view.state.get(("m.room.history_visibility", ""))
        if hv_id is None:
            return False
        hv = (await self._cache.events([hv_id]))[hv_id]
        return hv.content.get("history_visibility") == "world_readable"

    # -- endpoints ------------------------------------------------------------------------

    async def get_event(self, user_id: str, room_id: str, event_id: str,
                        device_id: str | None = None) -> dict[str, Any]:
        await self._room(room_id)
        stored = await self._db.read(lambda c: events_repo.get_events(c, [event_id]))
        s = stored.get(event_id)
        if s is None or s.room_id != room_id or \
                not await self._visibility.filter(user_id, room_id, [s]):
            raise not_found("Event not found")
        device = (user_id, device_id) if device_id else None
        return (await self.format(await self._parse([s]), device, user_id))[0]

    async def state(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        view = await self._room(room_id)
        state = await self._state_for_user(view, user_id)
        events = await self._cache.events(state.values())
        return await self.format([events[e] for e in state.values() if e in events])

    async def state_event(self, user_id: str, room_id: str, event_type: str,
                          state_key: str) -> Event:
        view = await self._room(room_id)
        state = await self._state_for_user(view, user_id)
        event_id = state.get((event_type, state_key))
        if event_id is None:
            raise not_found("Event not found")
        return (await self._cache.events([event_id]))[event_id]

    async def members(self, user_id: str, room_id: str, *, membership: str | None,
                      not_membership: str | None, at: str | None = None
                      ) -> list[dict[str, Any]]:
        view = await self._room(room_id)
        state = await self._state_for_user(view, user_id)
        if at is not None:
            state = await self._state_at(view, user_id, parse_token(at), state)
        ids = [e for (t, _), e in state.items() if t == "m.room.member"]
        events = await self._cache.events(ids)
        chosen = [
            events[e] for e in ids if e in events
            and (membership is None or events[e].membership == membership)
            and (not_membership is None or events[e].membership != not_membership)
        ]
        return await self.format(chosen)

    async def _state_at(self, view: RoomView, user_id: str, position: int,
                        allowed: events_repo.StateMap) -> events_repo.StateMap:
        """The state at a stream position, never later than what the user may see (`allowed`
        is their current or at-leave state)."""
        own = allowed.get(("m.room.member", user_id))

        def txn(conn: apsw.Connection) -> events_repo.StateMap:
            limit = position
            if allowed is not view.state and own is not None:
                leave_at = events_repo.stream_ordering_of(conn, own)
                if leave_at is not None:
                    limit = min(limit, leave_at)
            last = events_repo.last_event_at_or_before(conn, view.room_id, limit)
            return events_repo.load_state_group(conn, last.state_after) if last else {}

        return await self._db.read(txn)

    async def joined_members(self, user_id: str, room_id: str) -> dict[str, Any]:
        view = await self._room(room_id)
        if await self.membership(view, user_id) != "join":
            raise forbidden("You are not in this room")
        ids = [e for (t, _), e in view.state.items() if t == "m.room.member"]
        events = await self._cache.events(ids)
        joined: dict[str, Any] = {}
        for event in events.values():
            if event.membership == "join" and event.state_key is not None:
                joined[event.state_key] = {
                    name: event.content[key]
                    for name, key in (("display_name", "displayname"), ("avatar_url", "avatar_url"))
                    if isinstance(event.content.get(key), str)
                }
        return {"joined": joined}

    async def joined_rooms(self, user_id: str) -> list[str]:
        return await self._db.read(
            lambda c: events_repo.rooms_with_membership(c, user_id, "join"))

    async def require_history_access(self, view: RoomView, user_id: str) -> None:
        """Members (past or present) and anyone in a world_readable room may read history."""
        await self._require_history_access(view, user_id)

    async def _require_history_access(self, view: RoomView, user_id: str) -> None:
        if await self.membership(view, user_id) is not None or await self._world_readable(view):
            return
        raise forbidden("You are not in this room")

    async def messages(self, user_id: str, room_id: str, *, from_token: str | None,
                       to_token: str | None, backwards: bool, event_filter: EventFilter,
                       device_id: str | None = None) -> dict[str, Any]:
        view = await self._room(room_id)
        await self._require_history_access(view, user_id)
        if from_token is not None:
            position = parse_token(from_token)
        else:
            position = await self._db.read(events_repo.max_stream_ordering) if backwards else 0
        bound = parse_token(to_token) if to_token is not None else None
        chunk, cursor, exhausted = await self._paginate(user_id, room_id, position, bound,
                                                        backwards, event_filter)
        if backwards and exhausted and bound is None and self.backfill is not None and \
                await self.backfill(room_id):
            # The start of what we hold, in a room that began elsewhere: history was fetched
            # from the other servers; paginate again over it.
            chunk, cursor, exhausted = await self._paginate(user_id, room_id, position, bound,
                                                            backwards, event_filter)
        device = (user_id, device_id) if device_id else None
        out: dict[str, Any] = {"chunk": await self.format(chunk, device),
                               "start": make_token(position)}
        if not exhausted:
            out["end"] = make_token(cursor)
        if event_filter.lazy_load_members and chunk:
            out["state"] = await self._member_state(view, user_id, {e.sender for e in chunk})
        return out

    async def _paginate(self, user_id: str, room_id: str, position: int, bound: int | None,
                        backwards: bool, event_filter: EventFilter
                        ) -> tuple[list[Event], int, bool]:
        """Visible events matching the filter from `position` on.

        Returns (events, cursor, exhausted): `cursor` is the position to continue from, and
        `exhausted` says there is nothing further in that direction (the cursor then points
        past the last event, so continuing from it yields nothing).
        """
        limit = max(0, min(event_filter.limit, MAX_LIMIT))
        chunk: list[Event] = []
        scanned = 0
        cursor = position
        while len(chunk) < limit and scanned < SCAN_BUDGET:
            batch_size = min(max(limit * 2, 20), SCAN_BUDGET - scanned)
            if backwards:
                batch = await self._db.read(lambda c, cur=cursor, n=batch_size: (  # type: ignore[misc]
                    events_repo.room_events(c, room_id, after=bound, before=cur + 1,
                                            backwards=True, limit=n)))
            else:
                batch = await self._db.read(lambda c, cur=cursor, n=batch_size: (  # type: ignore[misc]
                    events_repo.room_events(c, room_id, after=cur,
                                            before=bound + 1 if bound is not None else None,
                                            backwards=False, limit=n)))
            scanned += len(batch)
            visible = await self._visibility.filter(user_id, room_id, batch)
            parsed = dict(zip((v.event_id for v in visible), await self._parse(visible),
                              strict=True))
            for stored in batch:
                cursor = stored.stream_ordering - 1 if backwards else stored.stream_ordering
                event = parsed.get(stored.event_id)
                if event is not None and event_filter.matches(event):
                    chunk.append(event)
                    if len(chunk) == limit:
                        return chunk, cursor, False
            if len(batch) < batch_size:
                if backwards:
                    cursor = bound if bound is not None else MIN_POSITION
                return chunk, cursor, True
        return chunk, cursor, False

    async def _member_state(self, view: RoomView, user_id: str, senders: set[str]
                            ) -> list[dict[str, Any]]:
        state = await self._state_for_user(view, user_id)
        ids = [state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state]
        events = await self._cache.events(ids)
        return await self.format(list(events.values()))

    async def context(self, user_id: str, room_id: str, event_id: str, limit: int,
                      event_filter: EventFilter, device_id: str | None = None
                      ) -> dict[str, Any]:
        await self._room(room_id)
        stored = await self._db.read(lambda c: events_repo.get_events(c, [event_id]))
        target = stored.get(event_id)
        if target is None or target.room_id != room_id or \
                not await self._visibility.filter(user_id, room_id, [target]):
            raise not_found("Event not found")
        limit = max(0, min(limit, MAX_LIMIT))
        before_filter = replace(event_filter, limit=limit // 2)
        after_filter = replace(event_filter, limit=limit - limit // 2)
        before, start, _ = await self._paginate(user_id, room_id, target.stream_ordering - 1,
                                                None, True, before_filter)
        after, end, _ = await self._paginate(user_id, room_id, target.stream_ordering, None,
                                             False, after_filter)
        device = (user_id, device_id) if device_id else None
        event = (await self.format(await self._parse([target]), device))[0]

        def state_txn(conn: apsw.Connection) -> events_repo.StateMap:
            return events_repo.load_state_group(conn, target.state_after)

        state_map = await self._db.read(state_txn)
        if event_filter.lazy_load_members:
            senders = {e.sender for e in (*before, *after)} | {target_sender(event)}
            state_ids = [e for (t, k), e in state_map.items()
                         if t != "m.room.member" or k in senders]
        else:
            state_ids = list(state_map.values())
        state_events = await self._cache.events(state_ids)
        return {
            "event": event,
            "events_before": await self.format(before, device),
            "events_after": await self.format(after, device),
            "start": make_token(start),
            "end": make_token(end),
            "state": await self.format(list(state_events.values())),
        }

    async def timestamp_to_event(self, user_id: str, room_id: str, ts: int,
                                 forwards: bool) -> dict[str, Any]:
        view = await self._room(room_id)
        await self._require_history_access(view, user_id)
        found = await self._db.read(
            lambda c: events_repo.event_closest_to_ts(c, room_id, ts, forwards))
        if found is None:
            raise not_found("No event found")
        return {"event_id": found[0], "origin_server_ts": found[1]}
