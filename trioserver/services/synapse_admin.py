"""A Synapse-compatible subset of the admin API (`/_synapse/admin`), for tools like
synapse-admin: users (list, query, deactivate, reset password, admin flag) and rooms (list,
members). Every call needs a server admin; registration tokens are config-only and read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from trioserver.config import Config
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.identifiers import split_user_id
from trioserver.services.account_admin import AccountAdmin
from trioserver.services.accounts import Accounts
from trioserver.services.sessions import Requester, Sessions
from trioserver.storage.db import Database
from trioserver.storage.repositories import account_admin as users_admin_repo
from trioserver.storage.repositories import admin_rooms as rooms_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.repositories.account_admin import AdminUserRow
from trioserver.storage.repositories.admin_rooms import AdminRoomRow

MAX_PAGE = 1000


@dataclass(frozen=True)
class UserQuery:
    offset: int
    limit: int
    guests: bool
    deactivated: bool
    name: str | None


@dataclass(frozen=True)
class UserChange:
    """The fields of PUT /_synapse/admin/v2/users/{userId} this server acts on."""

    password: str | None
    logout_devices: bool
    deactivated: bool | None
    admin: bool | None
    locked: bool | None


class SynapseAdmin:
    def __init__(self, config: Config, db: Database, sessions: Sessions, accounts: Accounts,
                 account_admin: AccountAdmin) -> None:
        self._config = config
        self._db = db
        self._sessions = sessions
        self._accounts = accounts
        self._admin = account_admin

    async def list_users(self, requester: Requester, q: UserQuery
                         ) -> tuple[list[AdminUserRow], int]:
        await self._admin.require_admin(requester)
        return await self._db.read(lambda c: users_admin_repo.list_users_page(
            c, offset=q.offset, limit=min(q.limit, MAX_PAGE), include_guests=q.guests,
            include_deactivated=q.deactivated, name_contains=q.name))

    async def get_user(self, requester: Requester, user_id: str) -> AdminUserRow:
        await self._admin.require_admin(requester)
        return await self._existing_user(user_id)

    async def _existing_user(self, user_id: str) -> AdminUserRow:
        parts = split_user_id(user_id)
        if parts is None or parts[1] != self._config.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only look up local users")
        row = await self._db.read(lambda c: users_admin_repo.get_admin_user(c, user_id))
        if row is None:
            raise not_found("User not found")
        return row

    async def change_user(self, requester: Requester, user_id: str, change: UserChange
                          ) -> AdminUserRow:
        """Apply `change`; unknown users are not created here (registration does that)."""
        await self._admin.require_admin(requester)
        row = await self._existing_user(user_id)
        if change.deactivated is False and row.deactivated:
            raise MatrixError(400, Codes.INVALID_PARAM, "Reactivating accounts is not supported")
        if user_id == requester.user_id and (change.deactivated or change.admin is False):
            raise MatrixError(400, Codes.INVALID_PARAM, "You may not demote or deactivate yourself")
        if change.password is not None and not row.deactivated and not change.deactivated:
            await self._accounts.reset_password(user_id, change.password,
                                                logout_devices=change.logout_devices)
        if change.admin is not None:
            flag = change.admin
            await self._db.write(lambda c: users_repo.set_admin(c, user_id, flag))
        if change.locked is not None:
            locked = change.locked
            await self._db.write(lambda c: users_admin_repo.set_locked(c, user_id, locked))
            self._sessions.forget_device(user_id)
        if change.deactivated and not row.deactivated:
            await self._accounts.deactivate_user(user_id)
        return await self._existing_user(user_id)

    async def list_rooms(self, requester: Requester, *, offset: int, limit: int
                         ) -> tuple[list[AdminRoomRow], int]:
        await self._admin.require_admin(requester)
        server_name = self._config.server_name
        return await self._db.read(lambda c: rooms_repo.list_rooms(
            c, server_name, offset=offset, limit=min(limit, MAX_PAGE)))

    async def room_members(self, requester: Requester, room_id: str) -> list[str]:
        await self._admin.require_admin(requester)
        if not await self._db.read(lambda c: rooms_repo.room_exists(c, room_id)):
            raise not_found("Room not found")
        return await self._db.read(lambda c: rooms_repo.joined_members(c, room_id))

    async def registration_tokens(self, requester: Requester) -> tuple[str, ...]:
        await self._admin.require_admin(requester)
        return self._config.registration.tokens
