"""OpenID tokens: a user proves their identity to a third party (e.g. an integration manager)
that checks it with `GET /_matrix/federation/v1/openid/userinfo` on our server.

Tokens are random, live an hour in the TTL store, and say only which user they belong to.
"""

from __future__ import annotations

import secrets

from trioserver.errors import Codes, MatrixError
from trioserver.storage.ttl_store import TTLStore

TOKEN_TTL_S = 3600


class OpenIdTokens:
    def __init__(self, server_name: str, ttl: TTLStore) -> None:
        self._server_name = server_name
        self._ttl = ttl

    def issue(self, user_id: str) -> dict[str, object]:
        token = secrets.token_urlsafe(32)
        self._ttl.set(f"openid:{token}", user_id, TOKEN_TTL_S)
        return {"access_token": token, "token_type": "Bearer",
                "matrix_server_name": self._server_name, "expires_in": TOKEN_TTL_S}

    def user_of(self, token: str) -> str:
        user_id = self._ttl.get(f"openid:{token}") if token else None
        if not isinstance(user_id, str):
            raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Access token unknown or expired")
        return user_id
