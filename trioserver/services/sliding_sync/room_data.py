"""One room of a sliding sync response, and what the connection then has of it.

Joined and left rooms get a timeline (new events since the room was last sent, or the newest
`timeline_limit` on first sight or when the limit grew), the matching state (all of it first,
then changes), lazy-loaded members, name/avatar/heroes and member counts. Invites and knocks
(and rejected ones) get only stripped state: the user cannot see the room yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.services.events.event import Event
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.reads import RoomReader, make_token
from trioserver.services.sliding_sync import required_state as rs_rules
from trioserver.services.sliding_sync.connections import RoomSent
from trioserver.services.sliding_sync.model import RequiredState, RoomConfig
from trioserver.services.sliding_sync.room_list import Entry
from trioserver.services.sync.rooms import RoomSyncer, Window
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import room_list as list_repo
from trioserver.storage.repositories.events import StateMap

MAX_HEROES = 5
ALL_OF_IT = 10**9  # "the client has every event of the room"
MEMBER = "m.room.member"


@dataclass(frozen=True)
class RoomRequest:
    """What to build for one room."""

    entry: Entry
    config: RoomConfig
    sent: RoomSent | None
    upto: int  # the response's room-event position
    previous_pos: int  # the position the client synced from (0 on a new connection)
    is_dm: bool
    lists: tuple[str, ...]


class RoomDataBuilder:
    def __init__(self, db: Database, cache: RoomCache, reader: RoomReader,
                 syncer: RoomSyncer) -> None:
        self._db = db
        self._cache = cache
        self._reader = reader
        self._syncer = syncer

    async def build(self, user_id: str, device_id: str, req: RoomRequest
                    ) -> tuple[dict[str, Any], RoomSent]:
        entry = req.entry
        out: dict[str, Any] = {"membership": entry.membership, "bump_stamp": entry.bump_stamp}
        if req.lists:
            out["lists"] = list(req.lists)
        if entry.remote_state is not None:
            # A room of another server we are not in: only what its invite or knock carried.
            if req.sent is None or req.sent.membership != entry.membership:
                out["initial"] = True
            out["stripped_state"] = list(entry.remote_state)
            return out, RoomSent(entry.member_pos, req.config, entry.membership,
                                 timeline_have=ALL_OF_IT, is_dm=req.is_dm)
        if entry.membership in ("invite", "knock") or (
                entry.membership == "leave" and await self._never_joined(user_id, entry)):
            if req.sent is None or req.sent.membership != entry.membership:
                out["initial"] = True
            out["stripped_state"] = await self._syncer.stripped_room_state(
                entry.room_id, entry.member_pos, entry.member_event.event_id)
            # No timeline to expand: "has all of it", so the room is not sent again (and a
            # long-poll not woken) until the membership or the config changes.
            return out, RoomSent(entry.member_pos, req.config, entry.membership,
                                 timeline_have=ALL_OF_IT, is_dm=req.is_dm)
        return await self._joined_or_left(user_id, device_id, req, out)

    async def _never_joined(self, user_id: str, entry: Entry) -> bool:
        """A left room the user was never in: a rejected invite or a withdrawn knock."""
        before = await self._db.read(lambda c: events_repo.membership_at(
            c, entry.room_id, user_id, entry.member_pos - 1))
        return before in ("invite", "knock", None)

    async def _joined_or_left(self, user_id: str, device_id: str, req: RoomRequest,
                              out: dict[str, Any]) -> tuple[dict[str, Any], RoomSent]:
        entry, config, sent = req.entry, req.config, req.sent
        room_id = entry.room_id
        end = req.upto if entry.membership == "join" else entry.member_pos
        initial = sent is None or sent.membership in ("invite", "knock")
        limit = config.timeline_limit
        expanded = not initial and sent is not None and limit > sent.timeline_have
        since = None if initial or expanded or sent is None else sent.events_pos
        timeline, limited = await self._syncer.timeline(user_id, Window(room_id, since, end),
                                                        limit)
        events = [e for _, e in timeline]
        since_pos = None if initial or sent is None else sent.events_pos
        state_now, changed, counts = await self._db.read(
            lambda c: _state_and_counts(c, room_id, end, since_pos))
        rs = config.required_state

        if initial or sent is None:
            keys = {k for k in state_now if self._wanted(rs, k)}
            known_members: frozenset[tuple[str, str]] = frozenset()
        else:
            keys = {k for k in changed if self._wanted(rs, k)}
            if rs.lazy_members and not limited:
                # Non-gappy: every membership change since the last sync, so the client can
                # keep its member cache (MSC4186, lazy-loaded memberships, point 3).
                keys |= {k for k in changed if k[0] == MEMBER}
            if rs != sent.config.required_state:
                keys |= {k for k in state_now
                         if self._wanted(rs, k) and not self._wanted(sent.config.required_state, k)}
            known_members = sent.members
        lazy_sent: set[tuple[str, str]] = set()
        if rs.lazy_members:
            wanted_users = {e.sender for e in events} | {
                e.state_key for e in events if e.type == MEMBER and e.state_key is not None}
            for user in wanted_users:
                event_id = state_now.get((MEMBER, user))
                if event_id is not None and (user, event_id) not in known_members:
                    keys.add((MEMBER, user))
                    lazy_sent.add((user, event_id))
        # Unlike /v3/sync's `state`, required_state is the current state even when its event
        # is also in the timeline: an `initial` result replaces the client's room data, and
        # Synapse (which clients are built against) sends both.
        present = {k: state_now[k] for k in keys if k in state_now}
        stubs = sorted(k for k in keys if k not in state_now)
        state_events = await self._cache.events(present.values())
        state_list = [state_events[v] for v in present.values() if v in state_events]
        # One formatting pass (one read) for state and timeline together.
        formatted = await self._reader.format(state_list + events, (user_id, device_id))
        required: list[dict[str, Any]] = [_no_room_id(e) for e in formatted[:len(state_list)]]
        required += [{"type": t, "state_key": sk} for t, sk in stubs]

        if initial:
            out["initial"] = True
        if expanded:
            out["expanded_timeline"] = True
        if required or initial:
            out["required_state"] = required
        out["timeline"] = [_no_room_id(e) for e in formatted[len(state_list):]]
        out["limited"] = limited
        out["prev_batch"] = make_token(timeline[0][0].stream_ordering - 1 if timeline else end)
        out["num_live"] = sum(1 for stored, _ in timeline
                              if req.previous_pos and stored.stream_ordering > req.previous_pos)
        await self._meta(user_id, state_now, changed, counts, initial, out)
        if initial and req.is_dm:
            out["is_dm"] = True
        elif not initial and sent is not None and req.is_dm != sent.is_dm:
            out["is_dm"] = req.is_dm

        if initial or expanded or limited:
            have = ALL_OF_IT if not limited else len(timeline)
        else:
            have = (sent.timeline_have if sent is not None else 0) + len(timeline)
        members = (known_members if not initial else frozenset()) | frozenset(lazy_sent) | {
            (k[1], v) for k, v in present.items() if k[0] == MEMBER}
        return out, RoomSent(end, config, entry.membership, frozenset(members), have,
                             req.is_dm)

    @staticmethod
    def _wanted(rs: RequiredState, key: tuple[str, str]) -> bool:
        # With lazy_members a member matches only when a pattern names it; the others come
        # from the timeline (below).
        return rs_rules.matches(rs, key[0], key[1])

    async def _meta(self, user_id: str, state: StateMap,
                    changed: dict[tuple[str, str], str | None],
                    counts: tuple[int, int] | None, initial: bool,
                    out: dict[str, Any]) -> None:
        """name, avatar, heroes and member counts: all on first sight, then what changed."""
        ids = [state[k] for k in (("m.room.name", ""), ("m.room.avatar", "")) if k in state]
        events = await self._cache.events(ids)
        name = _content_str(events, state.get(("m.room.name", "")), "name")
        avatar = _content_str(events, state.get(("m.room.avatar", "")), "url")
        # First sight: only what is set. Later: what changed, null when it was removed.
        if (initial and name is not None) or (not initial and ("m.room.name", "") in changed):
            out["name"] = name
        if (initial and avatar is not None) or (
                not initial and ("m.room.avatar", "") in changed):
            out["avatar"] = avatar
        if counts is not None:  # first sight, or the members changed
            joined, invited = counts
            out["joined_count"] = joined
            out["invited_count"] = invited
            if name is None:
                out["heroes"] = await self._heroes(user_id, state)

    async def _heroes(self, user_id: str, state: StateMap) -> list[dict[str, Any]]:
        members = await self._cache.events(v for k, v in state.items() if k[0] == MEMBER)
        by_state: dict[str, list[Event]] = {"join": [], "invite": [], "leave": []}
        for event in sorted(members.values(), key=lambda e: e.state_key or ""):
            if event.state_key == user_id or event.membership not in by_state:
                continue
            by_state[event.membership or "leave"].append(event)
        picked = (by_state["join"] + by_state["invite"] + by_state["leave"])[:MAX_HEROES]
        heroes: list[dict[str, Any]] = []
        for event in picked:
            hero: dict[str, Any] = {"user_id": event.state_key}
            for field_name, key in (("displayname", "displayname"),
                                    ("avatar_url", "avatar_url")):
                value = event.content.get(key)
                if isinstance(value, str):
                    hero[field_name] = value
            heroes.append(hero)
        return heroes


def _state_at(conn: apsw.Connection, room_id: str, position: int) -> StateMap:
    last = events_repo.last_event_at_or_before(conn, room_id, position)
    return events_repo.load_state_group(conn, last.state_after) if last else {}


def _state_and_counts(conn: apsw.Connection, room_id: str, end: int, since: int | None
                      ) -> tuple[StateMap, dict[tuple[str, str], str | None],
                                 tuple[int, int] | None]:
    """In one snapshot: the state at `end`, what changed since `since` (all of it on first
    sight) and, when members are new or changed, the (joined, invited) counts."""
    now = _state_at(conn, room_id, end)
    if since is None:
        changed: dict[tuple[str, str], str | None] = dict(now)
    else:
        before = _state_at(conn, room_id, since)
        changed = {k: now.get(k) for k in set(before) | set(now) if before.get(k) != now.get(k)}
    members_changed = since is None or any(k[0] == MEMBER for k in changed)
    counts = list_repo.member_counts(conn, room_id) if members_changed else None
    return now, changed, counts


def _content_str(events: dict[str, Event], event_id: str | None, key: str) -> str | None:
    if event_id is None or event_id not in events:
        return None
    value = events[event_id].content.get(key)
    return value if isinstance(value, str) and value else None


def _no_room_id(event: dict[str, Any]) -> dict[str, Any]:
    event.pop("room_id", None)
    return event

