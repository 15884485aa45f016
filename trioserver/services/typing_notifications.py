"""Typing notifications (spec "Typing Notifications"), stream "ty": in memory only.

Who is typing where lives in this process, each typer with an expiry on the trio clock. Every
change of a room's typing set (start, stop, expiry) takes the next position of an in-memory
counter and notifies the room, so a waiting /sync sees users start and stop typing. `run` is the
expiry task: it sleeps until the next expiry (or a new typer) and retires whoever timed out.

Positions start at the wall-clock milliseconds of start-up, so a token from an earlier run of the
server is below `epoch` (unless that run changed typing more than 1,000 times a second) and one
from a later run is above the position: either way the client is sent every joined room's
typing set, clearing whatever it remembered.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import trio

from trioserver.concurrency import Notifier
from trioserver.errors import forbidden
from trioserver.services.clock import now_ms
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.reads import RoomReader
from trioserver.services.rooms.service import check_room_id
from trioserver.services.sessions import Requester
from trioserver.services.sync.streams import SyncContext, SyncResult, room_key

DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000
# A typing change: (room_id, user_id, typing). Called for every start (renewals included), and
# for every stop or expiry of someone who was typing.
TypingListener = Callable[[str, str, bool], None]


def typing_event(user_ids: list[str]) -> dict[str, Any]:
    return {"type": "m.typing", "content": {"user_ids": user_ids}}


class TypingSource:
    """StreamSource "ty": the typing set of each joined room that changed."""

    name = "ty"

    def __init__(self, typing: Typing) -> None:
        self._typing = typing

    async def current_position(self) -> int:
        return self._typing.position

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        self._typing.collect(ctx, since, upto, out)


class Typing:
    def __init__(self, notifier: Notifier, room_cache: RoomCache, room_reader: RoomReader, *,
                 clock: Callable[[], float] = trio.current_time,
                 epoch: int | None = None) -> None:
        self._notifier = notifier
        self._rooms = room_cache
        self._reader = room_reader
        self._clock = clock
        self.epoch = now_ms() if epoch is None else epoch
        self.position = self.epoch
        self._typers: dict[str, dict[str, float]] = {}  # room -> user -> expiry
        self._changed_at: dict[str, int] = {}  # room -> position of its last change
        self._expiries: list[tuple[float, str, str]] = []  # heap (expiry, room, user)
        self._wakeup = trio.Event()
        self._listeners: list[TypingListener] = []
        self.source = TypingSource(self)

    def add_listener(self, listener: TypingListener) -> None:
        """Called synchronously after each change (it must not block: queue work elsewhere)."""
        self._listeners.append(listener)

    def _tell(self, room_id: str, user_id: str, typing: bool) -> None:
        for listener in self._listeners:
            listener(room_id, user_id, typing)

    async def set_remote(self, room_id: str, user_id: str, typing: bool, seconds: float
                         ) -> bool:
        """Another server's user starts or stops typing; ignored (False) unless joined."""
        view = await self._rooms.room(room_id)
        if view is None or await self._reader.membership(view, user_id) != "join":
            return False
        if typing:
            self.start(room_id, user_id, seconds)
        else:
            self.stop(room_id, user_id)
        return True

    # -- endpoint -------------------------------------------------------------------------

    async def set_typing(self, requester: Requester, room_id: str, user_id: str,
                         typing: bool, timeout_ms: int | None) -> None:
        """PUT /rooms/{roomId}/typing/{userId}: only for yourself, only in a joined room."""
        if requester.user_id != user_id:
            raise forbidden("Cannot set another user's typing state")
        check_room_id(room_id)
        view = await self._rooms.room(room_id)
        if view is None or await self._reader.membership(view, user_id) != "join":
            raise forbidden(f"User {user_id} not in room {room_id}")
        if typing:
            timeout = DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms
            if timeout > 0:
                self.start(room_id, user_id, min(timeout, MAX_TIMEOUT_MS) / 1000)
                return
        self.stop(room_id, user_id)

    # -- state ----------------------------------------------------------------------------

    def start(self, room_id: str, user_id: str, seconds: float) -> None:
        expiry = self._clock() + seconds
        typers = self._typers.setdefault(room_id, {})
        was_typing = user_id in typers and typers[user_id] > self._clock()
        typers[user_id] = expiry
        heapq.heappush(self._expiries, (expiry, room_id, user_id))
        self._wakeup.set()
        if not was_typing:  # a renewal changes nothing anyone sees
            self._changed([room_id])
        self._tell(room_id, user_id, True)

    def stop(self, room_id: str, user_id: str) -> None:
        typers = self._typers.get(room_id)
        if typers is None or typers.pop(user_id, None) is None:
            return
        if not typers:
            del self._typers[room_id]
        self._changed([room_id])
        self._tell(room_id, user_id, False)

    def membership_changed(self, room_id: str, user_id: str, membership: str) -> None:
        """A member who is no longer joined stops typing at once (not at the timeout)."""
        if membership != "join":
            self.stop(room_id, user_id)

    def typing_in(self, room_id: str) -> list[str]:
        """Who is typing in a room now (expired typers excluded even before the sweep)."""
        now = self._clock()
        return sorted(u for u, expiry in self._typers.get(room_id, {}).items() if expiry > now)

    def expire(self) -> int:
        """Retire every typer whose time is up; returns how many rooms changed."""
        now = self._clock()
        changed: set[str] = set()
        expired: list[tuple[str, str]] = []
        while self._expiries and self._expiries[0][0] <= now:
            expiry, room_id, user_id = heapq.heappop(self._expiries)
            typers = self._typers.get(room_id)
            # Skip heap entries that a renewal or a stop made stale.
            if typers is not None and typers.get(user_id) == expiry:
                del typers[user_id]
                if not typers:
                    del self._typers[room_id]
                changed.add(room_id)
                expired.append((room_id, user_id))
        if changed:
            self._changed(sorted(changed))
        for room_id, user_id in expired:
            self._tell(room_id, user_id, False)
        return len(changed)

    def _changed(self, room_ids: list[str]) -> None:
        self.position += 1
        for room_id in room_ids:
            self._changed_at[room_id] = self.position
        self._notifier.notify([room_key(r) for r in room_ids])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """The expiry task: wakes at the next expiry, or when a typer is added.

        Sleeps on trio's clock, so it expects the default `clock` (trio.current_time)."""
        task_status.started()
        while True:
            deadline = self._expiries[0][0] if self._expiries else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self.expire()

    # -- sync -----------------------------------------------------------------------------

    def collect(self, ctx: SyncContext, since: int | None, upto: int, out: SyncResult) -> None:
        if since is not None and (since < self.epoch or since > self.position):
            # A token from another run of the server: replace whatever the client remembers.
            for room_id in ctx.joined_rooms:
                out.room(room_id).ephemeral.append(typing_event(self.typing_in(room_id)))
            return
        for room_id in ctx.joined_rooms:
            changed_at = self._changed_at.get(room_id)
            if changed_at is None or changed_at > upto:
                continue  # never changed, or changed after upto: the next sync sends it
            if since is None:
                typers = self.typing_in(room_id)
                if typers:
                    out.room(room_id).ephemeral.append(typing_event(typers))
            elif changed_at > since:
                out.room(room_id).ephemeral.append(typing_event(self.typing_in(room_id)))
