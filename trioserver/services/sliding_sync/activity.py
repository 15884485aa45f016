"""Per-room activity and bump stamps, kept in memory so the room list never scans timelines.

A room's entry is loaded once (two kinds of index seeks, see repositories/room_list.py) and then
kept current by the appender's event listener; rooms nobody has asked about cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from trioserver.services.events.event import Event
from trioserver.services.sliding_sync.model import BUMP_TYPES
from trioserver.storage.db import Database
from trioserver.storage.repositories import room_list as list_repo

_BUMP_TYPES = tuple(sorted(BUMP_TYPES))


class RoomActivity:
    def __init__(self, db: Database) -> None:
        self._db = db
        # room -> (newest event's stream ordering, newest bump-type event's), as read from the
        # database once, and as seen committed since start-up. A room's figures are the larger
        # of the two, so an event committed while a load was reading is never lost.
        self._loaded: dict[str, tuple[int, int]] = {}
        self._live: dict[str, tuple[int, int]] = {}

    def on_event(self, event: Event, stream_ordering: int) -> None:
        """Appender listener: one committed event."""
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
