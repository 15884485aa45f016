"""Notice changes made by offline admin commands while the server runs.

`trioserver deactivate`, `reset-password` and `make-admin` write to the database from another
process and bump `admin_epoch` in the same transaction. This task reads the epoch once a second
(one indexed read on a reader connection) and, when it moved, drops the caches that could still
hold what changed: resolved access tokens (a deactivated or logged-out user's token would keep
working until evicted). Waiting /sync long-polls are woken as after any device deletion, so
other users' device lists catch up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import apsw
import trio

from trioserver.concurrency import Notifier
from trioserver.services.sessions import Sessions
from trioserver.services.sync.streams import DEVICE_DELETIONS_KEY
from trioserver.storage.db import Database
from trioserver.storage.repositories import admin_epoch as epoch_repo

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0


class AdminWatch:
    def __init__(self, db: Database, sessions: Sessions, notifier: Notifier,
                 *, interval_s: float = POLL_INTERVAL_S,
                 on_change: tuple[Callable[[], None], ...] = ()) -> None:
        self._db = db
        self._sessions = sessions
        self._notifier = notifier
        self._interval_s = interval_s
        # e.g. an offline deactivation queued rooms to leave and devices to announce
        self._on_change = on_change
        self.epoch: int | None = None

    async def check(self) -> bool:
        """Read the epoch once; clear the caches if it moved. True if it did."""
        epoch = await self._db.read(epoch_repo.current)
        changed = self.epoch is not None and epoch != self.epoch
        self.epoch = epoch
        if changed:
            log.info("admin change detected (epoch %d): clearing token cache", epoch)
            self._sessions.clear_cache()
            self._notifier.notify([DEVICE_DELETIONS_KEY])
            for listener in self._on_change:
                listener()
        return changed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.check()
        task_status.started()
        while True:
            await trio.sleep(self._interval_s)
            try:
                await self.check()
            except apsw.Error:
                # A transient read failure must not take the server down; retry next tick.
                log.exception("cannot read the admin epoch")
