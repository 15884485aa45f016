"""Request parsing shared by every blueprint: JSON bodies, typed fields, authentication."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from quart import Response, request

from trioserver.api.observe import USER_KEY, annotate
from trioserver.errors import Codes, MatrixError
from trioserver.services.sessions import Requester, Sessions

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def reply(body: Mapping[str, Any] | list[Any], status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status=status, content_type="application/json")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


async def json_body(*, optional: bool = False) -> Fields:
    """The request body as a JSON object, or `400 M_NOT_JSON` / `400 M_BAD_JSON`.

    With `optional`, an empty body reads as `{}` (for endpoints whose body may be omitted).
    """
    data = await request.get_data(cache=False, as_text=False)
    if not data.strip() and optional:
        return Fields({})
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.") from None
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, "Content must be a JSON object.")
    return Fields(value)


class Fields:
    """Typed access to a JSON object's fields; a wrong type is `400 M_BAD_JSON`."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def _typed(self, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise MatrixError(400, Codes.BAD_JSON, f"'{name}' must be {what}")
        return value

    def opt_str(self, name: str, *, max_len: int = 65536) -> str | None:
        value: str | None = self._typed(name, str, "a string")
        if value is not None and len(value) > max_len:
            raise MatrixError(400, Codes.BAD_JSON, f"'{name}' is too long")
        return value

    def req_str(self, name: str, *, max_len: int = 65536) -> str:
        value = self.opt_str(name, max_len=max_len)
        if value is None:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{name}'")
        return value

    def opt_bool(self, name: str, default: bool = False) -> bool:
        value: bool | None = self._typed(name, bool, "a boolean")
        return default if value is None else value

    def opt_dict(self, name: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._typed(name, dict, "an object")
        return value

    def str_list(self, name: str, *, max_items: int = 1000) -> list[str]:
        value: list[Any] | None = self._typed(name, list, "a list of strings")
        if value is None:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{name}'")
        if len(value) > max_items or not all(isinstance(v, str) for v in value):
            raise MatrixError(400, Codes.BAD_JSON, f"'{name}' must be a list of strings")
        return value


def bearer_token() -> str:
    """The access token from `Authorization: Bearer`, the only form accepted (MSC4127)."""
    header = request.headers.get("Authorization")
    if header is None:
        raise MatrixError(401, Codes.MISSING_TOKEN, "Missing access token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MatrixError(401, Codes.MISSING_TOKEN, "Invalid Authorization header")
    return token.strip()


def client_ip() -> str:
    return request.remote_addr or "unknown"


async def authenticate(
    sessions: Sessions, *, allow_guest: bool = False, allow_expired: bool = False
) -> Requester:
    requester = await sessions.authenticate(
        bearer_token(),
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent"),
        allow_expired=allow_expired,
        query=lambda name: request.args.get(name),  # parsed only for as_tokens
    )
    annotate(request.scope, USER_KEY, requester.user_id)  # for the access log
    if requester.is_guest and not allow_guest:
        raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
    return requester
