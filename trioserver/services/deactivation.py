"""Deactivated users leave their rooms (as Synapse's "user parter" does), in the background.

Deactivation itself is one transaction (storage/repositories/deactivation.py) that also queues
the user here; this task then leaves every room they are joined to, rejects their invites
(local and from other servers) and retracts their knocks, each as an ordinary leave event that
federates like any other. The queue is in the database, so a restart resumes it, and the
offline `trioserver deactivate` fills it too (the running server is woken through the admin
epoch). A room that cannot be left (gone, or its server unreachable for an invite) is logged and
skipped: the account is already unusable.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Protocol

import apsw
import trio

from trioserver.concurrency import Drainer
from trioserver.errors import MatrixError
from trioserver.services.federation.errors import FederationError
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import deactivation as deactivation_repo

log = logging.getLogger(__name__)
RETRY_AFTER_DB_ERROR_S = 5.0
MAX_ROUNDS = 3


class RoomLeaver(Protocol):
    async def leave(self, requester: Requester, room_id: str, reason: str | None) -> None: ...


class RoomParter:
    def __init__(self, db: Database, rooms: RoomLeaver) -> None:
        self._db = db
        self._rooms = rooms
        self._loop = Drainer(self.drain, "deactivation: cannot read the queue; retrying",
                             errors=(apsw.Error,), retry_s=RETRY_AFTER_DB_ERROR_S)
        self.rooms_left = 0

    def wake(self) -> None:
        """Something was queued (an in-server or offline deactivation)."""
        self._loop.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        await self._loop.run(task_status=task_status)

    async def drain(self) -> None:
        """Take every queued user out of their rooms, then off the queue."""
        for user_id in await self._db.read(deactivation_repo.queued):
            requester = Requester(user_id, "", is_guest=False, token_hash=b"")
            left = 0
            failed: set[str] = set()
            # Again until nothing is left: a join that was already in flight when the tokens
            # went can land after the first listing.
            for _ in range(MAX_ROUNDS):
                rooms = [r for r in await self._db.read(partial(
                    deactivation_repo.rooms_to_leave, user_id=user_id)) if r not in failed]
                if not rooms:
                    break
                for room_id in rooms:
                    if await self._leave(requester, room_id):
                        left += 1
                    else:
                        failed.add(room_id)
            self.rooms_left += left
            await self._db.write(partial(deactivation_repo.done, user_id=user_id))
            log.info("deactivation: %s left %d rooms", user_id, left)

    async def _leave(self, requester: Requester, room_id: str) -> bool:
        try:
            await self._rooms.leave(requester, room_id, None)
            return True
        except MatrixError as e:
            log.warning("deactivation: %s cannot leave %s: %s", requester.user_id, room_id,
                        e.message)
        except (FederationError, OSError, trio.TooSlowError) as e:
            log.warning("deactivation: %s cannot leave %s: %r", requester.user_id, room_id, e)
        return False
