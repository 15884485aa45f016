"""Dehydrated devices (MSC3814, unstable prefix org.matrix.msc3814.v1).

A user keeps at most one dehydrated device: a device without access tokens whose keys were
uploaded by one of the user's clients, and whose private state (`device_data`) is opaque to the
server. It is a normal row of `devices`, so other users can query its keys and send it to-device
messages; a client that rehydrates it reads those messages through `events`, in batches whose
`next_batch` token is the position in the to-device inbox of the batch's last message.
Presenting a token proves receipt of everything up to it, so those messages are then deleted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.concurrency import KeyedSerializer
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.identifiers import is_valid_device_id
from trioserver.services.clock import now_ms
from trioserver.services.e2ee import E2EEKeys
from trioserver.services.sessions import Requester, Sessions
from trioserver.storage.db import Database
from trioserver.storage.repositories import dehydrated_devices as dd_repo
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import to_device as td_repo

EVENTS_PER_BATCH = 100
MAX_DEVICE_DATA_BYTES = 64 * 1024
MAX_DISPLAY_NAME_CHARS = 256


@dataclass(frozen=True)
class EventsBatch:
    events: list[dict[str, Any]]
    next_batch: str


def parse_next_batch(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isascii() or not token.isdigit() or len(token) > 19:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid 'next_batch'")
    return int(token)


class DehydratedDevices:
    def __init__(self, db: Database, sessions: Sessions, e2ee: E2EEKeys,
                 serializer: KeyedSerializer) -> None:
        self._db = db
        self._sessions = sessions
        self._e2ee = e2ee
        self._serializer = serializer

    async def put(self, requester: Requester, device_id: str, device_data: Mapping[str, Any],
                  display_name: str | None, device_keys: Any, one_time_keys: Any,
                  fallback_keys: Any) -> str:
        """Create the user's dehydrated device, replacing any previous one; return its id.

        The new device row is created first and its keys uploaded (validated like /keys/upload);
        only then is the previous dehydrated device deleted, so a rejected upload leaves the
        previous device in place (unless it had the same id).
        """
        if not is_valid_device_id(device_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid 'device_id'")
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME_CHARS:
            raise MatrixError(400, Codes.INVALID_PARAM, "'initial_device_display_name' too long")
        data = json.dumps(device_data, ensure_ascii=False, separators=(",", ":"))
        if len(data.encode()) > MAX_DEVICE_DATA_BYTES:
            raise MatrixError(413, Codes.TOO_LARGE, "'device_data' is too large")
        user_id = requester.user_id
        now = now_ms()
        async with self._serializer.hold(f"dehydrated:{user_id}"):

            def create(conn: apsw.Connection) -> str | None:
                """Create the device row; return the previous dehydrated device's id."""
                old = dd_repo.get(conn, user_id)
                old_id = None if old is None else old.device_id
                if old_id == device_id:
                    devices_repo.delete_devices(conn, user_id, [device_id])
                    old_id = None
                if not devices_repo.upsert_device(conn, user_id, device_id, display_name, now):
                    raise MatrixError(400, Codes.INVALID_PARAM,
                                      "A device with this ID already exists")
                return old_id

            old_id = await self._db.write(create)
            device = Requester(user_id, device_id, is_guest=False, token_hash=b"")
            try:
                await self._e2ee.upload(device, device_keys, one_time_keys, fallback_keys)
            except BaseException:
                await self._db.write(
                    lambda c: devices_repo.delete_devices(c, user_id, [device_id]))
                self._sessions.forget_device(user_id, device_id)
                raise

            def finish(conn: apsw.Connection) -> None:
                if old_id is not None:
                    devices_repo.delete_devices(conn, user_id, [old_id])
                dd_repo.set_device(conn, user_id, device_id, data)

            await self._db.write(finish)
        if old_id is not None:
            self._sessions.forget_device(user_id, old_id)
            await self._sessions.devices_deleted(user_id, [old_id])
        return device_id

    async def get(self, requester: Requester) -> dd_repo.DehydratedRow:
        row = await self._db.read(lambda c: dd_repo.get(c, requester.user_id))
        if row is None:
            raise not_found("No dehydrated device")
        return row

    async def delete(self, requester: Requester) -> str:
        user_id = requester.user_id
        async with self._serializer.hold(f"dehydrated:{user_id}"):

            def txn(conn: apsw.Connection) -> str | None:
                row = dd_repo.get(conn, user_id)
                if row is None:
                    return None
                devices_repo.delete_devices(conn, user_id, [row.device_id])
                return row.device_id

            device_id = await self._db.write(txn)
        if device_id is None:
            raise not_found("No dehydrated device")
        self._sessions.forget_device(user_id, device_id)
        await self._sessions.devices_deleted(user_id, [device_id])
        return device_id

    async def events(self, requester: Requester, device_id: str,
                     next_batch: str | None) -> EventsBatch:
        """The dehydrated device's to-device messages after `next_batch`."""
        since = parse_next_batch(next_batch)
        user_id = requester.user_id

        def txn(conn: apsw.Connection) -> list[td_repo.Message] | None:
            row = dd_repo.get(conn, user_id)
            if row is None or row.device_id != device_id:
                return None
            if since:
                td_repo.delete_delivered(conn, user_id, device_id, since)
            return dd_repo.messages_after(conn, user_id, device_id, since, EVENTS_PER_BATCH)

        messages = await self._db.write(txn)
        if messages is None:
            raise not_found("No such dehydrated device")
        last = messages[-1].stream_id if messages else since
        return EventsBatch(
            [{"type": m.type, "sender": m.sender, "content": m.content} for m in messages],
            str(last),
        )
