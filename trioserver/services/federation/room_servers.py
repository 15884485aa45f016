"""Which servers are in a room (have a joined member): the destinations of its events."""

from __future__ import annotations

from trioserver.identifiers import split_user_id
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo


class RoomServers:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._rooms: dict[str, frozenset[str]] = {}

    def on_membership(self, room_id: str, user_id: str, membership: str) -> None:
        """Appender listener: membership changed; re-read the room's servers next time."""
        self._rooms.pop(room_id, None)

    async def of(self, room_id: str) -> frozenset[str]:
        servers = self._rooms.get(room_id)
        if servers is None:
            rows = await self._db.read(lambda c: events_repo.members(c, room_id))
            servers = frozenset(
                parts[1] for user, membership, _ in rows
                if membership == "join" and (parts := split_user_id(user)) is not None)
            self._rooms[room_id] = servers
        return servers
