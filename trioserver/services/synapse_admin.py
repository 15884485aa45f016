"""A Synapse-compatible subset of the admin API (`/_synapse/admin`), for tools like
synapse-admin: users (list, query, deactivate, reset password, admin flag) and rooms (list,
members). Every call needs a server admin; registration tokens are config-only and read-only.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, replace
from typing import Any

import apsw
import trio

from trioserver.config import Config
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.identifiers import split_user_id
from trioserver.services.account_admin import AccountAdmin
from trioserver.services.accounts import Accounts
from trioserver.services.clock import now_ms
from trioserver.services.rooms.appender import Appender, Draft
from trioserver.services.sessions import Requester, Sessions
from trioserver.storage.blob_store import BlobStore
from trioserver.storage.db import Database
from trioserver.storage.repositories import account_admin as users_admin_repo
from trioserver.storage.repositories import admin_rooms as rooms_repo
from trioserver.storage.repositories import appservice_networks as networks_repo
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import media as media_repo
from trioserver.storage.repositories import registration_tokens as tokens_repo
from trioserver.storage.repositories import rooms as directory_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.repositories.account_admin import AdminUserRow
from trioserver.storage.repositories.admin_rooms import AdminRoomRow
from trioserver.storage.repositories.registration_tokens import TokenRow

MAX_PAGE = 1000
# Registration tokens: Synapse's alphabet and limits.
TOKEN_ALPHABET = string.ascii_letters + string.digits + "._~-"
MAX_TOKEN_LENGTH = 64


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
    displayname: str | None = None  # applied when the user is created


class SynapseAdmin:
    def __init__(self, config: Config, db: Database, sessions: Sessions, accounts: Accounts,
                 account_admin: AccountAdmin) -> None:
        self._config = config
        self._db = db
        self._sessions = sessions
        self._accounts = accounts
        self._admin = account_admin
        # Set by the composition root (room deletion and media purge need them).
        self.rooms: Appender | None = None
        self.blobs: BlobStore | None = None

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
                          ) -> tuple[AdminUserRow, bool]:
        """Apply `change`, creating the user first when there is none (as Synapse does);
        returns the user and whether it was created."""
        await self._admin.require_admin(requester)
        parts = split_user_id(user_id)
        if parts is None or parts[1] != self._config.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only look up local users")
        created = not await self._db.read(lambda c: users_repo.user_exists(c, user_id))
        if created:
            await self._accounts.create_by_admin(user_id, change.password,
                                                 admin=bool(change.admin),
                                                 displayname=change.displayname)
            change = replace(change, password=None)
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
        return await self._existing_user(user_id), created

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

    async def delete_room(self, requester: Requester, room_id: str) -> dict[str, Any]:
        """Synapse's DELETE /v1/rooms/{roomId}: every local member leaves (a leave event in
        their name), the room leaves the directory and loses its local aliases. The room's
        history stays (there is no purge)."""
        await self._admin.require_admin(requester)
        if self.rooms is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Room deletion is not available")
        if not await self._db.read(lambda c: rooms_repo.room_exists(c, room_id)):
            raise not_found("Room not found")
        suffix = f":{self._config.server_name}"
        members = await self._db.read(lambda c: events_repo.members(c, room_id))
        kicked, failed = [], []
        for user_id, membership, _ in members:
            if not user_id.endswith(suffix) or membership not in ("join", "invite", "knock"):
                continue
            try:
                await self.rooms.append(room_id, Draft("m.room.member", user_id,
                                                       {"membership": "leave"},
                                                       state_key=user_id))
                kicked.append(user_id)
            except MatrixError:
                failed.append(user_id)

        def unlist(conn: apsw.Connection) -> list[str]:
            directory_repo.set_published(conn, room_id, False)
            networks_repo.unpublish_everywhere(conn, room_id)
            aliases: list[str] = directory_repo.aliases_of_room(conn, room_id)
            for alias in aliases:
                directory_repo.delete_alias(conn, alias)
            return aliases

        aliases = await self._db.write(unlist)
        return {"kicked_users": kicked, "failed_to_kick_users": failed,
                "local_aliases": aliases, "new_room_id": None}

    async def delete_media_before(self, requester: Requester, before_ts: int) -> int:
        """Synapse's POST /v1/media/delete?before_ts=: local media created before then."""
        await self._admin.require_admin(requester)
        if self.blobs is None:
            return 0
        deleted: int = await self._db.write(
            lambda c: media_repo.delete_created_before(c, before_ts))
        referenced = await self._db.read(media_repo.referenced_hashes)
        blobs = self.blobs
        await trio.to_thread.run_sync(lambda: blobs.sweep(referenced.__contains__,
                                                           grace_s=3600.0))
        return deleted

    # -- registration tokens -----------------------------------------------------------------

    def _from_config(self, token: str) -> TokenRow | None:
        if token in self._config.registration.tokens:
            return TokenRow(token, None, 0, 0, None)
        return None

    async def registration_tokens(self, requester: Requester, valid: bool | None
                                  ) -> list[TokenRow]:
        """The config's tokens (unlimited, read-only) and the stored ones; `valid` filters."""
        await self._admin.require_admin(requester)
        rows = [TokenRow(t, None, 0, 0, None) for t in self._config.registration.tokens]
        rows += await self._db.read(tokens_repo.list_tokens)
        now = now_ms()
        return [r for r in rows if valid is None or r.valid(now) == valid]

    async def registration_token(self, requester: Requester, token: str) -> TokenRow:
        await self._admin.require_admin(requester)
        row = self._from_config(token) or await self._db.read(lambda c: tokens_repo.get(c, token))
        if row is None:
            raise not_found("No such registration token")
        return row

    async def create_registration_token(self, requester: Requester, token: str | None,
                                        length: int, uses_allowed: int | None,
                                        expiry_time: int | None) -> TokenRow:
        await self._admin.require_admin(requester)
        if token is None:
            token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))
        elif not 0 < len(token) <= MAX_TOKEN_LENGTH or \
                any(c not in TOKEN_ALPHABET for c in token):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              f"token: 1 to {MAX_TOKEN_LENGTH} of [A-Za-z0-9._~-]")
        if expiry_time is not None and expiry_time <= now_ms():
            raise MatrixError(400, Codes.INVALID_PARAM, "expiry_time must be in the future")
        if self._from_config(token) is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Token already in use")
        chosen = token
        try:
            return await self._db.write(lambda c: tokens_repo.create(c, chosen, uses_allowed,
                                                                     expiry_time))
        except tokens_repo.TokenExists:
            raise MatrixError(400, Codes.INVALID_PARAM, "Token already in use") from None

    async def update_registration_token(self, requester: Requester, token: str,
                                        changes: dict[str, int | None]) -> TokenRow:
        await self._admin.require_admin(requester)
        if self._from_config(token) is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, "This token is set in the config file")
        expiry = changes.get("expiry_time")
        if expiry is not None and expiry <= now_ms():
            raise MatrixError(400, Codes.INVALID_PARAM, "expiry_time must be in the future")
        row = await self._db.write(lambda c: tokens_repo.update(c, token, changes))
        if row is None:
            raise not_found("No such registration token")
        return row

    async def delete_registration_token(self, requester: Requester, token: str) -> None:
        await self._admin.require_admin(requester)
        if self._from_config(token) is not None:
            raise MatrixError(400, Codes.INVALID_PARAM, "This token is set in the config file")
        if not await self._db.write(lambda c: tokens_repo.delete(c, token)):
            raise not_found("No such registration token")
