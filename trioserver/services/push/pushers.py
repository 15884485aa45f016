"""A user's pushers (spec "Push Notifications": GET /pushers, POST /pushers/set).

Validation happens here, at the service's edge: a pusher is stored only with the fields the spec
requires, and an http pusher only with an http(s) gateway URL whose path is the spec's notify
endpoint (the gateway is the user's own choice, so loopback and private addresses are allowed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import apsw

from trioserver.errors import Codes, MatrixError
from trioserver.services.clock import now_ms
from trioserver.storage.db import Database
from trioserver.storage.repositories import pushers as pushers_repo
from trioserver.storage.repositories.pushers import PusherRow

MAX_PUSHKEY_BYTES = 512
MAX_APP_ID_CHARS = 64
MAX_TEXT_CHARS = 256
MAX_URL_CHARS = 2048
MAX_DATA_BYTES = 4096
NOTIFY_PATH = "/_matrix/push/v1/notify"
KINDS = ("http", "email")

# Told the user ID whose pushers changed (push delivery drops its queues for them).
PusherListener = Callable[[str], None]


def _bad(message: str, errcode: str = Codes.BAD_JSON) -> MatrixError:
    return MatrixError(400, errcode, message)


def _required_str(body: Mapping[str, Any], key: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    value = body.get(key)
    if value is None:
        raise _bad(f"Missing '{key}'", Codes.MISSING_PARAM)
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    if len(value) > max_chars:
        raise _bad(f"'{key}' is too long")
    return value


def check_gateway_url(url: Any) -> str:
    """An http pusher's data.url: http(s), with a host, ending in the notify path."""
    if not isinstance(url, str) or not url:
        raise _bad("An http pusher needs data.url", Codes.MISSING_PARAM
                   if url is None else Codes.BAD_JSON)
    if len(url) > MAX_URL_CHARS:
        raise _bad("data.url is too long", Codes.INVALID_PARAM)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _bad("data.url is not a valid URL", Codes.INVALID_PARAM) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad("data.url must be an http(s) URL", Codes.INVALID_PARAM)
    if parts.path != NOTIFY_PATH:
        raise _bad(f"data.url must have the path {NOTIFY_PATH}", Codes.INVALID_PARAM)
    return url


def parse_pusher(user_id: str, body: Mapping[str, Any]) -> PusherRow:
    """A pusher to create or replace, from a POST /pushers/set body whose kind is not null."""
    kind = body.get("kind")
    if kind not in KINDS:
        raise _bad("'kind' must be \"http\", \"email\" or null", Codes.INVALID_PARAM)
    app_id = _required_str(body, "app_id", MAX_APP_ID_CHARS)
    pushkey = _required_str(body, "pushkey", MAX_PUSHKEY_BYTES)
    if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
        raise _bad("'pushkey' is too long")
    data = body.get("data")
    if data is None:
        raise _bad("Missing 'data'", Codes.MISSING_PARAM)
    if not isinstance(data, dict):
        raise _bad("'data' must be an object")
    if len(repr(data)) > MAX_DATA_BYTES:
        raise _bad("'data' is too large")
    if kind == "http":
        check_gateway_url(data.get("url"))
        fmt = data.get("format")
        if fmt is not None and fmt != "event_id_only":
            raise _bad("data.format must be \"event_id_only\" if set", Codes.INVALID_PARAM)
    profile_tag = body.get("profile_tag")
    if profile_tag is not None and (not isinstance(profile_tag, str)
                                    or len(profile_tag) > MAX_TEXT_CHARS):
        raise _bad("'profile_tag' must be a short string")
    return PusherRow(
        user_id=user_id, app_id=app_id, pushkey=pushkey, kind=kind,
        app_display_name=_required_str(body, "app_display_name"),
        device_display_name=_required_str(body, "device_display_name"),
        profile_tag=profile_tag, lang=_required_str(body, "lang", 64), data=dict(data),
        pushkey_ts=now_ms())


def to_json(row: PusherRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pushkey": row.pushkey, "kind": row.kind, "app_id": row.app_id,
        "app_display_name": row.app_display_name,
        "device_display_name": row.device_display_name, "lang": row.lang, "data": row.data}
    if row.profile_tag is not None:
        out["profile_tag"] = row.profile_tag
    return out


class Pushers:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._listeners: list[PusherListener] = []

    def add_listener(self, listener: PusherListener) -> None:
        self._listeners.append(listener)

    def _changed(self, user_ids: set[str]) -> None:
        for user_id in user_ids:
            for listener in self._listeners:
                listener(user_id)

    async def list(self, user_id: str) -> list[PusherRow]:
        return await self._db.read(lambda c: pushers_repo.user_pushers(c, user_id))

    async def set(self, user_id: str, body: Mapping[str, Any]) -> None:
        """POST /pushers/set: create, replace or (kind null) delete a pusher."""
        if "kind" not in body:
            raise _bad("Missing 'kind'", Codes.MISSING_PARAM)
        if body["kind"] is None:
            app_id = _required_str(body, "app_id", MAX_APP_ID_CHARS)
            pushkey = _required_str(body, "pushkey", MAX_PUSHKEY_BYTES)
            await self.delete(user_id, app_id, pushkey)
            return
        row = parse_pusher(user_id, body)
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise _bad("'append' must be a boolean")

        def txn(conn: apsw.Connection) -> set[str]:
            replaced = set() if append else pushers_repo.owners(conn, row.app_id, row.pushkey)
            pushers_repo.upsert(conn, row, append=append)
            return replaced | {user_id}

        self._changed(await self._db.write(txn))

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> bool:
        deleted = await self._db.write(
            lambda c: pushers_repo.delete(c, user_id, app_id, pushkey))
        self._changed({user_id})
        return deleted
