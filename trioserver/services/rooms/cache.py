"""In-memory views of rooms this process writes: current state, extremities, parsed events.

Only the append pipeline mutates a room, under that room's serializer, so these views stay
exact without invalidation across processes (there is one process).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import apsw

from trioserver.services.events.event import Event
from trioserver.services.events.room_versions import RoomVersion, get_room_version
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo
from trioserver.storage.repositories.events import StateMap, StoredEvent

# Parsed events kept in memory (recent timeline and auth state); ~2-4 KB each.
EVENT_CACHE_SIZE = 10_000


@dataclass
class RoomView:
    """What appending to a room needs: the state after the newest event, and where it is."""

    room_id: str
    room_version: RoomVersion
    state: StateMap
    state_group: int
    extremities: list[str]
    depth: int
    create_event_id: str
    members_cache: dict[str, str] = field(default_factory=dict)


class UnknownRoomVersion(Exception):
    pass


class RoomCache:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._rooms: dict[str, RoomView] = {}
        self._events: OrderedDict[str, Event] = OrderedDict()
        self._versions: dict[str, RoomVersion] = {}

    # -- rooms ----------------------------------------------------------------------------

    def put_room(self, view: RoomView) -> None:
        self._rooms[view.room_id] = view
        self._versions[view.room_id] = view.room_version

    async def room(self, room_id: str) -> RoomView | None:
        """The room's view (loading it on first use), or None if this server has no such room."""
        view = self._rooms.get(room_id)
        if view is not None:
            return view

        def load(conn: apsw.Connection) -> RoomView | None:
            row = rooms_repo.get_room(conn, room_id)
            if row is None:
                return None
            version = get_room_version(row.room_version)
            if version is None:
                raise UnknownRoomVersion(row.room_version)
            extremities = events_repo.forward_extremities(conn, room_id)
            stored = events_repo.get_events(conn, extremities)
            newest = max(stored.values(), key=lambda s: s.stream_ordering)
            state = events_repo.current_state_ids(conn, room_id)
            depth = max(int(s.pdu["depth"]) for s in stored.values())  # type: ignore[call-overload]
            # With several extremities the current state was resolved and has its own group.
            group = rooms_repo.current_state_group(conn, room_id) or newest.state_after
            return RoomView(room_id, version, state, group, extremities, depth,
                            state[("m.room.create", "")])

        view = await self._db.read(load)
        if view is not None:
            self.put_room(view)
        return view

    async def room_version(self, room_id: str) -> RoomVersion | None:
        version = self._versions.get(room_id)
        if version is None:
            view = await self.room(room_id)
            version = view.room_version if view else None
        return version

    # -- events ---------------------------------------------------------------------------

    def put_event(self, event: Event) -> None:
        self._events[event.event_id] = event
        self._events.move_to_end(event.event_id)
        if len(self._events) > EVENT_CACHE_SIZE:
            self._events.popitem(last=False)

    def cached_event(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    async def events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """Parsed events by ID (missing IDs are left out)."""
        wanted = list(dict.fromkeys(event_ids))
        out = {e: ev for e in wanted if (ev := self._events.get(e)) is not None}
        missing = [e for e in wanted if e not in out]
        if missing:
            stored = await self._db.read(lambda c: events_repo.get_events(c, missing))
            for event_id, s in stored.items():
                event = await self._parse(s)
                out[event_id] = event
                self.put_event(event)
            rest = [e for e in missing if e not in stored]
            if rest:
                # Outliers: auth and state events of rooms joined over federation.
                outliers = await self._db.read(lambda c: events_repo.get_outliers(c, rest))
                for event_id, (room_id, pdu) in outliers.items():
                    version = await self.room_version(room_id)
                    if version is None:
                        continue
                    event = Event.from_pdu(pdu, version, known_event_id=event_id)
                    out[event_id] = event
                    self.put_event(event)
        return out

    async def _parse(self, stored: StoredEvent) -> Event:
        version = await self.room_version(stored.room_id)
        if version is None:
            raise UnknownRoomVersion(stored.room_id)
        return Event.from_pdu(dict(stored.pdu), version, known_event_id=stored.event_id)
