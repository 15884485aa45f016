"""History visibility (Client-Server API, "History visibility": server behaviour).

An event is visible to a user according to the room state *at that event*:
1. world_readable: allow. 2. the user's membership was join: allow. 3. shared, and the user
joined at any point after the event: allow. 4. invited visibility and the user was invited:
allow. 5. otherwise deny. For history visibility events the state before *or* after the event
may allow it; a user's own member events are always visible to them (as in Synapse, which goes
beyond the spec's before-or-after rule so that kicks, bans and rejected invites reach the user).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import apsw

from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories.events import StoredEvent


@dataclass(frozen=True)
class _At:
    visibility: str
    membership: str | None


def _content_value(conn: apsw.Connection, event_id: str | None, key: str) -> str | None:
    if event_id is None:
        return None
    stored = events_repo.get_events(conn, [event_id]).get(event_id)
    if stored is None:
        return None
    content = stored.pdu.get("content")
    value = content.get(key) if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


def _at(conn: apsw.Connection, group: int, user_id: str) -> _At:
    hv_id = events_repo.state_group_value(conn, group, "m.room.history_visibility", "")
    visibility = _content_value(conn, hv_id, "history_visibility") or "shared"
    if visibility not in ("world_readable", "shared", "invited", "joined"):
        visibility = "shared"  # unknown values count as shared
    member_id = events_repo.state_group_value(conn, group, "m.room.member", user_id)
    return _At(visibility, _content_value(conn, member_id, "membership"))


def _membership(stored: StoredEvent) -> str | None:
    content = stored.pdu.get("content")
    value = content.get("membership") if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


def _allowed(at: _At, ordering: int, joins: Sequence[int]) -> bool:
    if at.visibility == "world_readable" or at.membership == "join":
        return True
    if at.visibility == "shared" and any(j > ordering for j in joins):
        return True
    return at.visibility == "invited" and at.membership == "invite"


def visible_events(conn: apsw.Connection, user_id: str, room_id: str,
                   events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The events (order kept) that `user_id` may see, read in the caller's transaction."""
    if not events:
        return []
    joins = [
        s.stream_ordering
        for s in events_repo.state_events_of_key(conn, room_id, "m.room.member", user_id)
        if _membership(s) == "join"
    ]
    cache: dict[int, _At] = {}

    def at(group: int) -> _At:
        if group not in cache:
            cache[group] = _at(conn, group, user_id)
        return cache[group]

    visible: list[StoredEvent] = []
    for s in events:
        own_membership = (s.pdu.get("type") == "m.room.member"
                          and s.pdu.get("state_key") == user_id)
        if own_membership:
            # As Synapse: users always see their own membership changes, so a
            # rejected invite, kick or ban is never invisible to its target.
            visible.append(s)
            continue
        allowed = _allowed(at(s.state_after), s.stream_ordering, joins)
        special = s.pdu.get("type") == "m.room.history_visibility"
        if not allowed and special:
            allowed = _allowed(at(s.state_before), s.stream_ordering, joins)
        if allowed:
            visible.append(s)
    return visible


def joined_at(conn: apsw.Connection, user_id: str, event_ids: Sequence[str]) -> set[str]:
    """The events (of those given) at which `user_id` was joined to the room."""
    stored = events_repo.get_events(conn, list(event_ids))
    return {event_id for event_id, s in stored.items()
            if _at(conn, s.state_after, user_id).membership == "join"}


class Visibility:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def filter(self, user_id: str, room_id: str, events: Sequence[StoredEvent]
                     ) -> list[StoredEvent]:
        """The events (order kept) that `user_id` may see."""
        if not events:
            return []
        return await self._db.read(lambda conn: visible_events(conn, user_id, room_id, events))
