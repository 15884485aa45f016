"""Short-lived, single-use login tokens (POST /v1/login/get_token, then `m.login.token`).

Tokens live only in the TTL store: a restart invalidates them, which is harmless for a
two-minute credential meant to sign in a second device right away.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from trioserver.storage.ttl_store import TTLStore

LOGIN_TOKEN_TTL_S = 120.0
# A password re-authentication this recent lets the device mint a token without another one.
FRESH_UIA_S = 300.0


@dataclass(frozen=True)
class LoginToken:
    token: str
    expires_in_ms: int


class LoginTokens:
    def __init__(self, store: TTLStore) -> None:
        self._store = store

    def mint(self, user_id: str) -> LoginToken:
        token = secrets.token_urlsafe(32)
        self._store.set(f"login-token:{token}", user_id, LOGIN_TOKEN_TTL_S)
        return LoginToken(token, int(LOGIN_TOKEN_TTL_S * 1000))

    def consume(self, token: str) -> str | None:
        """The user the token was minted for, once: a second use finds nothing."""
        key = f"login-token:{token}"
        user_id = self._store.get(key)
        if not isinstance(user_id, str) or not self._store.delete(key):
            return None
        return user_id

    def mark_fresh(self, user_id: str, device_id: str) -> None:
        self._store.set(f"login-token-uia:{user_id}:{device_id}", True, FRESH_UIA_S)

    def is_fresh(self, user_id: str, device_id: str) -> bool:
        return self._store.get(f"login-token-uia:{user_id}:{device_id}") is True
