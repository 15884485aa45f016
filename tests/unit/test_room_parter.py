"""The deactivation room parter: every room left, again until none is left (a join that was in
flight when the tokens went can land after the first listing), failures skipped, the queue
emptied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw

from trioserver.errors import MatrixError
from trioserver.services.deactivation import RoomParter
from trioserver.services.sessions import Requester

USER = "@gone:hs"


class _Db:
    """Runs repository functions on an in-memory database with just the tables they read."""

    def __init__(self) -> None:
        self.conn = apsw.Connection(":memory:")
        self.conn.execute(
            "CREATE TABLE current_state (room_id TEXT, type TEXT, state_key TEXT,"
            " event_id TEXT, membership TEXT, PRIMARY KEY (room_id, type, state_key));"
            "CREATE TABLE remote_invites (user_id TEXT, room_id TEXT, active INTEGER);"
            "CREATE TABLE deactivation_queue (user_id TEXT PRIMARY KEY, queued_ts INTEGER);")

    def member(self, room_id: str, membership: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO current_state VALUES (?, 'm.room.member', ?,"
                          " '$e', ?)", (room_id, USER, membership))

    async def read(self, fn: Callable[[apsw.Connection], Any]) -> Any:
        return fn(self.conn)

    async def write(self, fn: Callable[[apsw.Connection], Any]) -> Any:
        return fn(self.conn)


class _Rooms:
    def __init__(self, db: _Db, late_join: str | None, refuse: str | None) -> None:
        self.db = db
        self.late_join = late_join
        self.refuse = refuse
        self.left: list[str] = []

    async def leave(self, requester: Requester, room_id: str, reason: str | None) -> None:
        assert requester.user_id == USER
        if room_id == self.refuse:
            raise MatrixError(403, "M_FORBIDDEN", "no")
        self.left.append(room_id)
        if room_id.endswith(":other"):  # an invite from another server: rejecting closes it
            self.db.conn.execute("UPDATE remote_invites SET active = 0 WHERE room_id = ?",
                                 (room_id,))
        else:
            self.db.member(room_id, "leave")
        if self.late_join is not None:  # a join in flight lands while the parter works
            self.db.member(self.late_join, "join")
            self.late_join = None


async def test_rooms_joined_meanwhile_are_left_too_and_failures_skipped() -> None:
    db = _Db()
    for room_id, membership in (("!a:hs", "join"), ("!b:hs", "invite"), ("!c:hs", "knock"),
                                ("!d:hs", "join"), ("!old:hs", "leave")):
        db.member(room_id, membership)
    db.conn.execute("INSERT INTO remote_invites VALUES (?, '!remote:other', 1)", (USER,))
    db.conn.execute("INSERT INTO deactivation_queue VALUES (?, 0)", (USER,))
    rooms = _Rooms(db, late_join="!late:hs", refuse="!d:hs")
    parter = RoomParter(db, rooms)  # type: ignore[arg-type]
    await parter.drain()
    assert sorted(rooms.left) == ["!a:hs", "!b:hs", "!c:hs", "!late:hs", "!remote:other"]
    assert parter.rooms_left == 5
    assert list(db.conn.execute("SELECT count(*) FROM deactivation_queue")) == [(0,)]
