"""Telling other servers that a local user's devices or keys changed (Server-Server API
"Device Management": EDUs `m.device_list_update` and `m.signing_key_update`).

The destinations are the servers with a member joined to a room the user is joined to.
`stream_id` is the position of the change in our device-list stream (unique per user and
increasing, as /user/devices/{userId} reports it); `prev_id` is the last `stream_id` we sent
for the user. It is remembered in memory; after a restart it is the user's previous recorded
change instead (no table of its own: a migration would be needed for one). That is the last
update we sent unless the change before was one we send no `stream_id` for (cross-signing):
then the receiver sees an unknown `prev_id` and resyncs through /user/devices/{userId}, which
costs a request but is never wrong.

Deleted devices (logout, DELETE /devices, deactivation, a replaced dehydrated device) reach
`on_deleted` through the Sessions deletion listener and go out with `deleted: true`. Their
`stream_id` is the change the `devices_deleted_changes` trigger recorded. Devices deleted by
another process (the offline `trioserver deactivate` / `reset-password` commands) are queued
by it in `device_deletions_outbox`; `run` announces them at start-up and whenever the admin
epoch moves (`wake`), then deletes the rows.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import apsw
import trio

from trioserver.concurrency import Drainer
from trioserver.identifiers import is_local_user
from trioserver.services.e2ee import DeviceListChange
from trioserver.services.federation.room_servers import RoomServers
from trioserver.services.federation.to_device_edu import QueueEdu
from trioserver.storage.db import Database
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import e2ee_keys as keys_repo
from trioserver.storage.repositories import events as events_repo

log = logging.getLogger(__name__)

DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"


class DeviceListSender:
    def __init__(self, server_name: str, db: Database, servers: RoomServers,
                 queue_edu: QueueEdu) -> None:
        self._server_name = server_name
        self._db = db
        self._servers = servers
        self._queue_edu = queue_edu
        self._last_sent: dict[str, int] = {}
        self._loop = Drainer(self.announce_offline_deletions,
                             "cannot read the device deletions outbox", errors=(apsw.Error,))

    def wake(self) -> None:
        """Another process may have queued device deletions (the admin epoch moved)."""
        self._loop.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        await self._loop.run(task_status=task_status)

    async def announce_offline_deletions(self) -> int:
        """Send the deletions other processes queued; returns how many devices."""
        done = 0
        while rows := await self._db.read(keys_repo.offline_deletions):
            for position, user_id, device_id in rows:
                destinations = await self.destinations(user_id)
                if destinations:
                    update = await self._device_update(user_id, device_id, position)
                    for server in sorted(destinations):
                        self._queue_edu(server, DEVICE_LIST_UPDATE, update)
            await self._db.write(partial(keys_repo.forget_offline_deletions,
                                         positions=[p for p, _, _ in rows]))
            done += len(rows)
        return done

    async def destinations(self, user_id: str) -> set[str]:
        rooms = await self._db.read(
            lambda c: events_repo.rooms_with_membership(c, user_id, "join"))
        out: set[str] = set()
        for room_id in rooms:
            out |= await self._servers.of(room_id)
        out.discard(self._server_name)
        return out

    async def on_change(self, change: DeviceListChange) -> None:
        """E2EEKeys listener: a local user's device list changed."""
        user_id = change.user_id
        if not is_local_user(user_id, self._server_name):
            return  # a remote user's change we recorded: not ours to announce
        if change.device_id is None and not change.cross_signing:
            return
        destinations = await self.destinations(user_id)
        if not destinations:
            return
        if change.cross_signing:
            content = await self._signing_key_update(user_id)
            for server in sorted(destinations):
                self._queue_edu(server, SIGNING_KEY_UPDATE, content)
            return
        assert change.device_id is not None
        update = await self._device_update(user_id, change.device_id, change.position)
        for server in sorted(destinations):
            self._queue_edu(server, DEVICE_LIST_UPDATE, update)

    async def on_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """Sessions deletion listener: these devices of a local user were deleted."""
        if not device_ids or not is_local_user(user_id, self._server_name):
            return
        destinations = await self.destinations(user_id)
        if not destinations:
            return
        # The trigger recorded one change per deleted device, in the order they were deleted;
        # they are the user's latest unless another change raced in (then the IDs are only
        # off by one, still unique and increasing).
        positions = await self._db.read(
            lambda c: keys_repo.recent_changes_of(c, user_id, len(device_ids)))
        if len(positions) < len(device_ids):
            return
        for device_id, position in zip(device_ids, positions, strict=True):
            update = await self._device_update(user_id, device_id, position)
            for server in sorted(destinations):
                self._queue_edu(server, DEVICE_LIST_UPDATE, update)

    async def _signing_key_update(self, user_id: str) -> dict[str, Any]:
        cross = await self._db.read(lambda c: keys_repo.cross_signing_keys(c, user_id))
        content: dict[str, Any] = {"user_id": user_id}
        if "master" in cross:
            content["master_key"] = cross["master"]
        if "self_signing" in cross:
            content["self_signing_key"] = cross["self_signing"]
        return content

    async def _device_update(self, user_id: str, device_id: str, position: int
                             ) -> dict[str, Any]:
        def read(conn: apsw.Connection) -> tuple[devices_repo.DeviceRow | None,
                                                 dict[str, Any] | None]:
            device = next((d for d in devices_repo.list_devices(conn, user_id)
                           if d.device_id == device_id), None)
            return device, keys_repo.get_device_keys(conn, user_id, device_id)

        device, keys = await self._db.read(read)
        previous = self._last_sent.get(user_id)
        if previous is None:  # first update since we started
            previous = await self._db.read(
                lambda c: keys_repo.change_before(c, user_id, position))
        self._last_sent[user_id] = max(position, self._last_sent.get(user_id, position))
        update: dict[str, Any] = {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": position,
            "prev_id": [previous] if previous is not None else [],
        }
        if device is None:
            update["deleted"] = True
            return update
        if device.display_name:
            update["device_display_name"] = device.display_name
        if keys is not None:
            update["keys"] = keys
        return update
