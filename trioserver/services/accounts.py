"""Accounts: registration, password login, password change, deactivation, logout."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import apsw

from trioserver.config import Config
from trioserver.errors import Codes, MatrixError, forbidden
from trioserver.identifiers import (
    MAX_USER_ID_BYTES,
    is_valid_device_id,
    is_valid_localpart,
    split_user_id,
)
from trioserver.identifiers import user_id as make_user_id
from trioserver.services.clock import now_ms
from trioserver.services.login_tokens import LoginTokens
from trioserver.services.passwords import PasswordHasher
from trioserver.services.ratelimit import RateLimiter
from trioserver.services.sessions import MintedTokens, Requester, Sessions, random_device_id
from trioserver.services.uia import UIA, StageFailed
from trioserver.storage.db import Database
from trioserver.storage.repositories import account_admin as account_admin_repo
from trioserver.storage.repositories import deactivation as deactivation_repo
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import profiles as profiles_repo
from trioserver.storage.repositories import registration_tokens as tokens_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.ttl_store import TTLStore

if TYPE_CHECKING:
    from trioserver.services.appservice.registration import Registration
    from trioserver.services.appservice.registry import AppServices

MAX_PASSWORD_LENGTH = 512
SHARED_SECRET_NONCE_S = 60.0
PASSWORD_FLOWS: list[list[str]] = [["m.login.password"]]


@dataclass(frozen=True)
class RegisterRequest:
    username: str | None
    password: str | None
    device_id: str | None
    initial_device_display_name: str | None
    inhibit_login: bool
    refresh_token: bool
    auth: Mapping[str, Any] | None


@dataclass(frozen=True)
class LoginRequest:
    login_type: str
    user: str | None
    password: str | None
    device_id: str | None
    initial_device_display_name: str | None
    refresh_token: bool
    token: str | None = None  # m.login.token


@dataclass(frozen=True)
class SessionResult:
    """What /register and /login answer."""

    user_id: str
    device_id: str | None
    tokens: MintedTokens | None


class Accounts:
    def __init__(
        self,
        config: Config,
        db: Database,
        sessions: Sessions,
        hasher: PasswordHasher,
        uia: UIA,
        limiter: RateLimiter,
        login_tokens: LoginTokens | None = None,
        ttl: TTLStore | None = None,
    ) -> None:
        self.login_tokens = login_tokens
        self._ttl = ttl if ttl is not None else TTLStore()  # shared-secret nonces
        self._config = config
        self._db = db
        self._sessions = sessions
        self._hasher = hasher
        self._uia = uia
        self._limiter = limiter
        self._limits = config.rate_limits
        # Set by the composition root: exclusive namespaces refuse normal registrations.
        self.appservices: AppServices | None = None
        # Set by the composition root: wakes the task that takes deactivated users out of rooms.
        self.on_deactivated: Callable[[], None] | None = None
        # Set by the composition root: the room reader then shows the user's events redacted.
        self.on_erased: Callable[[str], None] | None = None

    @property
    def server_name(self) -> str:
        return self._config.server_name

    # -- usernames and passwords ---------------------------------------------------------

    def _local_user_id(self, username: str) -> str:
        return map_username(username, self.server_name)

    def check_password_strength(self, password: str) -> None:
        if len(password) < self._config.registration.min_password_length:
            raise MatrixError(
                400, Codes.WEAK_PASSWORD,
                f"Password must be at least {self._config.registration.min_password_length}"
                " characters",
            )
        if len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, Codes.INVALID_PARAM, "Password is too long")

    async def check_username_available(self, username: str) -> None:
        uid = self._local_user_id(username)
        self._ensure_not_exclusive(uid)
        await self._ensure_free(uid)

    def _ensure_not_exclusive(self, uid: str) -> None:
        if self.appservices is not None and self.appservices.is_exclusive_user(uid):
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "This user ID is reserved by an application service")

    async def _ensure_free(self, uid: str) -> None:
        if await self._db.read(lambda c: users_repo.user_exists(c, uid)):
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.")

    # -- registration --------------------------------------------------------------------

    async def registration_flows(self) -> list[list[str]]:
        """Config tokens make a token required; otherwise open registration needs none, and a
        closed server takes tokens made through the admin API, if it has any."""
        if self._config.registration.tokens:
            return [["m.login.registration_token"]]
        if self._config.registration.open:
            return [["m.login.dummy"]]
        if await self._db.read(tokens_repo.count):
            return [["m.login.registration_token"]]
        return []

    async def check_registration_token(self, token: str, client_ip: str) -> bool:
        """The validity endpoint: rate-limited, so tokens cannot be guessed quickly."""
        self._limiter.check("register-token", client_ip, self._limits.registration_per_address)
        return await self.registration_token_valid(token)

    def _config_token(self, token: str) -> bool:
        return any(secrets.compare_digest(token.encode(), t.encode())
                   for t in self._config.registration.tokens)

    async def registration_token_valid(self, token: str) -> bool:
        if self._config_token(token):
            return True
        row = await self._db.read(lambda c: tokens_repo.get(c, token))
        return row is not None and row.valid(now_ms())

    async def _verify_dummy(self, auth: Mapping[str, Any]) -> None:
        return None

    async def _verify_registration_token(self, auth: Mapping[str, Any]) -> None:
        token = auth.get("token")
        if not isinstance(token, str) or not await self.registration_token_valid(token):
            raise StageFailed(Codes.UNAUTHORIZED, "Invalid registration token")

    async def register(self, req: RegisterRequest, *, path: str, client_ip: str) -> SessionResult:
        flows = await self.registration_flows()
        if not flows:
            raise forbidden("Registration has been disabled")
        # Only completed registrations count (as in Synapse); an empty bucket refuses early.
        self._limiter.ensure_available("register", client_ip, self._limits.registration_per_address)
        uid = self._local_user_id(req.username) if req.username is not None else None
        if uid is not None:
            self._ensure_not_exclusive(uid)
            await self._ensure_free(uid)
        if req.password is not None:
            self.check_password_strength(req.password)
        if req.device_id is not None and not is_valid_device_id(req.device_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device_id")
        await self._uia.authenticate(
            req.auth,
            flows=flows,
            verifiers={
                "m.login.dummy": self._verify_dummy,
                "m.login.registration_token": self._verify_registration_token,
            },
            method="POST",
            path=path,
            user_id=None,
        )
        if req.password is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing password")
        password_hash = await self._hasher.hash(req.password)
        if uid is None:
            uid = make_user_id(
                "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12)),
                self.server_name,
            )
        self._limiter.record("register", client_ip, self._limits.registration_per_address)
        token = req.auth.get("token") if isinstance(req.auth, Mapping) and \
            req.auth.get("type") == "m.login.registration_token" else None
        return await self._create_account(
            uid, password_hash, is_guest=False,
            device_id=None if req.inhibit_login else (req.device_id or random_device_id()),
            display_name=req.initial_device_display_name,
            with_refresh=req.refresh_token,
            use_token=token if isinstance(token, str) and not self._config_token(token)
            else None,
        )

    async def register_appservice_user(
        self, appservice: Registration, req: RegisterRequest
    ) -> SessionResult:
        """POST /register with `m.login.application_service` (no password, no UIA).

        The username must fall in the appservice's user namespace and in no other appservice's
        exclusive one (spec: M_EXCLUSIVE for both).
        """
        if req.username is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'username'")
        uid = self._local_user_id(req.username)
        assert self.appservices is not None
        # The sender (`sender_localpart`) is the appservice's own user too (bridges register
        # it at start-up; it exists already, so they get M_USER_IN_USE, which they expect).
        if not appservice.is_interested_in_user(uid, self.server_name) or (
                self.appservices.is_exclusive_user(uid, except_for=appservice)):
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "User ID is not in the application service's namespace")
        if req.device_id is not None and not is_valid_device_id(req.device_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device_id")
        await self._ensure_free(uid)
        return await self._create_account(
            uid, None, is_guest=False,
            device_id=None if req.inhibit_login else (req.device_id or random_device_id()),
            display_name=req.initial_device_display_name,
            with_refresh=req.refresh_token,
        )

    async def create_by_admin(self, uid: str, password: str | None, *, admin: bool,
                              displayname: str | None) -> None:
        """The admin API's account creation (PUT /_synapse/admin/v2/users/{userId} for a new
        user): no UIA and no registration switch, but the same user-ID, namespace and password
        rules; without a password the account cannot log in with one."""
        if map_username(uid, self.server_name) != uid:
            raise MatrixError(400, Codes.INVALID_USERNAME,
                              "User IDs are lower case, without characters like '/'")
        self._ensure_not_exclusive(uid)
        password_hash = None
        if password is not None:
            self.check_password_strength(password)
            password_hash = await self._hasher.hash(password)
        name = displayname if displayname is not None else uid[1:].split(":", 1)[0]

        def txn(conn: apsw.Connection) -> None:
            users_repo.insert_user(conn, uid, password_hash, now_ms=now_ms(), is_admin=admin)
            profiles_repo.set_field(conn, uid, "displayname", json.dumps(name))

        try:
            await self._db.write(txn)
        except users_repo.UserExists:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.") from None

    def shared_secret_nonce(self) -> str:
        """GET /_synapse/admin/v1/register: a one-use nonce, valid a minute."""
        if not self._config.registration.shared_secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        nonce = secrets.token_hex(32)
        self._ttl.set(f"shared_secret_nonce:{nonce}", True, SHARED_SECRET_NONCE_S)
        return nonce

    async def register_shared_secret(self, nonce: str, username: str, password: str,
                                     admin: bool, user_type: str | None, mac: str,
                                     displayname: str | None) -> SessionResult:
        """POST /_synapse/admin/v1/register: an account (and a session) for whoever proves
        knowledge of `registration.shared_secret` with an HMAC-SHA1 over the nonce, username,
        password and admin flag, as Synapse defines it."""
        secret = self._config.registration.shared_secret
        if not secret:
            raise MatrixError(400, Codes.UNKNOWN, "Shared secret registration is not enabled")
        if not self._ttl.delete(f"shared_secret_nonce:{nonce}"):
            raise MatrixError(400, Codes.UNKNOWN, "Unrecognised nonce")
        parts = [nonce, username, password, "admin" if admin else "notadmin"]
        if user_type is not None:
            parts.append(user_type)
        want = hmac.new(secret.encode(), "\x00".join(parts).encode(), hashlib.sha1).hexdigest()
        if not hmac.compare_digest(want.encode(), mac.encode()):
            raise MatrixError(403, Codes.FORBIDDEN, "HMAC incorrect")
        uid = self._local_user_id(username)
        self._ensure_not_exclusive(uid)
        self.check_password_strength(password)
        password_hash = await self._hasher.hash(password)
        result = await self._create_account(uid, password_hash, is_guest=False,
                                            device_id=random_device_id(),
                                            display_name=None, with_refresh=False,
                                            displayname=displayname, is_admin=admin)
        return result

    async def register_guest(self, display_name: str | None, client_ip: str) -> SessionResult:
        if not self._config.registration.allow_guests:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access is disabled")
        self._limiter.check("register", client_ip, self._limits.registration_per_address)
        localpart = "".join(secrets.choice(string.digits) for _ in range(16))
        return await self._create_account(
            make_user_id(localpart, self.server_name), None, is_guest=True,
            device_id=random_device_id(), display_name=display_name, with_refresh=False,
        )

    async def _create_account(
        self,
        uid: str,
        password_hash: str | None,
        *,
        is_guest: bool,
        device_id: str | None,
        display_name: str | None,
        with_refresh: bool,
        use_token: str | None = None,
        displayname: str | None = None,
        is_admin: bool = False,
    ) -> SessionResult:
        """`use_token`: an admin-API registration token the account is made with; it is
        counted in the same transaction, which fails if it was used up meanwhile."""
        minted = self._sessions.mint(with_refresh=with_refresh) if device_id else None
        localpart = uid[1:].split(":", 1)[0]

        def txn(conn: apsw.Connection) -> None:
            now = now_ms()
            if use_token is not None and not tokens_repo.use(conn, use_token, now):
                raise _TokenUsedUp
            users_repo.insert_user(conn, uid, password_hash, now_ms=now, is_guest=is_guest,
                                   is_admin=is_admin)
            profiles_repo.set_field(conn, uid, "displayname",
                                    json.dumps(displayname if displayname else localpart))
            if device_id is not None and minted is not None:
                devices_repo.upsert_device(conn, uid, device_id, display_name, now)
                self._sessions.store(conn, minted, uid, device_id)

        try:
            await self._db.write(txn)
        except users_repo.UserExists:
            raise MatrixError(400, Codes.USER_IN_USE, "User ID already taken.") from None
        except _TokenUsedUp:
            raise MatrixError(403, Codes.FORBIDDEN,
                              "The registration token was used up or expired") from None
        return SessionResult(uid, device_id, minted)

    # -- login ----------------------------------------------------------------------------

    async def login(self, req: LoginRequest, *, client_ip: str) -> SessionResult:
        limits = self._config.rate_limits
        self._limiter.check("login", client_ip, limits.login_per_address)
        if req.login_type == "m.login.token" and self.login_tokens is not None:
            return await self._login_with_token(req)
        if req.login_type != "m.login.password":
            raise MatrixError(400, Codes.UNKNOWN, "Unknown login type")
        if req.user is None or req.password is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing user or password")
        if req.device_id is not None and not is_valid_device_id(req.device_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device_id")
        try:
            uid = self._local_user_id(req.user)
        except MatrixError:
            raise forbidden("Invalid username or password") from None
        self._limiter.ensure_available("login-fail", uid, limits.login_failures_per_account)
        user = await self._db.read(lambda c: users_repo.get_user(c, uid))
        if user is not None and user.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        ok = await self._hasher.verify(user.password_hash if user else None, req.password)
        if user is None or not ok:
            self._limiter.record("login-fail", uid, limits.login_failures_per_account)
            raise forbidden("Invalid username or password")
        return await self._start_session(uid, req)

    async def login_appservice_user(self, appservice: Registration, req: LoginRequest
                                    ) -> SessionResult:
        """`m.login.application_service` (spec v1.2+): a new device for a user in the
        appservice's namespace, authenticated by its as_token alone."""
        if req.user is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing identifier")
        if req.device_id is not None and not is_valid_device_id(req.device_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device_id")
        try:
            uid = self._local_user_id(req.user)
        except MatrixError:
            raise forbidden("Invalid user") from None
        if not appservice.is_interested_in_user(uid, self.server_name):
            raise MatrixError(403, Codes.EXCLUSIVE,
                              "User is not in the application service's namespace")
        user = await self._db.read(lambda c: users_repo.get_user(c, uid))
        if user is None:
            raise forbidden("Unknown user")
        if user.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        return await self._start_session(uid, req)

    async def ensure_appservice_senders(self) -> list[str]:
        """Create each appservice's sender user if it does not exist yet (so it has a profile
        and can be looked up like any user); returns the ones created."""
        created: list[str] = []
        for reg in self.appservices.all() if self.appservices is not None else ():
            uid = reg.sender(self.server_name)
            if await self._db.read(partial(users_repo.user_exists, user_id=uid)):
                continue
            try:
                await self._create_account(uid, None, is_guest=False, device_id=None,
                                           display_name=None, with_refresh=False)
            except MatrixError:
                continue  # created meanwhile
            created.append(uid)
        return created

    async def _login_with_token(self, req: LoginRequest) -> SessionResult:
        """`m.login.token`: a token from POST /v1/login/get_token, good once."""
        assert self.login_tokens is not None
        if req.token is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing token")
        if req.device_id is not None and not is_valid_device_id(req.device_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device_id")
        uid = self.login_tokens.consume(req.token)
        if uid is None:
            raise forbidden("Invalid login token")
        user = await self._db.read(lambda c: users_repo.get_user(c, uid))
        if user is None or user.deactivated:
            raise MatrixError(403, Codes.USER_DEACTIVATED, "This account has been deactivated")
        return await self._start_session(uid, req)

    async def _start_session(self, uid: str, req: LoginRequest) -> SessionResult:
        flags = await self._db.read(lambda c: account_admin_repo.get_flags(c, uid))
        if flags is not None and flags.locked:
            raise MatrixError(401, Codes.USER_LOCKED, "This account has been locked",
                              soft_logout=True)
        device_id = req.device_id or random_device_id()
        minted = self._sessions.mint(with_refresh=req.refresh_token)

        def txn(conn: apsw.Connection) -> None:
            devices_repo.upsert_device(conn, uid, device_id, req.initial_device_display_name,
                                       now_ms())
            self._sessions.store(conn, minted, uid, device_id)

        await self._db.write(txn)
        return SessionResult(uid, device_id, minted)

    # -- UIA by password ------------------------------------------------------------------

    async def require_password_uia(
        self, requester: Requester, auth: Mapping[str, Any] | None, *, method: str, path: str
    ) -> None:
        """Protect a sensitive operation with an m.login.password UIA stage for `requester`."""
        if requester.is_guest:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests cannot do this")

        async def verify(stage: Mapping[str, Any]) -> None:
            await self._verify_own_password(requester.user_id, stage)

        await self._uia.authenticate(
            auth, flows=PASSWORD_FLOWS, verifiers={"m.login.password": verify},
            method=method, path=path, user_id=requester.user_id,
        )

    async def _verify_own_password(self, uid: str, stage: Mapping[str, Any]) -> None:
        claimed = _identifier_user(stage)
        password = stage.get("password")
        if claimed is None or not isinstance(password, str):
            raise StageFailed(Codes.MISSING_PARAM, "auth needs an m.id.user and a password")
        try:
            claimed_uid = self._local_user_id(claimed)
        except MatrixError:
            raise StageFailed(Codes.FORBIDDEN, "Invalid username or password") from None
        limit = self._config.rate_limits.login_failures_per_account
        self._limiter.ensure_available("login-fail", uid, limit)
        if claimed_uid != uid:
            raise StageFailed(Codes.FORBIDDEN, "Invalid username or password")
        user = await self._db.read(lambda c: users_repo.get_user(c, uid))
        if not await self._hasher.verify(user.password_hash if user else None, password):
            self._limiter.record("login-fail", uid, limit)
            raise StageFailed(Codes.FORBIDDEN, "Invalid username or password")

    # -- password, deactivation, logout ----------------------------------------------------

    async def change_password(
        self, requester: Requester, new_password: str, *, logout_devices: bool
    ) -> None:
        self.check_password_strength(new_password)
        new_hash = await self._hasher.hash(new_password)

        def txn(conn: apsw.Connection) -> list[str]:
            users_repo.set_password_hash(conn, requester.user_id, new_hash)
            if logout_devices:
                return devices_repo.delete_all_devices(conn, requester.user_id,
                                                       requester.device_id)
            return []

        deleted = await self._db.write(txn)
        if logout_devices:
            self._sessions.forget_device(requester.user_id)
            await self._sessions.devices_deleted(requester.user_id, deleted)

    async def deactivate(self, requester: Requester, *, erase: bool = False) -> None:
        await self.deactivate_user(requester.user_id, erase=erase)

    async def reset_password(self, uid: str, new_password: str, *, logout_devices: bool) -> None:
        """An admin's password reset: no UIA, and every device logged out unless asked not."""
        self.check_password_strength(new_password)
        new_hash = await self._hasher.hash(new_password)

        def txn(conn: apsw.Connection) -> list[str]:
            users_repo.set_password_hash(conn, uid, new_hash)
            return devices_repo.delete_all_devices(conn, uid) if logout_devices else []

        deleted = await self._db.write(txn)
        if logout_devices:
            self._sessions.forget_device(uid)
            await self._sessions.devices_deleted(uid, deleted)

    async def deactivate_user(self, uid: str, *, erase: bool = False) -> None:
        """Deactivate at once (devices, tokens, profile, pushers, password; with `erase`, the
        account's non-event data too); its rooms are left in the background."""
        deleted = await self._db.write(partial(deactivation_repo.deactivate, user_id=uid,
                                               erase=erase, now_ms=now_ms()))
        self._sessions.forget_device(uid)
        await self._sessions.devices_deleted(uid, deleted)
        if erase and self.on_erased is not None:
            self.on_erased(uid)
        if self.on_deactivated is not None:
            self.on_deactivated()

    async def logout(self, requester: Requester) -> None:
        """POST /logout: the token's device is deleted with all its tokens."""
        deleted = await self._db.write(
            lambda c: devices_repo.delete_devices(c, requester.user_id, [requester.device_id])
        )
        self._sessions.forget_device(requester.user_id, requester.device_id)
        await self._sessions.devices_deleted(requester.user_id, deleted)

    async def logout_all(self, requester: Requester) -> None:
        deleted = await self._db.write(
            lambda c: devices_repo.delete_all_devices(c, requester.user_id))
        self._sessions.forget_device(requester.user_id)
        await self._sessions.devices_deleted(requester.user_id, deleted)


class _TokenUsedUp(Exception):
    """An admin-API registration token stopped being valid before the account was made."""


def map_username(username: str, server_name: str) -> str:
    """Map a requested username (localpart or full user ID) onto a user ID on this server.

    Usernames are lower-cased, as Synapse does; anything else outside the localpart grammar is
    refused with `M_INVALID_USERNAME`.
    """
    localpart = username.lower()
    if localpart.startswith("@"):
        parts = split_user_id(localpart)
        if parts is None or parts[1] != server_name.lower():
            raise MatrixError(400, Codes.INVALID_USERNAME, "Invalid username")
        localpart = parts[0]
    if not localpart or not is_valid_localpart(localpart):
        raise MatrixError(
            400, Codes.INVALID_USERNAME,
            "User ID can only contain characters a-z, 0-9, or '=_-./+'",
        )
    uid = make_user_id(localpart, server_name)
    if len(uid.encode()) > MAX_USER_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_USERNAME, "User ID is too long")
    return uid


def _identifier_user(auth: Mapping[str, Any]) -> str | None:
    """The user named by an `m.id.user` identifier, or the deprecated top-level `user`."""
    identifier = auth.get("identifier")
    if isinstance(identifier, Mapping):
        if identifier.get("type") != "m.id.user":
            return None
        user = identifier.get("user")
        return user if isinstance(user, str) else None
    user = auth.get("user")
    return user if isinstance(user, str) else None


def register_offline(config: Config, username: str, password: str, *, admin: bool) -> str:
    """`trioserver register-user`: create an account directly in the data dir's database."""
    uid = map_username(username, config.server_name)
    if len(password) < config.registration.min_password_length:
        raise MatrixError(400, Codes.WEAK_PASSWORD,
                          f"Password must be at least {config.registration.min_password_length}"
                          " characters")
    hasher = PasswordHasher(
        opslimit=config.auth.password_hash_opslimit,
        memlimit_kib=config.auth.password_hash_memlimit_kib,
        concurrency=1,
    )
    password_hash = hasher.hash_sync(password)
    localpart = uid[1:].split(":", 1)[0]
    db = Database.open(config.database_path, readers=1, synchronous=config.database.synchronous)
    try:
        def txn(conn: apsw.Connection) -> None:
            users_repo.insert_user(conn, uid, password_hash, now_ms=now_ms(), is_admin=admin)
            profiles_repo.set_field(conn, uid, "displayname", json.dumps(localpart))

        db.write_sync(txn)
    except users_repo.UserExists:
        raise MatrixError(400, Codes.USER_IN_USE, f"{uid} already exists") from None
    finally:
        db.close()
    return uid
