"""Per-room facts the room list needs on every pass, kept in memory so it never scans
timelines or re-reads state: activity and bump stamps, room type and encryption.

A room's entry is loaded once (index seeks, see repositories/room_list.py) and then kept
current by the appender's event listener; rooms nobody has asked about cost nothing. A room's
type never changes (it is in the create event) and encryption cannot be turned off, so those
two only ever move one way.
"""

from __future__ import annotations

from collections.abc import Iterable

from trioserver.services.events.event import Event
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.sliding_sync.model import BUMP_TYPES
from trioserver.storage.db import Database
from trioserver.storage.repositories import room_list as list_repo

_BUMP_TYPES = tuple(sorted(BUMP_TYPES))


class RoomActivity:
    def __init__(self, db: Database, cache: RoomCache) -> None:
        self._db = db
        self._cache = cache
        # room -> (room type, encrypted); encryption seen live is in _encrypted_live.
        self._flags: dict[str, tuple[str | None, bool]] = {}
        self._encrypted_live: set[str] = set()
        # room -> (newest event's stream ordering, newest bump-type event's), as read from the
        # database once, and as seen committed since start-up. A room's figures are the larger
        # of the two, so an event committed while a load was reading is never lost.
        self._loaded: dict[str, tuple[int, int]] = {}
        self._live: dict[str, tuple[int, int]] = {}

    def on_event(self, event: Event, stream_ordering: int) -> None:
        """Appender listener: one committed event."""
        if event.type == "m.room.encryption" and event.state_key == "":
            self._encrypted_live.add(event.room_id)
        last, bump = self._live.get(event.room_id, (0, 0))
        if event.type in BUMP_TYPES:
            bump = max(bump, stream_ordering)
        self._live[event.room_id] = (max(last, stream_ordering), bump)

    async def of(self, room_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """room -> (activity, bump_stamp) for each room."""
        wanted = list(room_ids)
        missing = [r for r in wanted if r not in self._loaded]
        if missing:
            self._loaded.update(await self._db.read(
                lambda c: list_repo.last_positions(c, missing, _BUMP_TYPES)))
        out: dict[str, tuple[int, int]] = {}
        for room_id in wanted:
            last, bump = self._loaded.get(room_id, (0, 0))
            live_last, live_bump = self._live.get(room_id, (0, 0))
            out[room_id] = (max(last, live_last), max(bump, live_bump))
        return out

    async def flags(self, room_ids: Iterable[str]) -> dict[str, tuple[str | None, bool]]:
        """room -> (room type from its create event, whether it is encrypted)."""
        wanted = list(room_ids)
        missing = [r for r in wanted if r not in self._flags]
        if missing:
            state = await self._db.read(lambda c: list_repo.list_state_ids(c, missing))
            creates = await self._cache.events(
                s["m.room.create"] for s in state.values() if "m.room.create" in s)
            for room_id in missing:
                ids = state.get(room_id, {})
                create = creates.get(ids.get("m.room.create", ""))
                room_type = create.content.get("type") if create is not None else None
                self._flags[room_id] = (room_type if isinstance(room_type, str) else None,
                                        "m.room.encryption" in ids)
        return {r: (self._flags[r][0], self._flags[r][1] or r in self._encrypted_live)
                for r in wanted}
