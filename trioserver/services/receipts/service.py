"""Receipts and read markers (Client-Server API "Receipts", "Read and unread markers").

A receipt says a user has read up to an event, unthreaded or in one thread ("main" or a thread
root). The newest per (room, user, type, thread) is kept; one for an earlier event is accepted
and ignored, so receipts never move backwards. m.read.private receipts reach only their owner.
The fully read marker is the room account data event `m.fully_read`, written through the
account data service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import apsw

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.services.clock import now_ms
from trioserver.services.events.event import Event
from trioserver.services.push.threads import MAIN, thread_of
from trioserver.services.receipts.sources import ReceiptsSource, UnreadCountsSource
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.stream_position import StreamPosition
from trioserver.services.sync.streams import room_key, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import receipts as receipts_repo
from trioserver.storage.repositories.receipts import PRIVATE, UNTHREADED

READ = "m.read"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, PRIVATE, FULLY_READ)
MAX_ID_BYTES = 255

# A stored receipt: (room_id, user_id, receipt_type, thread_id ("" unthreaded), event_id, ts).
ReceiptListener = Callable[[str, str, str, str, str, int], None]


class RoomAccountData(Protocol):
    """The part of the account data service read markers need."""

    async def set_room_account_data(self, user_id: str, room_id: str, data_type: str,
                                    content: dict[str, Any]) -> None: ...

    async def get_room_account_data(self, user_id: str, room_id: str, data_type: str
                                    ) -> dict[str, Any] | None: ...


def _check_event_id(event_id: Any, what: str) -> str:
    if not isinstance(event_id, str) or not event_id.startswith("$") or \
            len(event_id.encode()) > MAX_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{what} must be an event ID")
    return event_id


def check_thread_id(receipt_type: str, thread_id: Any) -> str | None:
    """The body's `thread_id` (None: unthreaded), or 400 M_INVALID_PARAM."""
    if thread_id is None:
        return None
    if not isinstance(thread_id, str) or not thread_id:
        raise MatrixError(400, Codes.INVALID_PARAM, "thread_id field must be a non-empty string")
    if receipt_type == FULLY_READ:
        raise MatrixError(400, Codes.INVALID_PARAM, "thread_id is not allowed for m.fully_read")
    if thread_id != MAIN and not thread_id.startswith("$"):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "thread_id must be 'main' or the event ID of a thread root")
    return thread_id


class Receipts:
    def __init__(self, *, db: Database, cache: RoomCache, notifier: Notifier,
                 account_data: RoomAccountData) -> None:
        self._db = db
        self._cache = cache
        self._notifier = notifier
        self._account_data = account_data
        # One user's fully read markers move one at a time (read, compare, write).
        self._markers = KeyedSerializer()
        self.receipts_position = StreamPosition(db, "receipts")
        # Also advanced by the push actions of new events.
        self.unread_position = StreamPosition(db, "unread_changes")
        self.source = ReceiptsSource(db, self.receipts_position)
        self.unread_source = UnreadCountsSource(db, self.unread_position)
        self._listeners: list[ReceiptListener] = []

    def add_listener(self, listener: ReceiptListener) -> None:
        """Called synchronously after a receipt is stored (it must not block)."""
        self._listeners.append(listener)

    async def _joined_room(self, user_id: str, room_id: str) -> RoomView:
        view = await self._cache.room(room_id)
        if view is None:
            raise not_found("Unknown room")
        member_id = view.state.get(("m.room.member", user_id))
        member = (await self._cache.events([member_id])).get(member_id) \
            if member_id is not None else None
        if member is None or member.membership != "join":
            raise forbidden("You are not joined to this room")
        return view

    async def _event_in_room(self, room_id: str, event_id: str) -> Event:
        event = (await self._cache.events([event_id])).get(event_id)
        if event is None or event.room_id != room_id:
            raise not_found("Event not found in this room")
        return event

    # -- endpoints ------------------------------------------------------------------------

    async def post_receipt(self, user_id: str, room_id: str, receipt_type: str, event_id: str,
                           thread_id: Any = None) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}."""
        if receipt_type not in RECEIPT_TYPES:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              f"Receipt type must be one of {', '.join(RECEIPT_TYPES)}")
        thread = check_thread_id(receipt_type, thread_id)
        _check_event_id(event_id, "eventId")
        await self._joined_room(user_id, room_id)
        if receipt_type == FULLY_READ:
            await self._set_fully_read(user_id, room_id, event_id)
            return
        if thread is not None:
            event = await self._event_in_room(room_id, event_id)
            # A thread's receipt may also sit on its root (which is in the main timeline).
            if thread != event_id and await thread_of(event, self._load) != thread:
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"The event is not in thread {thread[:64]}")
        await self._put(user_id, room_id, receipt_type, thread or UNTHREADED, event_id)

    async def set_read_markers(self, user_id: str, room_id: str, *, fully_read: Any = None,
                               read: Any = None, read_private: Any = None) -> None:
        """POST /rooms/{roomId}/read_markers."""
        markers = [(t, _check_event_id(e, t)) for t, e in
                   ((FULLY_READ, fully_read), (READ, read), (PRIVATE, read_private))
                   if e is not None]
        await self._joined_room(user_id, room_id)
        for receipt_type, event_id in markers:
            if receipt_type == FULLY_READ:
                await self._set_fully_read(user_id, room_id, event_id)
            else:
                await self._put(user_id, room_id, receipt_type, UNTHREADED, event_id)

    async def put_remote(self, user_id: str, room_id: str, event_id: str, thread_id: Any,
                         ts: int) -> None:
        """A public read receipt of another server's user (federation m.receipt EDU).

        Raises (403/404/400) unless the user is joined and the event is known in the room."""
        thread = check_thread_id(READ, thread_id)
        _check_event_id(event_id, "event_ids")
        await self._joined_room(user_id, room_id)
        await self._put(user_id, room_id, READ, thread or UNTHREADED, event_id, ts)

    # -- internals ------------------------------------------------------------------------

    async def _load(self, event_id: str) -> Event | None:
        return (await self._cache.events([event_id])).get(event_id)

    async def _set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        """Move the fully read marker, never backwards (as Synapse: an earlier event is
        accepted and ignored)."""
        await self._event_in_room(room_id, event_id)
        async with self._markers.hold(user_id):
            current = await self._account_data.get_room_account_data(user_id, room_id,
                                                                     FULLY_READ)
            current_id = current.get("event_id") if current is not None else None
            if isinstance(current_id, str):
                if current_id == event_id:
                    return
                positions = await self._db.read(lambda c: (
                    receipts_repo.event_position(c, current_id),
                    receipts_repo.event_position(c, event_id)))
                old, new = positions
                if old is not None and new is not None and new[1] < old[1]:
                    return
            await self._account_data.set_room_account_data(user_id, room_id, FULLY_READ,
                                                           {"event_id": event_id})

    async def _put(self, user_id: str, room_id: str, receipt_type: str, thread_id: str,
                   event_id: str, ts: int | None = None) -> None:
        ts = now_ms() if ts is None else ts

        def txn(conn: apsw.Connection) -> tuple[int, int] | None:
            position = receipts_repo.event_position(conn, event_id)
            if position is None or position[0] != room_id:
                raise not_found("Event not found in this room")
            stream_id = receipts_repo.put_receipt(conn, room_id, user_id, receipt_type,
                                                  thread_id, event_id, position[1], ts)
            if stream_id is None:
                return None
            return stream_id, receipts_repo.mark_unread_changed(conn, [(user_id, room_id)])

        written = await self._db.write(txn)
        if written is None:
            return  # an older receipt than the one stored: accepted, and ignored
        self.receipts_position.advance(written[0])
        self.unread_position.advance(written[1])
        # Everyone in the room sees a public receipt; a private one only its owner.
        self._notifier.notify([user_key(user_id)] if receipt_type == PRIVATE
                              else [room_key(room_id), user_key(user_id)])
        for listener in self._listeners:
            listener(room_id, user_id, receipt_type, thread_id, event_id, ts)
