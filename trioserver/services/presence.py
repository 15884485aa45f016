"""Presence (spec "Presence"), stream "pr".

Each user's presence is kept in memory (loaded on first use) and persisted whenever something
others see changes: the state, the status message or `currently_active`. Such a change replaces
the user's row at a new stream position and wakes everyone who shares a joined room with them.
Activity alone (a /sync while already online and active) only moves timestamps in memory; `run`
writes them back in place every pass, so `last_active_ago` survives a restart within a pass.

Timeouts, checked by `run`: online with no activity for `idle_after_ms` becomes unavailable;
`currently_active` drops after `active_window_ms` without activity. A local user becomes offline
`offline_after_ms` (30 s, as Synapse) after their last /sync or sliding sync ended (or presence
PUT), never while one is in progress (`syncing`): closing the client shows them offline within
a minute, a long-poll of any length keeps them online. Another server's user becomes offline
after `remote_offline_after_ms` (30 min, Synapse's federation timeout) without news from it;
servers re-send presence every 25 minutes (federation/ephemeral.py).

Ordering: a change is applied in memory and its write queued without an await in between, and
the writer runs writes in the order they were queued, so the database sees changes in the order
memory did. An entry leaves memory only when it is offline with no write in flight, so loading
it again always reads its latest state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import apsw
import trio

from trioserver.concurrency import Notifier
from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.services.clock import now_ms
from trioserver.services.sessions import Requester
from trioserver.services.stream_position import StreamPosition
from trioserver.services.sync.streams import SyncContext, SyncResult, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import presence as presence_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.repositories.presence import PresenceRow

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)

IDLE_AFTER_MS = 5 * 60_000
OFFLINE_AFTER_MS = 30_000
REMOTE_OFFLINE_AFTER_MS = 30 * 60_000
ACTIVE_WINDOW_MS = 60_000
CHECK_INTERVAL_S = 15.0


@dataclass(frozen=True)
class UserPresence:
    state: str
    status_msg: str | None
    last_active_ts: int | None
    last_sync_ts: int
    currently_active: bool

    @classmethod
    def from_row(cls, row: PresenceRow) -> UserPresence:
        return cls(row.state, row.status_msg, row.last_active_ts, row.last_sync_ts,
                   row.currently_active)

    def visible(self) -> tuple[str, str | None, bool]:
        """What a change must touch to be worth a stream position."""
        return self.state, self.status_msg, self.currently_active


def presence_content(state: str, status_msg: str | None, last_active_ts: int | None,
                     currently_active: bool, now: int) -> dict[str, Any]:
    content: dict[str, Any] = {"presence": state, "currently_active": currently_active}
    if last_active_ts is not None:
        content["last_active_ago"] = max(0, now - last_active_ts)
    if status_msg is not None:
        content["status_msg"] = status_msg
    return content


class PresenceSource:
    """StreamSource "pr": m.presence of the user and of users sharing a joined room."""

    name = "pr"

    def __init__(self, presence: Presence) -> None:
        self._presence = presence

    async def current_position(self) -> int:
        return await self._presence.position.current()

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        await self._presence.collect(ctx, since, upto, out)


class Presence:
    def __init__(self, db: Database, notifier: Notifier, *,
                 clock: Callable[[], int] = now_ms,
                 idle_after_ms: int = IDLE_AFTER_MS,
                 offline_after_ms: int = OFFLINE_AFTER_MS,
                 remote_offline_after_ms: int = REMOTE_OFFLINE_AFTER_MS,
                 active_window_ms: int = ACTIVE_WINDOW_MS,
                 check_interval_s: float = CHECK_INTERVAL_S,
                 server_name: str | None = None) -> None:
        self._db = db
        self._notifier = notifier
        self._clock = clock
        self._idle_after = idle_after_ms
        self._offline_after = offline_after_ms
        self._remote_offline_after = remote_offline_after_ms
        # Without a server name every user counts as local (unit tests).
        self._suffix = f":{server_name}" if server_name is not None else None
        self._syncing: dict[str, int] = {}  # user -> syncs in progress
        self._active_window = active_window_ms
        self._check_interval = check_interval_s
        self._users: dict[str, UserPresence] = {}
        self._dirty: set[str] = set()  # timestamps newer in memory than on disk
        self._in_flight: dict[str, int] = {}  # user -> writes queued, not yet committed
        self.position = StreamPosition(db, "presence")
        self.source = PresenceSource(self)
        self._listeners: list[Callable[[str, UserPresence], None]] = []

    def add_listener(self, listener: Callable[[str, UserPresence], None]) -> None:
        """Called synchronously with (user_id, new presence) after a change others see is
        stored (not for timestamp-only refreshes); it must not block."""
        self._listeners.append(listener)

    # -- state ----------------------------------------------------------------------------

    async def _current(self, user_id: str) -> UserPresence | None:
        found = self._users.get(user_id)
        if found is not None:
            return found
        row = await self._db.read(lambda c: presence_repo.get(c, user_id))
        if row is None:
            return self._users.get(user_id)
        # Another task may have changed the user while we read: its value is newer.
        return self._users.setdefault(user_id, UserPresence.from_row(row))

    def _apply(self, user_id: str, old: UserPresence | None, new: UserPresence
               ) -> list[tuple[str, UserPresence]]:
        """Record `new` in memory; return it as a change to persist if others would notice."""
        self._users[user_id] = new
        if old is not None and old.visible() == new.visible():
            if (old.last_active_ts, old.last_sync_ts) != (new.last_active_ts, new.last_sync_ts):
                self._dirty.add(user_id)
            return []
        self._dirty.discard(user_id)
        return [(user_id, new)]

    async def _persist(self, changes: list[tuple[str, UserPresence]],
                       times: list[tuple[str, int | None, int]] | None = None) -> None:
        """Write changes (each at a new position) and refreshed timestamps, then notify.

        Must be called without an await since the changes were applied in memory."""
        if not changes and not times:
            return
        for user_id, _ in changes:
            self._in_flight[user_id] = self._in_flight.get(user_id, 0) + 1

        def txn(conn: apsw.Connection) -> tuple[int, dict[str, list[str]]]:
            if times:
                presence_repo.refresh_times(conn, times)
            top = 0
            for user_id, p in changes:
                top = presence_repo.put(conn, user_id, p.state, p.status_msg, p.last_active_ts,
                                        p.last_sync_ts, p.currently_active)
            # Read in the same transaction: who shares a room with the user right now.
            return top, {u: presence_repo.audience(conn, u) for u, _ in changes}

        try:
            top, audiences = await self._db.write(txn)
        finally:
            for user_id, _ in changes:
                left = self._in_flight[user_id] - 1
                if left:
                    self._in_flight[user_id] = left
                else:
                    del self._in_flight[user_id]
        if changes:
            self.position.advance(top)
            self._notifier.notify({user_key(u) for users in audiences.values() for u in users})
            for user_id, p in changes:
                for listener in self._listeners:
                    listener(user_id, p)

    async def touch(self, user_id: str, set_presence: str | None) -> None:
        """Called by /sync with its `set_presence`: "online" (the default, None) marks the user
        active and online; "unavailable" marks them idle; "offline" changes nothing."""
        if set_presence == OFFLINE:
            return
        if set_presence not in (None, ONLINE, UNAVAILABLE):
            raise MatrixError(400, Codes.INVALID_PARAM, "Unknown set_presence value")
        old = await self._current(user_id)
        now = self._clock()
        if set_presence == UNAVAILABLE:
            new = UserPresence(UNAVAILABLE, old.status_msg if old else None,
                               old.last_active_ts if old else None, now, False)
        else:
            new = UserPresence(ONLINE, old.status_msg if old else None, now, now, True)
        await self._persist(self._apply(user_id, old, new))

    async def bump_active(self, user_id: str) -> None:
        """A pro-active action (e.g. sending a message): like a /sync with "online"."""
        await self.touch(user_id, ONLINE)

    async def set_remote(self, user_id: str, state: str, status_msg: str | None,
                         last_active_ago: int | None, currently_active: bool) -> bool:
        """Another server's user's presence (federation m.presence EDU), kept only for users
        joined to a room here (else False). It times out like a local user's, offline after
        `offline_after_ms` without news from their server."""
        if state not in STATES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid presence state {state!r}")
        if not await self._db.read(lambda c: presence_repo.joined_somewhere(c, user_id)):
            return False
        old = await self._current(user_id)
        now = self._clock()
        last_active = now - max(0, last_active_ago) if last_active_ago is not None else (
            old.last_active_ts if old is not None else None)
        new = UserPresence(state, status_msg, last_active, now,
                           currently_active and state == ONLINE)
        await self._persist(self._apply(user_id, old, new))
        return True

    # -- endpoints ------------------------------------------------------------------------

    async def set_status(self, requester: Requester, user_id: str, state: str,
                         status_msg: str | None) -> None:
        """PUT /presence/{userId}/status. Setting a status counts as activity (spec)."""
        if requester.user_id != user_id:
            raise forbidden("Can only set your own presence state")
        if state not in STATES:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid presence state {state!r}")
        old = await self._current(user_id)
        now = self._clock()
        new = UserPresence(state, status_msg, now, now, state == ONLINE)
        await self._persist(self._apply(user_id, old, new))

    async def get_status(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """GET /presence/{userId}/status: yourself, or a user sharing a joined room with you."""
        if requester.user_id != user_id:
            def allowed(conn: apsw.Connection) -> bool | None:
                # Another server's user is known here only through the rooms shared.
                if presence_repo.shares_room(conn, requester.user_id, user_id):
                    return True
                return False if users_repo.user_exists(conn, user_id) else None

            verdict = await self._db.read(allowed)
            if verdict is None:
                raise not_found("Unknown user")
            if not verdict:
                raise forbidden("You are not allowed to see their presence.")
        current = await self._current(user_id)
        if current is None:
            return {"presence": OFFLINE}
        return presence_content(current.state, current.status_msg, current.last_active_ts,
                                current.currently_active, self._clock())

    def not_offline(self) -> list[tuple[str, UserPresence]]:
        """Users (ours and others') whose presence is not offline, as kept in memory."""
        return [(u, p) for u, p in self._users.items() if p.state != OFFLINE]

    # -- timeouts -------------------------------------------------------------------------

    @contextmanager
    def syncing(self, user_id: str, set_presence: str | None) -> Iterator[None]:
        """Around a /sync or sliding sync request: the user is not timed out while it runs, and
        its end counts as seen (unless it asked for set_presence=offline)."""
        if set_presence == OFFLINE:
            yield
            return
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        try:
            yield
        finally:
            left = self._syncing.pop(user_id) - 1
            if left:
                self._syncing[user_id] = left
            p = self._users.get(user_id)
            if p is not None and p.state != OFFLINE:
                self._users[user_id] = replace(p, last_sync_ts=self._clock())
                self._dirty.add(user_id)

    def _timed_out(self, user_id: str, p: UserPresence, now: int) -> UserPresence | None:
        remote = self._suffix is not None and not user_id.endswith(self._suffix)
        offline_after = self._remote_offline_after if remote else self._offline_after
        if p.state != OFFLINE and now - p.last_sync_ts > offline_after and \
                not self._syncing.get(user_id):
            return replace(p, state=OFFLINE, currently_active=False)
        if p.state == ONLINE:
            idle_for = now - (p.last_active_ts or 0)
            if idle_for > self._idle_after:
                return replace(p, state=UNAVAILABLE, currently_active=False)
            if p.currently_active and idle_for > self._active_window:
                return replace(p, currently_active=False)
        return None

    async def check_timeouts(self) -> int:
        """One pass of `run`: apply timeouts, write timestamps back, forget offline users.
        Returns how many users changed."""
        for user_id in [u for u, p in self._users.items() if p.state == OFFLINE
                        and u not in self._dirty and u not in self._in_flight]:
            del self._users[user_id]
        now = self._clock()
        changes: list[tuple[str, UserPresence]] = []
        for user_id, p in list(self._users.items()):
            new = self._timed_out(user_id, p, now)
            if new is not None:
                changes += self._apply(user_id, p, new)
        times = [(u, self._users[u].last_active_ts, self._users[u].last_sync_ts)
                 for u in self._dirty]
        self._dirty.clear()
        await self._persist(changes, times)
        return len(changes)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """The timeout task. Users online at the last shutdown are loaded first, so they time
        out even if they never come back."""
        rows = await self._db.read(presence_repo.not_offline)
        for row in rows:
            self._users.setdefault(row.user_id, UserPresence.from_row(row))
        task_status.started()
        while True:
            await trio.sleep(self._check_interval)
            await self.check_timeouts()

    # -- sync -----------------------------------------------------------------------------

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        if since is not None and since >= upto:
            return
        if since is None:
            rows = await self._db.read(
                lambda c: presence_repo.visible_current(c, ctx.user_id, ctx.joined_rooms, upto))
        else:
            rows = await self._db.read(lambda c: presence_repo.visible_changes(
                c, ctx.user_id, ctx.joined_rooms, since, upto))
        now = self._clock()
        for row in rows:
            # The row is the state at its position; the last activity may be newer in memory.
            last_active = row.last_active_ts
            mem = self._users.get(row.user_id)
            if mem is not None and mem.last_active_ts is not None:
                last_active = max(last_active or 0, mem.last_active_ts)
            out.presence.append({
                "type": "m.presence",
                "sender": row.user_id,
                "content": presence_content(row.state, row.status_msg, last_active,
                                            row.currently_active, now),
            })
