"""Events from other servers into a room we have: the checks on receipt, then persistence.

For one PDU, in the order the Server-Server spec gives (signatures and the content hash are
checked before this, by the federation layer, as they need remote keys):
  1. its prev_events must be known (else the caller fetches them, `get_missing_events`);
  2. the state before it: the state after its one prev event, or the resolution of the states
     after each of them;
  3. auth against its auth events, then against the state before it: failing either rejects;
  4. soft-fail against the room's current state: the event is kept out of the timeline, the
     forward extremities and the current state, and reported as soft-failed, but stored (its
     PDU as an outlier, its state groups beside it) so an event that later builds on it is
     checked against the state after it like any other;
  5. persisted: state groups before/after, the new forward extremities, and the current state,
     resolved when the room now has several extremities.
All of it under the room's serializer, so it never interleaves with a local append.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import apsw

from trioserver.concurrency import KeyedSerializer
from trioserver.services.events import auth_rules, state_res
from trioserver.services.events.auth_events import check_auth_events
from trioserver.services.events.auth_numbers import AuthError
from trioserver.services.events.event import Event
from trioserver.services.rooms.appender import Appender
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.sync.streams import room_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo
from trioserver.storage.repositories.events import StateMap, StoredEvent

log = logging.getLogger(__name__)

CREATE = ("m.room.create", "")
MAX_AUTH_CHAIN = 50_000


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    MISSING_PREVS = "missing_prev_events"
    MISSING_AUTH = "missing_auth_events"
    REJECTED = "rejected"
    SOFT_FAILED = "soft_failed"
    UNKNOWN_ROOM = "unknown_room"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str = ""
    missing: tuple[str, ...] = ()
    stream_ordering: int = -1


class RemoteEvents:
    def __init__(self, db: Database, cache: RoomCache, serializer: KeyedSerializer,
                 appender: Appender) -> None:
        self._db = db
        self._cache = cache
        self._serializer = serializer
        self._appender = appender

    async def accept(self, event: Event, *,
                     prev_states: Mapping[str, StateMap] | None = None) -> Result:
        """Check and persist one received PDU (signatures and hashes already checked).

        `prev_states` gives, for prev_events we do not have (a gap we could not fill), the
        state after each of them as another server reported it (`/state`): the event is then
        checked against the resolution of those states and the ones we know."""
        async with self._serializer.hold(room_key(event.room_id)):
            view = await self._cache.room(event.room_id)
            if view is None:
                return Result(Outcome.UNKNOWN_ROOM, "this server is not in the room")
            known = await self._db.read(lambda c: _known(c, [event.event_id,
                                                               *event.prev_events]))
            if event.event_id in known:
                if known[event.event_id].stream_ordering == 0:
                    return Result(Outcome.SOFT_FAILED, "soft-failed when first received")
                return Result(Outcome.DUPLICATE)
            missing = tuple(p for p in event.prev_events if p not in known
                            and (prev_states is None or p not in prev_states))
            if missing:
                return Result(Outcome.MISSING_PREVS, "unknown prev_events", missing)
            prevs = [known[p] for p in event.prev_events if p in known]
            gap_states = [prev_states[p] for p in event.prev_events
                          if p not in known and prev_states is not None]
            try:
                before = await self._state_before(view, prevs, gap_states)
                await self._check_auth(view, event, before)
            except AuthError as e:
                return Result(Outcome.REJECTED, str(e))
            except _MissingAuth as e:
                return Result(Outcome.MISSING_AUTH, "unknown auth_events", e.missing)
            except _ResolutionFailed as e:
                return Result(Outcome.REJECTED, f"state resolution failed: {e}")
            try:
                await self._check_against(view, event, view.state)
            except AuthError as e:
                await self._keep_soft_failed(event, prevs, before)
                return Result(Outcome.SOFT_FAILED, str(e))
            try:
                ordering = await self._persist(view, event, prevs, before)
            except _ResolutionFailed as e:
                return Result(Outcome.REJECTED, f"state resolution failed: {e}")
            return Result(Outcome.ACCEPTED, stream_ordering=ordering)

    async def state_and_auth_chain(self, room_id: str, event: Event
                                   ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """For send_join: the room's state before `event` (the join) and the auth chain of
        that state and the event, as PDUs."""
        stored = await self._db.read(lambda c: events_repo.get_events(c, [event.event_id]))
        if event.event_id not in stored:
            raise AuthError("send_join", "the join was not persisted")
        before = await self._db.read(
            lambda c: events_repo.load_state_group(c, stored[event.event_id].state_before))
        with_chains = await self._with_auth_chains(set(before.values()) | {event.event_id})
        state_ids = set(before.values())
        chain = auth_chain_of([*state_ids, event.event_id], with_chains) - state_ids
        return ([dict(with_chains[e].pdu) for e in sorted(state_ids) if e in with_chains],
                [dict(with_chains[e].pdu) for e in sorted(chain) if e in with_chains])

    async def store_outliers(self, room_id: str, events: Mapping[str, Event]) -> None:
        """Keep events we need for auth and state but not in the timeline (gap state)."""
        known = await self._db.read(lambda c: events_repo.get_events(c, list(events)))

        def write(conn: apsw.Connection) -> None:
            for event_id, event in events.items():
                if event_id not in known:
                    events_repo.insert_outlier(conn, event_id, room_id, dict(event.pdu))

        await self._db.write(write)
        for event in events.values():
            self._cache.put_event(event)

    # -- state -----------------------------------------------------------------------------

    async def _state_before(self, view: RoomView, prevs: Sequence[StoredEvent],
                            gap_states: Sequence[StateMap] = ()) -> StateMap:
        groups = [p.state_after for p in prevs]
        states = await self._db.read(
            lambda c: [events_repo.load_state_group(c, g) for g in dict.fromkeys(groups)])
        states = [*states, *gap_states]
        if len(states) == 1:
            return states[0]
        return await self._resolve(view, states)

    async def _resolve(self, view: RoomView, states: Sequence[StateMap],
                       new: Event | None = None) -> dict[tuple[str, str], str]:
        # v12: the create event is in no auth_events list, but resolution needs it.
        ids = {e for s in states for e in s.values()} | {view.create_event_id}
        if new is not None:  # not stored yet
            ids.discard(new.event_id)
            ids.update(new.auth_events)
        events = await self._with_auth_chains(ids)
        if new is not None:
            events[new.event_id] = new
        try:
            return state_res.resolve_state(view.room_version, states, events)
        except state_res.StateResolutionError as e:
            raise _ResolutionFailed(str(e)) from None

    async def _with_auth_chains(self, ids: set[str]) -> dict[str, Event]:
        """The events and their full auth chains (state resolution needs them all)."""
        out: dict[str, Event] = {}
        todo = set(ids)
        while todo and len(out) < MAX_AUTH_CHAIN:
            found = await self._cache.events(todo)
            out.update(found)
            todo = {a for e in found.values() for a in e.auth_events if a not in out}
        return out

    # -- auth ------------------------------------------------------------------------------

    async def _check_auth(self, view: RoomView, event: Event, before: StateMap) -> None:
        auth = await self._cache.events(event.auth_events)
        missing = tuple(a for a in event.auth_events if a not in auth)
        if missing:
            raise _MissingAuth(missing)
        create = await self._create(view)
        try:
            auth_state = check_auth_events(event, auth.values(), create_event=create)
        except ValueError as e:
            raise AuthError("auth_events", str(e)) from None
        auth_rules.check_event(event, auth_state, create)
        await self._check_against(view, event, before)

    async def _check_against(self, view: RoomView, event: Event, state: StateMap) -> None:
        wanted = auth_rules.auth_types_for_event(event.type, event.state_key, event.sender,
                                                 event.content, view.room_version)
        keys = [CREATE, *wanted]
        found = await self._cache.events(state[k] for k in keys if k in state)
        auth_state = {k: found[state[k]] for k in keys if k in state and state[k] in found}
        auth_rules.check_event(event, auth_state, await self._create(view))

    async def _create(self, view: RoomView) -> Event | None:
        return (await self._cache.events([view.create_event_id])).get(view.create_event_id)

    # -- persistence -----------------------------------------------------------------------

    async def _keep_soft_failed(self, event: Event, prevs: Sequence[StoredEvent],
                                before: StateMap) -> None:
        def write(conn: apsw.Connection) -> None:
            before_group, after_group = _state_groups(conn, event, prevs, before)
            events_repo.insert_soft_failed(conn, event.event_id, event.room_id,
                                           dict(event.pdu), before_group, after_group)

        await self._db.write(write)
        self._cache.put_event(event)

    async def _persist(self, view: RoomView, event: Event, prevs: Sequence[StoredEvent],
                       before: StateMap) -> int:
        after = dict(before)
        if event.state_key is not None:
            after[event.state_tuple] = event.event_id
        extremities = [e for e in view.extremities if e not in event.prev_events]
        extremities.append(event.event_id)
        if len(extremities) == 1:
            current: StateMap = after
        else:
            others = await self._db.read(lambda c: _states_after(c, extremities[:-1]))
            current = await self._resolve(view, [after, *others], event)
        old_current = dict(view.state)

        def write(conn: apsw.Connection) -> tuple[int, int]:
            before_group, after_group = _state_groups(conn, event, prevs, before)
            ordering = events_repo.insert_event(
                conn, event.event_id, event.room_id, event.type, event.state_key, event.sender,
                event.depth, event.origin_server_ts, before_group, after_group, dict(event.pdu))
            if event.redacts is not None:
                events_repo.add_redaction(conn, event.redacts, event.event_id)
            events_repo.set_forward_extremities(conn, event.room_id, extremities)
            _replace_current_state(conn, event.room_id, old_current, current)
            if current is after:
                rooms_repo.clear_current_state_group(conn, event.room_id)
                return ordering, after_group
            current_group = _group(conn, event.room_id, after_group, after, current)
            rooms_repo.set_current_state_group(conn, event.room_id, current_group)
            return ordering, current_group

        ordering, current_group = await self._db.write(write)
        view.state = dict(current)
        view.state_group = current_group
        view.extremities = extremities
        view.depth = max(view.depth, event.depth)
        self._appender.announce(view, [event], [ordering])
        return ordering


def auth_chain_of(event_ids: list[str], events: Mapping[str, Event]) -> set[str]:
    """Every event reachable through auth_events from `event_ids` (not including them)."""
    seen: set[str] = set()
    todo = [a for e in event_ids if e in events for a in events[e].auth_events]
    while todo:
        event_id = todo.pop()
        if event_id in seen or event_id not in events:
            continue
        seen.add(event_id)
        todo.extend(events[event_id].auth_events)
    return seen


class _ResolutionFailed(Exception):
    pass


class _MissingAuth(Exception):
    def __init__(self, missing: tuple[str, ...]) -> None:
        super().__init__(f"missing auth events {missing}")
        self.missing = missing


def _known(conn: apsw.Connection, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
    """The events among `event_ids` we hold: in the room's graph, or soft-failed (stream
    position 0)."""
    found = events_repo.get_events(conn, event_ids)
    found.update(events_repo.get_soft_failed(conn, [e for e in event_ids if e not in found]))
    return found


def _state_groups(conn: apsw.Connection, event: Event, prevs: Sequence[StoredEvent],
                  before: StateMap) -> tuple[int, int]:
    """The state groups before and after `event` (new ones only where the state differs)."""
    base = prevs[0] if prevs else None
    if base is None:  # every prev event is beyond a gap: a snapshot of `before`
        before_group = events_repo.create_state_group(
            conn, event.room_id, None, {}, len(before), lambda: dict(before))
    else:
        base_state = events_repo.load_state_group(conn, base.state_after)
        before_group = base.state_after if before == base_state else _group(
            conn, event.room_id, base.state_after, base_state, before)
    if event.state_key is None:
        return before_group, before_group
    after = {**before, event.state_tuple: event.event_id}
    return before_group, _group(conn, event.room_id, before_group, before, after)


def _states_after(conn: apsw.Connection, event_ids: Sequence[str]) -> list[StateMap]:
    stored = events_repo.get_events(conn, event_ids)
    return [events_repo.load_state_group(conn, stored[e].state_after) for e in event_ids
            if e in stored]


def _group(conn: apsw.Connection, room_id: str, base_group: int, base: Mapping[
        tuple[str, str], str], state: Mapping[tuple[str, str], str]) -> int:
    """A state group for `state`, stored as a delta on `base_group` (whose state is `base`)."""
    delta = {k: v for k, v in state.items() if base.get(k) != v}
    if any(k not in state for k in base):
        # Keys can only be removed by a snapshot: deltas only add or replace.
        return events_repo.create_state_group(conn, room_id, None, {}, len(state),
                                              lambda: dict(state))
    return events_repo.create_state_group(conn, room_id, base_group, delta, len(state),
                                          lambda: dict(state))


def _replace_current_state(conn: apsw.Connection, room_id: str, old: StateMap,
                           new: StateMap) -> None:
    for (event_type, state_key), event_id in new.items():
        if old.get((event_type, state_key)) != event_id:
            membership = None
            if event_type == "m.room.member":
                stored = events_repo.get_events(conn, [event_id]).get(event_id)
                content = stored.pdu.get("content") if stored is not None else None
                value = content.get("membership") if isinstance(content, dict) else None
                membership = value if isinstance(value, str) else None
            events_repo.set_current_state(conn, room_id, event_type, state_key, event_id,
                                          membership)
    for event_type, state_key in old:
        if (event_type, state_key) not in new:
            events_repo.delete_current_state(conn, room_id, event_type, state_key)
