"""Read notifications do not pile up forever: push actions are kept for the counts and for
GET /notifications, but once one is read (at or before the user's unthreaded read receipt, or
from before their current membership) and older than `keep_read_notifications_days`, no count
can include it again and it is deleted, as Synapse drops its old rotated push actions. Unread
ones are kept whatever their age (they are the counts).

A pass walks every local membership in batches (one short write transaction each, so sends are
never held up long), every `retention_interval_s`; each (user, room) costs one receipt read and
one range delete on the table's primary key.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import apsw
import trio

from trioserver.storage.db import Database
from trioserver.storage.repositories import push as push_repo

log = logging.getLogger(__name__)
PAIRS_PER_WRITE = 500
DAY_MS = 86_400_000


class PushActionRetention:
    def __init__(self, db: Database, server_name: str, *, keep_read_days: int,
                 interval_s: float) -> None:
        self._db = db
        self._suffix = ":" + server_name
        self._keep_ms = int(keep_read_days * DAY_MS)
        self._interval_s = interval_s
        self.deleted = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        while True:
            await trio.sleep(self._interval_s)
            try:
                await self.prune()
            except apsw.Error:
                log.exception("push action retention: pass failed; trying again later")

    async def prune(self) -> int:
        """One pass; returns how many push actions were deleted."""
        cutoff = int(time.time() * 1000) - self._keep_ms
        pairs = await self._db.read(partial(push_repo.member_pairs,
                                            server_suffix=self._suffix))
        deleted = 0
        for start in range(0, len(pairs), PAIRS_PER_WRITE):
            chunk = pairs[start:start + PAIRS_PER_WRITE]
            deleted += await self._db.write(partial(push_repo.prune_read_actions, pairs=chunk,
                                                    older_than_ts=cutoff))
        self.deleted += deleted
        if deleted:
            log.info("push action retention: %d read notifications deleted", deleted)
        return deleted
