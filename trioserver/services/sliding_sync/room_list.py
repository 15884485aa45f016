"""The server-side room list of one user: which rooms, in what order, and list filters.

MSC4186: the list holds rooms the user is joined to, invited to, knocked on, was kicked or
banned from (banned only if they had joined), and rooms they left themselves only if this
connection was already sent them. Ordered by recent activity (newest event for joined rooms,
the membership event otherwise), never by bump_stamp. Invites from and knocks on rooms of other
servers that this server is not in come from `remote_invites`, with the stripped state the
inviting server sent; once answered they show as left to connections that had them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import apsw

from trioserver.services.account_data import tags_of
from trioserver.services.events.event import Event, MalformedEvent
from trioserver.services.events.room_versions import get_room_version
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.sliding_sync.activity import RoomActivity
from trioserver.services.sliding_sync.model import RoomFilters
from trioserver.storage.db import Database
from trioserver.storage.repositories import account_data as ad_repo
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import remote_invites as invites_repo
from trioserver.storage.repositories import room_list as list_repo
from trioserver.storage.repositories import rooms as rooms_repo

MEMBERSHIP_CACHE_USERS = 10_000


class Entry(NamedTuple):
    """One room of the list (a tuple: thousands are made per pass)."""

    room_id: str
    membership: str
    member_event: Event
    member_pos: int
    activity: int
    bump_stamp: int
    # A room of another server this server is not in: its stripped state (the invite's or the
    # knock's); None for rooms with local state.
    remote_state: tuple[dict[str, Any], ...] | None = None


@dataclass
class RoomList:
    upto: int
    entries: list[Entry]  # the list, newest activity first
    by_id: dict[str, Entry]
    dm_rooms: frozenset[str]
    # Every room the user has a membership in that they may be shown (for subscriptions).
    visible: dict[str, Entry]
    _tags: dict[str, frozenset[str]] | None = field(default=None, repr=False)
    _flags: dict[str, tuple[str | None, bool]] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Snapshot:
    upto: int
    memberships: list[events_repo.MembershipRow]
    forgotten: set[str]
    direct: dict[str, Any] | None
    remote: list[invites_repo.RemoteInvite]


class RoomLister:
    def __init__(self, db: Database, cache: RoomCache, activity: RoomActivity) -> None:
        self._db = db
        self._cache = cache
        self._activity = activity
        # user -> their membership rows, dropped by on_membership when one changes: a long-poll
        # pass then costs no read proportional to the number of rooms.
        self._memberships: OrderedDict[str, list[events_repo.MembershipRow]] = OrderedDict()
        self._changes = 0

    def on_membership(self, room_id: str, user_id: str, membership: str) -> None:
        """Appender listener: a member event for `user_id` was committed."""
        self._memberships.pop(user_id, None)
        self._changes += 1

    async def build(self, user_id: str, previously_sent: Collection[str]) -> RoomList:
        cached = self._memberships.get(user_id)
        changes = self._changes

        def txn(conn: apsw.Connection) -> _Snapshot:
            rows = cached if cached is not None else events_repo.user_memberships(conn, user_id)
            return _Snapshot(events_repo.max_stream_ordering(conn), rows,
                             rooms_repo.forgotten(conn, user_id),
                             ad_repo.get(conn, user_id, ad_repo.GLOBAL, "m.direct"),
                             invites_repo.of_user(conn, user_id))

        snap = await self._db.read(txn)
        if cached is not None:
            if user_id in self._memberships:  # on_membership may have dropped it meanwhile
                self._memberships.move_to_end(user_id)
        elif changes == self._changes:
            # Kept only if no membership changed while reading (it could be missing).
            self._memberships[user_id] = snap.memberships
            while len(self._memberships) > MEMBERSHIP_CACHE_USERS:
                self._memberships.popitem(last=False)
        rows = [m for m in snap.memberships if m.stream_ordering <= snap.upto
                and m.membership and m.room_id not in snap.forgotten]
        events = await self._cache.events(m.event_id for m in rows)
        activity = await self._activity.of(
            m.room_id for m in rows if m.membership == "join")
        visible: dict[str, Entry] = {}
        listed: list[Entry] = []
        for m in rows:
            event = events.get(m.event_id)
            if event is None:
                continue
            membership = m.membership or "leave"
            if membership == "join":
                last, bump = activity[m.room_id]
                entry = Entry(m.room_id, membership, event, m.stream_ordering,
                              max(last, m.stream_ordering), bump or m.stream_ordering)
            else:
                entry = Entry(m.room_id, membership, event, m.stream_ordering,
                              m.stream_ordering, m.stream_ordering)
            if membership == "ban" and not await self._had_joined(m.room_id, user_id,
                                                                  m.stream_ordering):
                continue  # banned without ever joining: not the user's room
            visible[m.room_id] = entry
            self_left = membership == "leave" and event.sender == user_id
            if self_left and m.room_id not in previously_sent:
                continue
            listed.append(entry)
        for entry in _remote_entries(snap, visible.keys(), previously_sent):
            if entry.membership != "leave":
                visible[entry.room_id] = entry
            listed.append(entry)
        listed.sort(key=_newest_first)
        return RoomList(snap.upto, listed, {e.room_id: e for e in listed},
                        frozenset(_dm_rooms(snap.direct)), visible)

    async def _had_joined(self, room_id: str, user_id: str, before: int) -> bool:
        ids = await self._db.read(
            lambda c: list_repo.member_event_ids_of(c, room_id, user_id, before))
        earlier = await self._cache.events(ids)
        return any(e.membership == "join" for e in earlier.values())

    # -- filters -------------------------------------------------------------------------

    async def filtered(self, user_id: str, rooms: RoomList, flt: RoomFilters) -> list[Entry]:
        """The list's entries that pass `flt`, in list order."""
        entries = rooms.entries
        if flt.is_invited is not None:
            entries = [e for e in entries if (e.membership == "invite") == flt.is_invited]
        if flt.is_dm is not None:
            entries = [e for e in entries if (e.room_id in rooms.dm_rooms) == flt.is_dm]
        if flt.is_encrypted is not None or flt.room_types is not None or \
                flt.not_room_types is not None:
            flags = await self._flags(rooms)
            if flt.is_encrypted is not None:
                entries = [e for e in entries if flags[e.room_id][1] == flt.is_encrypted]
            if flt.room_types is not None:
                entries = [e for e in entries if flags[e.room_id][0] in flt.room_types]
            if flt.not_room_types is not None:
                entries = [e for e in entries
                           if flags[e.room_id][0] not in flt.not_room_types]
        if flt.tags is not None or flt.not_tags is not None:
            tags = await self._tags(user_id, rooms)
            if flt.tags is not None:
                wanted = set(flt.tags)
                entries = [e for e in entries if tags.get(e.room_id, frozenset()) & wanted]
            if flt.not_tags is not None:
                unwanted = set(flt.not_tags)
                entries = [e for e in entries
                           if not tags.get(e.room_id, frozenset()) & unwanted]
        if flt.spaces is not None:
            children = await self._space_children(flt.spaces, rooms)
            entries = [e for e in entries if e.room_id in children]
        return entries

    async def _flags(self, rooms: RoomList) -> dict[str, tuple[str | None, bool]]:
        """room -> (room type from its create event, whether it is encrypted)."""
        if rooms._flags is None:
            rooms._flags = await self._activity.flags(
                e.room_id for e in rooms.entries if e.remote_state is None)
            rooms._flags.update({e.room_id: _stripped_flags(e.remote_state)
                                 for e in rooms.entries if e.remote_state is not None})
        return rooms._flags

    async def _tags(self, user_id: str, rooms: RoomList) -> dict[str, frozenset[str]]:
        if rooms._tags is None:
            ids = [e.room_id for e in rooms.entries]
            rows = await self._db.read(
                lambda c: ad_repo.changed(c, user_id, None, ad_repo.position(c), ids))
            rooms._tags = {r.room_id: frozenset(tags_of(r.content)) for r in rows
                           if r.type == "m.tag" and r.room_id != ad_repo.GLOBAL}
        return rooms._tags

    async def _space_children(self, spaces: Iterable[str], rooms: RoomList) -> set[str]:
        """Rooms named by valid m.space.child state of the given spaces the user is in."""
        children: set[str] = set()
        for space_id in spaces:
            entry = rooms.visible.get(space_id)
            if entry is None or entry.membership != "join":
                continue  # unknown spaces, or spaces the user is not in, are ignored
            pairs = await self._db.read(partial(list_repo.space_child_ids, space_id=space_id))
            events = await self._cache.events(event_id for _, event_id in pairs)
            for child, event_id in pairs:
                event = events.get(event_id)
                via = event.content.get("via") if event is not None else None
                if isinstance(via, list) and via:
                    children.add(child)
        return children


def _remote_entries(snap: _Snapshot, local: Collection[str], previously_sent: Collection[str]
                    ) -> list[Entry]:
    """Entries for invites and knocks from rooms of other servers: open ones, and answered ones
    (as "leave") for a connection that was sent them. A room with local state is left to it."""
    out: list[Entry] = []
    for row in snap.remote:
        if row.room_id in local or row.room_id in snap.forgotten or row.list_pos > snap.upto:
            continue
        if not row.active and row.room_id not in previously_sent:
            continue
        version = get_room_version(row.room_version)
        if version is None:
            continue
        try:
            event = Event.from_pdu(dict(row.pdu), version, known_event_id=row.event_id)
        except MalformedEvent:
            continue
        own: dict[str, Any] = {k: row.pdu[k] for k in ("type", "state_key", "sender", "content")
               if k in row.pdu}
        membership = row.membership if row.active else "leave"
        out.append(Entry(row.room_id, membership, event, row.list_pos, row.list_pos,
                         row.list_pos, remote_state=(*row.invite_state, own)))
    return out


def _stripped_flags(stripped: tuple[dict[str, Any], ...]) -> tuple[str | None, bool]:
    """(room type, encrypted) as far as a remote room's stripped state tells."""
    room_type: str | None = None
    encrypted = False
    for event in stripped:
        if event.get("state_key") != "":
            continue
        content = event.get("content")
        if event.get("type") == "m.room.create" and isinstance(content, dict):
            value = content.get("type")
            room_type = value if isinstance(value, str) else None
        elif event.get("type") == "m.room.encryption":
            encrypted = True
    return room_type, encrypted


def _newest_first(entry: Entry) -> tuple[int, str]:
    return -entry.activity, entry.room_id


def _dm_rooms(direct: dict[str, Any] | None) -> set[str]:
    rooms: set[str] = set()
    for value in (direct or {}).values():
        if isinstance(value, list):
            rooms.update(r for r in value if isinstance(r, str))
    return rooms
