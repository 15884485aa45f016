"""Profiles: displayname, avatar_url, m.tz and custom fields (spec v1.16, MSC4133)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from trioserver.config import Config
from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.identifiers import split_user_id
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import profiles as profiles_repo
from trioserver.storage.repositories import users as users_repo

MAX_PROFILE_BYTES = 64 * 1024
MAX_KEY_BYTES = 255
MAX_DISPLAYNAME_CHARS = 256
MAX_AVATAR_URL_CHARS = 1000
_KEY = re.compile(r"avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_MXC = re.compile(r"mxc://[A-Za-z0-9.\-:\[\]]+/[A-Za-z0-9_\-]+")
# Asks a user's server for their whole profile (federation query/profile).
RemoteProfile = Callable[[str], Awaitable[dict[str, Any]]]


def check_key(key: str) -> None:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise MatrixError(400, Codes.KEY_TOO_LARGE, "Profile keys are at most 255 bytes")
    if not _KEY.fullmatch(key):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid profile key {key[:64]!r}")


def _check_value(key: str, value: Any) -> None:
    if key == "displayname":
        if not isinstance(value, str):
            raise MatrixError(400, Codes.BAD_JSON, "displayname must be a string")
        if len(value) > MAX_DISPLAYNAME_CHARS:
            raise MatrixError(400, Codes.BAD_JSON, "displayname is too long")
    elif key == "avatar_url":
        if not isinstance(value, str) or (value and not _MXC.fullmatch(value)):
            raise MatrixError(400, Codes.BAD_JSON, "avatar_url must be an mxc:// URI")
        if len(value) > MAX_AVATAR_URL_CHARS:
            raise MatrixError(400, Codes.BAD_JSON, "avatar_url is too long")
    elif key == "m.tz" and not isinstance(value, str):
        raise MatrixError(400, Codes.BAD_JSON, "m.tz must be a string")


class Profiles:
    def __init__(self, config: Config, db: Database) -> None:
        self._server_name = config.server_name
        self._db = db
        # Set by the composition root when federation is on.
        self.remote: RemoteProfile | None = None

    def _local(self, user_id: str) -> str:
        parts = split_user_id(user_id)
        if parts is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
        if parts[1] != self._server_name:
            # Remote profiles need federation queries (not available yet).
            raise not_found("Profile not found")
        return user_id

    async def get(self, user_id: str) -> dict[str, Any]:
        parts = split_user_id(user_id)
        if parts is not None and parts[1] != self._server_name and self.remote is not None:
            return await self.remote(user_id)
        uid = self._local(user_id)

        def txn(conn: Any) -> dict[str, Any] | None:
            if not users_repo.user_exists(conn, uid):
                return None
            return profiles_repo.get_profile(conn, uid)

        profile = await self._db.read(txn)
        if profile is None:
            raise not_found("Profile not found")
        return profile

    async def get_field(self, user_id: str, key: str) -> Any:
        check_key(key)
        profile = await self.get(user_id)
        if key not in profile:
            raise not_found("Profile field not found")
        return profile[key]

    async def set_field(self, requester: Requester, user_id: str, key: str, value: Any) -> None:
        check_key(key)
        self._local(user_id)
        if requester.user_id != user_id:
            raise forbidden("You cannot change another user's profile")
        if key in ("displayname", "avatar_url") and (value is None or value == ""):
            # Old clients clear these by setting them empty or null.
            await self.delete_field(requester, user_id, key)
            return
        _check_value(key, value)
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))

        def txn(conn: Any) -> None:
            size = profiles_repo.profile_size_without(conn, user_id, key)
            if size + len(key.encode()) + len(encoded.encode()) > MAX_PROFILE_BYTES:
                raise MatrixError(400, Codes.PROFILE_TOO_LARGE, "The profile would exceed 64 KiB")
            profiles_repo.set_field(conn, user_id, key, encoded)

        await self._db.write(txn)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        check_key(key)
        self._local(user_id)
        if requester.user_id != user_id:
            raise forbidden("You cannot change another user's profile")
        await self._db.write(lambda c: profiles_repo.delete_field(c, user_id, key))
