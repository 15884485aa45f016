"""TURN credentials for VoIP (GET /voip/turnServer), as coturn's `use-auth-secret` expects.

The username is "<expiry unix seconds>:<user_id>" and the password is
base64(HMAC-SHA1(shared_secret, username)); coturn recomputes it to check the client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnCredentials:
    username: str
    password: str
    uris: list[str]
    ttl_s: int


def turn_credentials(
    *, user_id: str, uris: tuple[str, ...], shared_secret: str, lifetime_s: int, now_s: int
) -> TurnCredentials | None:
    """Time-limited credentials, or None when no TURN server is configured."""
    if not uris or not shared_secret:
        return None
    username = f"{now_s + lifetime_s}:{user_id}"
    digest = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode(), list(uris), lifetime_s)
