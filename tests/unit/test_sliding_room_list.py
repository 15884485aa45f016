"""The room lister's membership cache under a membership change that races with a pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trioserver.services.rooms.cache import RoomCache
from trioserver.services.sliding_sync.activity import RoomActivity
from trioserver.services.sliding_sync.room_list import RoomLister, _stripped_flags
from trioserver.storage.db import Database


def _lister(tmp_path: Path) -> tuple[Database, RoomLister]:
    db = Database.open(tmp_path / "db.sqlite", readers=1)
    cache = RoomCache(db)
    return db, RoomLister(db, cache, RoomActivity(db, cache))


async def test_change_during_a_cached_pass_does_not_break_it(tmp_path: Path) -> None:
    db, lister = _lister(tmp_path)
    await lister.build("@a:x", ())  # caches @a's (empty) memberships
    real_read = db.read

    async def read_racing(fn: Callable[[Any], Any]) -> Any:
        lister.on_membership("!r:x", "@a:x", "join")  # commits while the pass reads
        return await real_read(fn)

    db.read = read_racing  # type: ignore[method-assign]
    rooms = await lister.build("@a:x", ())  # once raised KeyError (a 500 for the client)
    assert rooms.entries == []
    db.close()


async def test_rows_read_across_a_change_are_not_cached(tmp_path: Path) -> None:
    db, lister = _lister(tmp_path)
    real_read = db.read

    async def read_racing(fn: Callable[[Any], Any]) -> Any:
        result = await real_read(fn)
        lister.on_membership("!r:x", "@b:x", "invite")  # lands after the snapshot was read
        return result

    db.read = read_racing  # type: ignore[method-assign]
    await lister.build("@b:x", ())
    assert "@b:x" not in lister._memberships  # possibly stale: the next pass reads again
    db.read = real_read  # type: ignore[method-assign]
    await lister.build("@b:x", ())
    assert "@b:x" in lister._memberships
    db.close()


def test_stripped_flags_of_remote_rooms() -> None:
    """A remote invite's room type and encryption come from the stripped state it carried
    (only state events with an empty state key count)."""
    assert _stripped_flags(()) == (None, False)
    space = ({"type": "m.room.create", "state_key": "", "content": {"type": "m.space"}},
             {"type": "m.room.encryption", "state_key": "", "content": {}})
    assert _stripped_flags(space) == ("m.space", True)
    odd = ({"type": "m.room.create", "state_key": "x", "content": {"type": "m.space"}},
           {"type": "m.room.create", "state_key": "", "content": {"type": 5}},
           {"type": "m.room.encryption", "state_key": "nope", "content": {}})
    assert _stripped_flags(odd) == (None, False)
