"""The newest committed position of a database-backed stream, kept in memory.

Read from the database once, then advanced by each writer after its write commits (and before it
notifies), so /sync asks for positions without a database trip. A position is only advanced past
writes that have committed, so a sync never reads up to a position whose data it cannot see.
"""

from __future__ import annotations

from trioserver.storage.db import Database
from trioserver.storage.repositories.stream_ids import last_stream_id


class StreamPosition:
    def __init__(self, db: Database, table: str) -> None:
        self._db = db
        self._table = table
        self._value: int | None = None

    async def current(self) -> int:
        if self._value is None:
            loaded = await self._db.read(lambda c: last_stream_id(c, self._table))
            # A write may have committed and advanced while the read ran: never go back.
            self._value = max(self._value or 0, loaded)
        return self._value

    def advance(self, position: int) -> None:
        """Record a committed write at `position`."""
        self._value = max(self._value or 0, position)


class PositionedSource:
    """Base for /sync stream sources whose position is a `StreamPosition` (subclasses set
    `name` and implement `collect`)."""

    name: str

    def __init__(self, db: Database, position: StreamPosition) -> None:
        self._db = db
        self._position = position

    async def current_position(self) -> int:
        return await self._position.current()
