"""Devices: list, inspect, rename and delete a user's sessions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apsw

from trioserver.errors import not_found
from trioserver.services.accounts import Accounts
from trioserver.services.clock import now_ms
from trioserver.services.sessions import Requester, Sessions
from trioserver.storage.db import Database
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories.devices import DeviceRow


def device_json(row: DeviceRow) -> dict[str, Any]:
    # Unset values are sent as null, not omitted: clients such as matrix-nio require the keys.
    return {
        "device_id": row.device_id,
        "display_name": row.display_name,
        "last_seen_ip": row.last_seen_ip,
        "last_seen_ts": row.last_seen_ts,
    }


class Devices:
    def __init__(self, db: Database, sessions: Sessions, accounts: Accounts) -> None:
        self._db = db
        self._sessions = sessions
        self._accounts = accounts

    async def list_all(self, requester: Requester) -> list[DeviceRow]:
        return await self._db.read(lambda c: devices_repo.list_devices(c, requester.user_id))

    async def get(self, requester: Requester, device_id: str) -> DeviceRow:
        row = await self._db.read(
            lambda c: devices_repo.get_device(c, requester.user_id, device_id)
        )
        if row is None:
            raise not_found("Device not found")
        return row

    async def rename(self, requester: Requester, device_id: str, display_name: str | None
                     ) -> bool:
        """Rename a device; True when an application service created it instead (spec v1.17,
        MSC4190: only appservices may create devices this way, for their users)."""
        user_id = requester.user_id
        create = requester.appservice_id is not None

        def txn(conn: apsw.Connection) -> bool | None:
            if devices_repo.set_display_name(conn, user_id, device_id, display_name):
                return False
            if create and devices_repo.upsert_device(conn, user_id, device_id, display_name,
                                                     now_ms()):
                return True
            return None

        created = await self._db.write(txn)
        if created is None:
            raise not_found("Device not found")
        return created

    async def delete(
        self,
        requester: Requester,
        device_ids: list[str],
        auth: Mapping[str, Any] | None,
        *,
        method: str,
        path: str,
    ) -> None:
        """Delete devices after UIA (none for application services, spec v1.17); unknown ids
        are ignored, as the spec allows."""
        if requester.appservice_id is None:
            await self._accounts.require_password_uia(requester, auth, method=method,
                                                      path=path)
        deleted = await self._db.write(
            lambda c: devices_repo.delete_devices(c, requester.user_id, device_ids)
        )
        for device_id in deleted:
            self._sessions.forget_device(requester.user_id, device_id)
        await self._sessions.devices_deleted(requester.user_id, deleted)
