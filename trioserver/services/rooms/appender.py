"""The append pipeline: build, authorise, persist and announce local events.

Everything for one room runs under that room's key in the `KeyedSerializer` and commits in one
transaction: prev_events and depth come from the room's forward extremities, auth_events from its
current state, the event is checked against that state by the auth rules, and the event, its state
group, the current state, the extremities and the transaction ID are written together. Two senders
in one room therefore can never fork the DAG or lose an event, and a retried transaction ID gets
back the event it created the first time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import apsw

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.errors import Codes, MatrixError
from trioserver.services.clock import now_ms
from trioserver.services.events import auth_rules, canonical_json
from trioserver.services.events.event import Event
from trioserver.services.events.room_versions import RoomVersion
from trioserver.services.events.signing import SigningKey, hash_and_sign_event
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.sync.streams import room_key, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo

MAX_EVENT_BYTES = 65_536
MAX_PREV_EVENTS = 10

log = logging.getLogger(__name__)

class PreparedWrite(Protocol):
    """Extra rows derived from a batch of events, written in the batch's own transaction."""

    def write(self, conn: apsw.Connection, orderings: Sequence[int]) -> None: ...

    def committed(self) -> None: ...


MembershipListener = Callable[[str, str, str], None]

# Called with each built batch (room ID, the state after it, the events) before it is
# written, while the room's serializer is held; may return rows to write with the batch.
CommitHook = Callable[[str, events_repo.StateMap, Sequence[Event]],
                      Awaitable[PreparedWrite | None]]


@dataclass(frozen=True)
class Draft:
    """An event a local user wants to send, before it is built."""

    type: str
    sender: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None


# Given the built event and the room, returns it with another server's signature added.
Countersign = Callable[[Event, RoomView], Awaitable[Event]]


@dataclass(frozen=True)
class TxnKey:
    """A client transaction: retrying the same one returns the event it first created."""

    user_id: str
    device_id: str
    scope: str  # the request path it was used on (txn ids are per endpoint and room)
    txn_id: str


@dataclass(frozen=True)
class Appended:
    event: Event
    stream_ordering: int


class Appender:
    def __init__(self, *, server_name: str, signing_key: SigningKey, db: Database,
                 cache: RoomCache, serializer: KeyedSerializer, notifier: Notifier,
                 commit_hook: CommitHook | None = None) -> None:
        self._server_name = server_name
        self._key = signing_key
        self._db = db
        self._cache = cache
        self._serializer = serializer
        self._notifier = notifier
        self._commit_hook = commit_hook
        self._membership_listeners: list[MembershipListener] = []
        self._event_listeners: list[Callable[[Event, int], None]] = []
        self._last_create_ts = 0

    # -- building -------------------------------------------------------------------------

    def _create_ts(self) -> int:
        """origin_server_ts for a v12 create event, unique on this server.

        The room ID is the create event's hash, so two rooms created by one user with the same
        content in the same millisecond would otherwise get the same ID.
        """
        ts = max(now_ms(), self._last_create_ts + 1)
        self._last_create_ts = ts
        return ts

    def _build(self, draft: Draft, view: RoomView | None, version: RoomVersion,
               state_events: dict[tuple[str, str], Event], create: Event | None) -> Event:
        """Build and sign one event on top of `view` (None: this is the create event)."""
        pdu: dict[str, Any] = {
            "type": draft.type,
            "sender": draft.sender,
            "content": draft.content,
            "origin_server_ts": self._create_ts() if view is None else now_ms(),
        }
        if draft.state_key is not None:
            pdu["state_key"] = draft.state_key
        if draft.redacts is not None:
            if version.redacts_in_content:
                pdu["content"] = {**draft.content, "redacts": draft.redacts}
            else:
                pdu["redacts"] = draft.redacts
        if view is None:
            pdu.update(depth=1, prev_events=[], auth_events=[])
            if not version.room_id_is_create_hash:
                raise AssertionError("older room versions get their room_id before the create")
        else:
            pdu["room_id"] = view.room_id
            pdu["depth"] = view.depth + 1
            pdu["prev_events"] = view.extremities[-MAX_PREV_EVENTS:]
            wanted = auth_rules.auth_types_for_event(
                draft.type, draft.state_key, draft.sender, draft.content, version)
            pdu["auth_events"] = [view.state[k] for k in wanted if k in view.state]
        _check_size(pdu, version)
        signed = hash_and_sign_event(pdu, self._server_name, self._key, version)
        event = Event.from_pdu(signed, version)
        _check_size(signed, version)
        try:
            auth_rules.check_event(event, state_events, create_event=create)
        except auth_rules.AuthError as e:
            raise MatrixError(403, Codes.FORBIDDEN, str(e)) from None
        return event

    def build_create(self, draft: Draft, version: RoomVersion, room_id: str | None) -> Event:
        """The m.room.create event (v12 derives the room ID from it; older versions get one)."""
        if version.room_id_is_create_hash:
            event = self._build(draft, None, version, {}, None)
            return event
        pdu: dict[str, Any] = {
            "type": draft.type, "sender": draft.sender, "content": draft.content,
            "state_key": "", "room_id": room_id, "origin_server_ts": now_ms(), "depth": 1,
            "prev_events": [], "auth_events": [],
        }
        signed = hash_and_sign_event(pdu, self._server_name, self._key, version)
        event = Event.from_pdu(signed, version)
        try:
            auth_rules.check_event(event, {}, create_event=None)
        except auth_rules.AuthError as e:
            raise MatrixError(403, Codes.FORBIDDEN, str(e)) from None
        return event

    # -- appending ------------------------------------------------------------------------

    async def create_room(self, create_draft: Draft, version: RoomVersion, room_id: str | None,
                          drafts: Sequence[Draft], *, published: bool) -> tuple[str, list[Event]]:
        """Create a room: its create event and initial events, all in one transaction."""
        create = self.build_create(create_draft, version, room_id)
        room_id = create.room_id
        view = RoomView(room_id, version, {}, 0, [], 0, create.event_id)
        async with self._serializer.hold(room_key(room_id)):
            built = [create]
            state_events: dict[tuple[str, str], Event] = {("m.room.create", ""): create}
            self._advance(view, create)
            for draft in drafts:
                event = self._build(draft, view, version, state_events, create)
                built.append(event)
                if event.state_key is not None:
                    state_events[event.state_tuple] = event
                self._advance(view, event)

            prepared = await self._prepare(room_id, view.state, built)

            def txn(conn: apsw.Connection) -> tuple[list[int], int]:
                rooms_repo.insert_room(conn, room_id, version.identifier, create.sender,
                                       now_ms(), published)
                result = _persist(conn, room_id, built, None, {})
                _write_prepared(conn, prepared, result[0])
                return result

            orderings, group = await self._db.write(txn)
            view.state_group = group
            self._finish(view, built, orderings, prepared)
        return room_id, built

    async def append(self, room_id: str, draft: Draft, *, txn: TxnKey | None = None,
                     countersign: Countersign | None = None) -> Appended:
        """Append one event to an existing room (or return the one this txn ID already made).

        The transaction ID is checked inside the write itself, so the common case (a new txn
        ID) costs one trip to the writer and none to a reader.
        """
        async with self._serializer.hold(room_key(room_id)):
            view = await self._cache.room(room_id)
            if view is None:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
            wanted = auth_rules.auth_types_for_event(
                draft.type, draft.state_key, draft.sender, draft.content, view.room_version)
            state_events = await self.state_events(view, [("m.room.create", ""), *wanted])
            create = state_events.get(("m.room.create", ""))
            try:
                event = self._build(draft, view, view.room_version, state_events, create)
            except MatrixError:
                # A retry of a request that succeeded earlier gets its event back even if it
                # would not be allowed any more (e.g. the sender has left since).
                if txn is not None and (existing := await self._txn_event(txn)) is not None:
                    return existing
                raise

            if countersign is not None:
                # Another server must sign it too (an invite of one of its users): ask it,
                # still holding the room, so nothing lands on top meanwhile.
                event = await countersign(event, view)
            state_after = view.state if event.state_key is None else {
                **view.state, event.state_tuple: event.event_id}
            prepared = await self._prepare(room_id, state_after, [event])

            def write(conn: apsw.Connection) -> tuple[list[int], int] | str:
                if txn is not None:
                    existing = events_repo.get_txn_event(conn, txn.user_id, txn.device_id,
                                                         txn.scope, txn.txn_id)
                    if existing is not None:
                        return existing
                result = _persist(conn, room_id, [event], view.state_group, view.state)
                _write_prepared(conn, prepared, result[0])
                if txn is not None:
                    events_repo.set_txn_event(conn, txn.user_id, txn.device_id, txn.scope,
                                              txn.txn_id, event.event_id)
                return result

            result = await self._db.write(write)
            if isinstance(result, str):
                found = (await self._cache.events([result]))[result]
                return Appended(found, -1)
            orderings, group = result
            # Only now, with the event durable, does the in-memory view move on.
            self._advance(view, event)
            view.state_group = group
            self._finish(view, [event], orderings, prepared)
            return Appended(event, orderings[0])

    async def _txn_event(self, txn: TxnKey) -> Appended | None:
        event_id = await self._db.read(lambda c: events_repo.get_txn_event(
            c, txn.user_id, txn.device_id, txn.scope, txn.txn_id))
        if event_id is None:
            return None
        return Appended((await self._cache.events([event_id]))[event_id], -1)

    async def state_events(self, view: RoomView, keys: Sequence[tuple[str, str]]
                           ) -> dict[tuple[str, str], Event]:
        """Events of the current state at `keys` (missing keys are left out)."""
        present = [k for k in dict.fromkeys(keys) if k in view.state]
        found = await self._cache.events(view.state[k] for k in present)
        return {k: found[view.state[k]] for k in present if view.state[k] in found}

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _advance(view: RoomView, event: Event) -> None:
        view.extremities = [event.event_id]
        view.depth = max(view.depth, event.depth)
        if event.state_key is not None:
            view.state[event.state_tuple] = event.event_id

    def add_event_listener(self, listener: Callable[[Event, int], None]) -> None:
        """Call `listener(event, stream_ordering)` after each committed event."""
        self._event_listeners.append(listener)

    def add_membership_listener(self, listener: MembershipListener) -> None:
        """Call `listener(room_id, user_id, membership)` after each committed member event."""
        self._membership_listeners.append(listener)

    async def _prepare(self, room_id: str, state_after: events_repo.StateMap,
                       events: Sequence[Event]) -> PreparedWrite | None:
        if self._commit_hook is None:
            return None
        for event in events:
            self._cache.put_event(event)  # the hook may look the new events up
        try:
            return await self._commit_hook(room_id, state_after, events)
        except Exception:
            # Notification counts are derived data: never refuse a message over them.
            log.exception("commit hook failed to prepare in %s", room_id)
            return None

    def announce(self, view: RoomView, events: Sequence[Event], orderings: Sequence[int]
                 ) -> None:
        """After events from elsewhere (federation) were persisted: caches, listeners and
        waiting long-polls, as for a local append."""
        self._finish(view, events, orderings, None)

    def _finish(self, view: RoomView, events: Sequence[Event], orderings: Sequence[int],
                prepared: PreparedWrite | None) -> None:
        self._cache.put_room(view)
        for event in events:
            self._cache.put_event(event)
        if prepared is not None:
            prepared.committed()
        for event, ordering in zip(events, orderings, strict=False):
            for on_event in self._event_listeners:
                on_event(event, ordering)
        for event in events:
            if event.type == "m.room.member" and event.state_key is not None:
                for listener in self._membership_listeners:
                    listener(view.room_id, event.state_key, event.membership or "")
        self._notifier.notify([room_key(view.room_id), *_member_user_keys(events)])


def _write_prepared(conn: apsw.Connection, prepared: PreparedWrite | None,
                    orderings: Sequence[int]) -> None:
    """Write the hook's rows in their own savepoint: if they fail, the events still commit."""
    if prepared is None:
        return
    conn.execute("SAVEPOINT hook")
    try:
        prepared.write(conn, orderings)
    except Exception:
        conn.execute("ROLLBACK TO hook")
        log.exception("commit hook failed to write")
    conn.execute("RELEASE hook")


def _persist(conn: apsw.Connection, room_id: str, events: Sequence[Event],
             state_group: int | None, base_state: events_repo.StateMap
             ) -> tuple[list[int], int]:
    """Inside a write: store events in order with their state groups, update the current state
    and the extremities. Returns the stream orderings and the state group after the last event.

    `base_state` is the state before the first event; it is read, never copied or changed,
    except when a snapshot is due.
    """
    overlay: events_repo.StateMap = {}
    size = len(base_state)
    group = state_group
    orderings: list[int] = []
    for event in events:
        before = group
        if event.state_key is not None:
            key = event.state_tuple
            if key not in base_state and key not in overlay:
                size += 1
            overlay[key] = event.event_id
            snapshot = dict(overlay)
            group = events_repo.create_state_group(
                conn, room_id, group, {key: event.event_id}, size,
                lambda snap=snapshot: {**base_state, **snap})  # type: ignore[misc]
            events_repo.set_current_state(
                conn, room_id, event.type, event.state_key, event.event_id,
                event.membership if event.type == "m.room.member" else None)
        if group is None:
            raise AssertionError("a room's first event must be its create event")
        orderings.append(events_repo.insert_event(
            conn, event.event_id, room_id, event.type, event.state_key, event.sender,
            event.depth, event.origin_server_ts, before if before is not None else group,
            group, event.pdu))
        if event.redacts is not None:
            events_repo.add_redaction(conn, event.redacts, event.event_id)
    events_repo.set_forward_extremities(conn, room_id, [events[-1].event_id])
    # One extremity again: the current state is the state after it.
    rooms_repo.clear_current_state_group(conn, room_id)
    assert group is not None
    return orderings, group


def _member_user_keys(events: Sequence[Event]) -> list[str]:
    """Users whose membership an event changed hear about it even if not in the room
    (invites, kicks, bans)."""
    return [user_key(e.state_key) for e in events
            if e.type == "m.room.member" and e.state_key is not None]


AUTH_TYPES = frozenset({"m.room.create", "m.room.power_levels", "m.room.join_rules",
                        "m.room.member", "m.room.third_party_invite"})


def _check_size(pdu: dict[str, Any], version: RoomVersion) -> None:
    if version.strict_canonical_json:
        try:
            canonical_json.check_strict(pdu["content"])
        except canonical_json.InvalidCanonicalJson as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
    if len(canonical_json.encode(pdu)) > MAX_EVENT_BYTES:
        raise MatrixError(413, Codes.TOO_LARGE, "Event is larger than 65536 bytes")
