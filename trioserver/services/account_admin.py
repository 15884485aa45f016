"""Server administration of accounts (spec "Server administration"): whois, lock, suspend.

Locking and suspension are flags on `users`; the access-token lookup reads them, so changing
one drops the user's cached tokens to take effect on the very next request.
"""

from __future__ import annotations

from dataclasses import dataclass

from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.identifiers import split_user_id
from trioserver.services.sessions import Requester, Sessions
from trioserver.storage.db import Database
from trioserver.storage.repositories import account_admin as repo
from trioserver.storage.repositories.account_admin import AccountFlags, SessionRow


@dataclass(frozen=True)
class Whois:
    user_id: str
    sessions: list[SessionRow]


class AccountAdmin:
    def __init__(self, server_name: str, db: Database, sessions: Sessions) -> None:
        self._server_name = server_name
        self._db = db
        self._sessions = sessions

    async def is_admin(self, user_id: str) -> bool:
        flags = await self._db.read(lambda c: repo.get_flags(c, user_id))
        return flags is not None and flags.is_admin and not flags.deactivated

    async def require_admin(self, requester: Requester) -> None:
        if not await self.is_admin(requester.user_id):
            raise forbidden("You are not a server admin")

    async def whois(self, requester: Requester, target: str) -> Whois:
        if target != requester.user_id:
            await self.require_admin(requester)
        if not self._is_local(target):
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only look up local users")
        flags = await self._db.read(lambda c: repo.get_flags(c, target))
        if flags is None:
            raise not_found("Unknown user")
        return Whois(target, await self._db.read(lambda c: repo.list_sessions(c, target)))

    async def _local_target(self, requester: Requester, target: str) -> AccountFlags:
        """The flags of `target` for the lock/suspend endpoints (errors as the spec lists)."""
        await self.require_admin(requester)
        if not self._is_local(target):
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only manage local users")
        flags = await self._db.read(lambda c: repo.get_flags(c, target))
        if flags is None or flags.deactivated:
            raise not_found("Unknown or deactivated user")
        return flags

    async def _check_changeable(self, requester: Requester, target: str,
                                flags: AccountFlags) -> None:
        if target == requester.user_id:
            raise forbidden("You cannot change this status of your own account")
        if flags.is_admin:
            raise forbidden("You cannot change this status of another admin")

    async def suspended(self, requester: Requester, target: str) -> bool:
        return (await self._local_target(requester, target)).suspended

    async def locked(self, requester: Requester, target: str) -> bool:
        return (await self._local_target(requester, target)).locked

    async def set_suspended(self, requester: Requester, target: str, value: bool) -> None:
        flags = await self._local_target(requester, target)
        await self._check_changeable(requester, target, flags)
        await self._db.write(lambda c: repo.set_suspended(c, target, value))
        self._sessions.forget_device(target)

    async def set_locked(self, requester: Requester, target: str, value: bool) -> None:
        flags = await self._local_target(requester, target)
        await self._check_changeable(requester, target, flags)
        await self._db.write(lambda c: repo.set_locked(c, target, value))
        self._sessions.forget_device(target)

    def _is_local(self, user_id: str) -> bool:
        parts = split_user_id(user_id)
        return parts is not None and parts[1] == self._server_name


def require_not_suspended(requester: Requester) -> None:
    if requester.suspended:
        raise MatrixError(403, Codes.USER_SUSPENDED, "This account has been suspended")
