"""The one error type services raise, and the errcodes the spec defines.

Every failure a client can cause becomes a `MatrixError`; the single handler in `app.py` turns it
into the spec's JSON body (`errcode`, `error`, plus any extra fields such as `retry_after_ms` or
`soft_logout`). Anything that is not a `MatrixError` is a bug and answers `500 M_UNKNOWN`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Codes(StrEnum):
    """Matrix error codes used by this server (Client-Server API, "Standard error response")."""

    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    UNKNOWN_POS = "M_UNKNOWN_POS"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    USER_LOCKED = "M_USER_LOCKED"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    INVALID_PARAM = "M_INVALID_PARAM"
    MISSING_PARAM = "M_MISSING_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    PROFILE_TOO_LARGE = "M_PROFILE_TOO_LARGE"
    KEY_TOO_LARGE = "M_KEY_TOO_LARGE"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"


class MatrixError(Exception):
    """A failure with an HTTP status and a Matrix errcode, answered as error JSON."""

    def __init__(self, status: int, errcode: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.message}
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"MatrixError({self.status}, {self.errcode!r}, {self.message!r})"


def bad_json(message: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, message)


def forbidden(message: str) -> MatrixError:
    return MatrixError(403, Codes.FORBIDDEN, message)


def not_found(message: str) -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, message)


def unrecognized(message: str = "Unrecognized request", status: int = 404) -> MatrixError:
    return MatrixError(status, Codes.UNRECOGNIZED, message)
