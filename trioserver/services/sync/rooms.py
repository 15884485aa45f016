"""The `rooms` part of /sync: joined, invited, knocked and left rooms of one user."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.services.events.event import Event
from trioserver.services.receipts.sources import shape_for_filter
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.client_format import stripped_state
from trioserver.services.rooms.reads import EventFilter, RoomReader, make_token
from trioserver.services.rooms.visibility import Visibility, visible_events
from trioserver.services.sync.filters import RoomFilter
from trioserver.services.sync.streams import RoomExtras
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories.events import StateMap, StoredEvent

STRIPPED_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
                        "m.room.canonical_alias", "m.room.encryption", "m.room.topic")
MAX_HEROES = 5


@dataclass(frozen=True)
class Window:
    """What one sync covers for one room: events in (since, upto]; `since` None = from scratch."""

    room_id: str
    since: int | None
    upto: int


class RoomSyncer:
    def __init__(self, db: Database, cache: RoomCache, reader: RoomReader) -> None:
        self._db = db
        self._cache = cache
        self._reader = reader
        self._visibility = Visibility(db)

    # -- timeline ------------------------------------------------------------------------

    async def timeline(self, user_id: str, window: Window, limit: int
                       ) -> tuple[list[tuple[StoredEvent, Event]], bool]:
        """The newest `limit` events of the window the user may see, oldest first, and
        whether older ones in the window were left out."""
        return await self._timeline(user_id, window, EventFilter(limit=limit))

    async def _timeline(self, user_id: str, window: Window, flt: EventFilter
                        ) -> tuple[list[tuple[StoredEvent, Event]], bool]:
        """The newest `flt.limit` visible, matching events of the window, oldest first, and
        whether older ones in the window were left out (`limited`)."""
        limit = flt.limit
        picked: list[tuple[StoredEvent, Event]] = []
        cursor = window.upto
        scanned = 0
        # Start with just enough rows for the limit (plus one, to know whether it was
        # limited); read more, doubling, only when invisible or filtered events were skipped.
        size = limit + 1
        while len(picked) < limit + 1 and scanned < 5000:
            def txn(conn: apsw.Connection, before: int = cursor + 1, n: int = size
                    ) -> tuple[int, list[StoredEvent]]:
                batch = events_repo.room_events(conn, window.room_id, after=window.since,
                                                before=before, backwards=True, limit=n)
                last = batch[-1].stream_ordering if batch else 0
                return last, visible_events(conn, user_id, window.room_id, batch)

            last, visible = await self._db.read(txn)
            if not last:
                break
            scanned += size
            needed = limit + 1 - len(picked)
            parsed = await self._cache.events(v.event_id for v in visible[:needed])
            for i, stored in enumerate(visible):
                if len(picked) > limit:
                    break
                event = parsed.get(stored.event_id)
                if event is None:  # beyond the first `needed`: parse on demand
                    event = (await self._cache.events(
                        v.event_id for v in visible[i:i + needed]))[stored.event_id]
                if flt.matches(event):
                    picked.append((stored, event))
            cursor = last - 1
            size = min(size * 2, 200)
        limited = False
        if len(picked) > limit:
            picked = picked[:limit]
            limited = True
        picked.reverse()
        return picked, limited

    # -- state ---------------------------------------------------------------------------

    async def _state_at(self, room_id: str, position: int) -> StateMap:
        def txn(conn: apsw.Connection) -> StateMap:
            last = events_repo.last_event_at_or_before(conn, room_id, position)
            return events_repo.load_state_group(conn, last.state_after) if last else {}

        return await self._db.read(txn)

    async def _state_before(self, stored: StoredEvent) -> StateMap:
        return await self._db.read(lambda c: events_repo.load_state_group(c, stored.state_before))

    # -- sections ------------------------------------------------------------------------

    async def joined_room(
        self, user_id: str, device_id: str, window: Window, flt: RoomFilter,
        extras: RoomExtras | None, *, full_state: bool,
    ) -> dict[str, Any] | None:
        """`rooms.join.{roomId}`, or None when nothing changed for this room."""
        timeline, limited = await self._timeline(user_id, window, flt.timeline)
        from_scratch = window.since is None or full_state
        state_ids: StateMap = {}
        if from_scratch or limited:
            if timeline:
                start = await self._state_before(timeline[0][0])
            else:
                start = await self._state_at(window.room_id, window.upto)
            if from_scratch or window.since is None:
                state_ids = start
            else:
                before = await self._state_at(window.room_id, window.since)
                state_ids = {k: v for k, v in start.items() if before.get(k) != v}
        timeline_ids = {e.event_id for _, e in timeline}
        state_events = await self._state_events(user_id, state_ids, timeline_ids, flt,
                                                [e for _, e in timeline], from_scratch)
        has_members = any(e.type == "m.room.member" for _, e in timeline) or any(
            e.type == "m.room.member" for e in state_events)
        if not (timeline or state_events or from_scratch or (extras and (
                extras.ephemeral or extras.account_data
                or extras.unread_notifications is not None))):
            return None
        device = (user_id, device_id)
        out: dict[str, Any] = {
            "timeline": {
                "events": _without_room_id(await self._reader.format(
                    [e for _, e in timeline], device)),
                "limited": limited,
                "prev_batch": make_token(
                    timeline[0][0].stream_ordering - 1 if timeline else window.upto),
            },
            "state": {"events": _without_room_id(await self._reader.format(state_events))},
        }
        if from_scratch or has_members:
            out["summary"] = await self._summary(user_id, window)
        if extras is not None:
            shape_for_filter(extras, flt.timeline.unread_thread_notifications)
            if extras.ephemeral:
                out["ephemeral"] = {"events": extras.ephemeral}
            if extras.account_data:
                out["account_data"] = {"events": extras.account_data}
            if extras.unread_notifications is not None:
                out["unread_notifications"] = extras.unread_notifications
            if extras.unread_thread_notifications:
                out["unread_thread_notifications"] = extras.unread_thread_notifications
        return out

    async def _state_events(self, user_id: str, state_ids: StateMap, timeline_ids: set[str],
                            flt: RoomFilter, timeline: Sequence[Event], from_scratch: bool
                            ) -> list[Event]:
        wanted = {k: v for k, v in state_ids.items() if v not in timeline_ids}
        if flt.state.lazy_load_members:
            senders = {e.sender for e in timeline}
            if from_scratch:
                senders.add(user_id)
            wanted = {k: v for k, v in wanted.items()
                      if k[0] != "m.room.member" or k[1] in senders}
        events = await self._cache.events(wanted.values())
        return [e for e in (events[v] for v in wanted.values() if v in events)
                if flt.state.matches(e)]

    async def _summary(self, user_id: str, window: Window) -> dict[str, Any]:
        state = await self._state_at(window.room_id, window.upto)
        member_ids = [v for k, v in state.items() if k[0] == "m.room.member"]
        members = await self._cache.events(member_ids)
        joined = sorted(m.state_key for m in members.values()
                        if m.membership == "join" and m.state_key is not None)
        invited = sorted(m.state_key for m in members.values()
                         if m.membership == "invite" and m.state_key is not None)
        heroes = [u for u in joined + invited if u != user_id][:MAX_HEROES]
        return {"m.heroes": heroes, "m.joined_member_count": len(joined),
                "m.invited_member_count": len(invited)}

    async def stripped_room_state(self, room_id: str, upto: int, member_event_id: str
                                  ) -> list[dict[str, Any]]:
        """invite_state / knock_state: a few state events and the user's own member event."""
        state = await self._state_at(room_id, upto)
        ids = [state[(t, "")] for t in STRIPPED_STATE_TYPES if (t, "") in state]
        events = await self._cache.events([*ids, member_event_id])
        return [stripped_state(events[i]) for i in [*ids, member_event_id] if i in events]

    async def left_room(self, user_id: str, device_id: str, window: Window, flt: RoomFilter
                        ) -> dict[str, Any]:
        """`rooms.leave.{roomId}`: the timeline up to and including the leave (or kick/ban)."""
        section = await self.joined_room(user_id, device_id, window, flt, None,
                                         full_state=window.since is None)
        if section is None:
            section = {"timeline": {"events": [], "limited": False,
                                    "prev_batch": make_token(window.upto)},
                       "state": {"events": []}}
        section.pop("summary", None)
        return section


def _without_room_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for e in events:
        e.pop("room_id", None)
    return events
