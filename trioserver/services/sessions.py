"""Access and refresh tokens: minting, authenticating requests, refreshing, revoking.

Tokens are 256-bit random strings shown to the client once; only their SHA-256 hashes are
stored. Authenticating a request is the hottest path in the server, so resolved tokens are kept in
an in-process LRU cache. Every revocation goes through this service and drops the affected cache
entries; a generation counter keeps a lookup that raced with a revocation from re-caching a token
that was just revoked.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import apsw

from trioserver.errors import Codes, MatrixError
from trioserver.services.clock import now_ms
from trioserver.storage.db import Database
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.repositories.devices import TokenRow

if TYPE_CHECKING:
    from trioserver.services.appservice.registration import Registration
    from trioserver.services.appservice.registry import AppServices

log = logging.getLogger(__name__)

CACHE_SIZE = 20_000
TOUCH_INTERVAL_MS = 60_000


@dataclass(frozen=True)
class Requester:
    """Who made an authenticated request."""

    user_id: str
    device_id: str
    is_guest: bool
    token_hash: bytes
    # Suspended accounts (spec v1.18) may read and leave, not send, join or edit their profile.
    suspended: bool = False
    # Set when the request used an application service's as_token (identity assertion).
    appservice_id: str | None = None


@dataclass(frozen=True)
class MintedTokens:
    """Fresh tokens for one session, before they are stored."""

    access_token: str
    access_hash: bytes
    refresh_token: str | None
    refresh_hash: bytes | None
    expires_in_ms: int | None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def random_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


def _unknown_token(soft_logout: bool = False) -> MatrixError:
    return MatrixError(
        401, Codes.UNKNOWN_TOKEN, "Unrecognised access token", soft_logout=soft_logout
    )


class Sessions:
    def __init__(self, db: Database, *, refreshable_lifetime_ms: int) -> None:
        self._db = db
        self._lifetime_ms = refreshable_lifetime_ms
        self._cache: OrderedDict[bytes, TokenRow] = OrderedDict()
        self._generation = 0
        self._last_touch: dict[tuple[str, str], int] = {}
        self._device_listeners: list[Callable[[str], None]] = []
        self._deletion_listeners: list[Callable[[str, list[str]], Awaitable[None]]] = []
        # Set by the composition root; as_tokens are checked only on a token-cache miss.
        self.appservices: AppServices | None = None

    def add_device_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(user_id)` whenever devices (or tokens) of a user went away."""
        self._device_listeners.append(listener)

    def add_deletion_listener(
        self, listener: Callable[[str, list[str]], Awaitable[None]]
    ) -> None:
        """Await `listener(user_id, device_ids)` after a deletion of those devices committed."""
        self._deletion_listeners.append(listener)

    async def devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """Tell the deletion listeners (federation: other servers) that devices went away.

        Called by every in-process path that deletes devices, after `forget_device`. A failing
        listener is logged, not raised: the deletion itself has happened.
        """
        if not device_ids:
            return
        for listener in self._deletion_listeners:
            try:
                await listener(user_id, device_ids)
            except Exception:
                log.exception("device-deletion listener failed for %s", user_id)

    # -- minting and storing -------------------------------------------------------------

    def mint(self, *, with_refresh: bool) -> MintedTokens:
        access = "tsat_" + secrets.token_urlsafe(32)
        refresh = "tsrt_" + secrets.token_urlsafe(32) if with_refresh else None
        return MintedTokens(
            access_token=access,
            access_hash=hash_token(access),
            refresh_token=refresh,
            refresh_hash=hash_token(refresh) if refresh else None,
            expires_in_ms=self._lifetime_ms if with_refresh else None,
        )

    @staticmethod
    def store(
        conn: apsw.Connection,
        minted: MintedTokens,
        user_id: str,
        device_id: str,
        *,
        prev_refresh_id: int | None = None,
    ) -> None:
        """Inside a write: persist freshly minted tokens for an existing device."""
        now = now_ms()
        refresh_id = None
        if minted.refresh_hash is not None:
            refresh_id = devices_repo.insert_refresh_token(
                conn, minted.refresh_hash, user_id, device_id, prev_id=prev_refresh_id, now_ms=now
            )
        devices_repo.insert_access_token(
            conn,
            minted.access_hash,
            user_id,
            device_id,
            refresh_token_id=refresh_id,
            expires_ts=now + minted.expires_in_ms if minted.expires_in_ms is not None else None,
            now_ms=now,
        )

    # -- authenticating --------------------------------------------------------------------

    async def authenticate(
        self,
        token: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        allow_expired: bool = False,
        query: Callable[[str], str | None] | None = None,
    ) -> Requester:
        """Resolve an access token, or raise `401 M_UNKNOWN_TOKEN`.

        `allow_expired` accepts a token past its lifetime (logout must work with one).
        `query` reads the request's query parameters (`user_id`, `device_id`) for an
        application service's identity assertion.
        """
        token_hash = hash_token(token)
        row = self._cache.get(token_hash)
        if row is not None:
            self._cache.move_to_end(token_hash)
        else:
            appservice = self.appservices.by_token(token) if self.appservices else None
            if appservice is not None:
                return await self._appservice_requester(appservice, token_hash, query)
            generation = self._generation
            row = await self._db.read(lambda c: devices_repo.get_access_token(c, token_hash))
            if row is None:
                raise _unknown_token()
            if generation == self._generation:
                self._cache[token_hash] = row
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        if row.deactivated:
            raise _unknown_token()
        if row.locked:
            raise MatrixError(401, Codes.USER_LOCKED, "This account has been locked",
                              soft_logout=True)
        now = now_ms()
        if row.expires_ts is not None and row.expires_ts <= now and not allow_expired:
            # Expired, not revoked: the client may refresh or log in again to the same device.
            raise _unknown_token(soft_logout=True)
        if row.refresh_token_id is not None and row.refresh_prev_id is not None:
            await self._first_use(token_hash, row)
        key = (row.user_id, row.device_id)
        if now - self._last_touch.get(key, 0) > TOUCH_INTERVAL_MS:
            self._last_touch[key] = now
            await self._db.write(
                lambda c: devices_repo.touch_device(c, row.user_id, row.device_id, ip,
                                                    user_agent, now)
            )
        return Requester(row.user_id, row.device_id, row.is_guest, token_hash,
                         suspended=row.suspended)

    async def _appservice_requester(
        self,
        appservice: Registration,
        token_hash: bytes,
        query: Callable[[str], str | None] | None,
    ) -> Requester:
        """Identity assertion (spec: Application Service API, Client-Server API extensions)."""
        assert self.appservices is not None
        sender = self.appservices.sender_of(appservice)
        user_id = (query("user_id") if query else None) or sender
        device_id = (query("device_id") or query("org.matrix.msc3202.device_id")
                     if query else None)
        if user_id != sender and not appservice.is_interested_in_user(
                user_id, self.appservices.server_name):
            raise MatrixError(403, Codes.FORBIDDEN,
                              "Application service cannot masquerade as this user")
        if user_id != sender or device_id is not None:
            uid = user_id

            def lookup(c: apsw.Connection) -> tuple[bool, bool]:
                user = users_repo.get_user(c, uid)
                known = user is not None and not user.deactivated
                device = (devices_repo.get_device(c, uid, device_id)
                          if known and device_id is not None else None)
                return known, device is not None

            known, has_device = await self._db.read(lookup)
            if not known and user_id != sender:
                raise MatrixError(403, Codes.FORBIDDEN,
                                  "Application service has not registered this user")
            if device_id is not None and not has_device:
                raise MatrixError(400, "M_UNKNOWN_DEVICE", "Unknown device for this user")
        # No device: operations that need one (one-time keys, to-device) cannot be done.
        return Requester(user_id, device_id or "", False, token_hash,
                         appservice_id=appservice.id)

    async def _first_use(self, token_hash: bytes, row: TokenRow) -> None:
        """First use of an access token from a refresh: the refresh token it replaced is revoked."""
        refresh_id = row.refresh_token_id
        assert refresh_id is not None
        generation = self._generation
        await self._db.write(lambda c: devices_repo.retire_previous_refresh(c, refresh_id))
        self.forget_device(row.user_id, row.device_id)
        # Re-cache only if nothing else was revoked (or the cache cleared) while we wrote.
        if self._generation == generation + 1:
            self._cache[token_hash] = replace(row, refresh_prev_id=None)

    # -- refreshing -----------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> MintedTokens:
        """POST /refresh: new access + refresh token; the old access token stops working."""
        old_hash = hash_token(refresh_token)
        minted = self.mint(with_refresh=True)

        def txn(conn: apsw.Connection) -> tuple[str, str] | None:
            old = devices_repo.get_refresh_token(conn, old_hash)
            if old is None:
                return None
            if old.prev_id is not None:
                # Using this refresh token is its first use: retire the one it replaced.
                devices_repo.retire_previous_refresh(conn, old.id)
            for h in devices_repo.access_hashes_of_refresh(conn, old.id):
                devices_repo.delete_access_token(conn, h)
            self.store(conn, minted, old.user_id, old.device_id, prev_refresh_id=old.id)
            return old.user_id, old.device_id

        owner = await self._db.write(txn)
        if owner is None:
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unknown refresh token", soft_logout=False)
        self.forget_device(*owner)
        return minted

    # -- revoking -------------------------------------------------------------------------

    def forget_device(self, user_id: str, device_id: str | None = None) -> None:
        """Drop cached tokens of one device, or of every device of the user when None.

        Call after any write that deleted tokens or devices, or deactivated the user.
        """
        for listener in self._device_listeners:
            listener(user_id)
        self._generation += 1
        stale = [
            h for h, row in self._cache.items()
            if row.user_id == user_id and (device_id is None or row.device_id == device_id)
        ]
        for h in stale:
            del self._cache[h]
        if device_id is None:
            for key in [k for k in self._last_touch if k[0] == user_id]:
                del self._last_touch[key]
        else:
            self._last_touch.pop((user_id, device_id), None)

    def clear_cache(self) -> None:
        """Drop every cached token: another process (an admin command) changed the database.

        Bumping the generation stops a lookup already under way from re-caching a row it read
        before the change.
        """
        self._generation += 1
        self._cache.clear()
        self._last_touch.clear()

    async def revoke_token(self, requester: Requester) -> None:
        """Revoke only the token that made this request (the device stays)."""
        await self._db.write(lambda c: devices_repo.delete_access_token(c, requester.token_hash))
        self._generation += 1
        self._cache.pop(requester.token_hash, None)
