"""Sync filters (Client-Server API "Filtering"): parsing, defaults and storage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.services.rooms.reads import EventFilter
from trioserver.storage.db import Database
from trioserver.storage.repositories import filters as filters_repo

MAX_FILTER_BYTES = 16_384
DEFAULT_TIMELINE_LIMIT = 10


def _bad(message: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, message)


def _str_list(raw: dict[str, Any], key: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{key} must be a list of strings")
    return value


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise _bad(f"{key} must be a boolean")
    return value


def _obj(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _bad(f"{key} must be an object")
    return value


def _event_filter(raw: dict[str, Any], default_limit: int) -> EventFilter:
    limit = raw.get("limit", default_limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise _bad("limit must be a non-negative integer")
    contains_url = raw.get("contains_url")
    if contains_url is not None and not isinstance(contains_url, bool):
        raise _bad("contains_url must be a boolean")
    return EventFilter(
        limit=min(limit, 1000),
        types=_str_list(raw, "types"),
        not_types=_str_list(raw, "not_types") or [],
        senders=_str_list(raw, "senders"),
        not_senders=_str_list(raw, "not_senders") or [],
        contains_url=contains_url,
        lazy_load_members=_bool(raw, "lazy_load_members", False),
        unread_thread_notifications=_bool(raw, "unread_thread_notifications", False),
    )


@dataclass(frozen=True)
class RoomFilter:
    rooms: list[str] | None = None
    not_rooms: list[str] = field(default_factory=list)
    include_leave: bool = False
    timeline: EventFilter = field(default_factory=lambda: EventFilter(
        limit=DEFAULT_TIMELINE_LIMIT))
    state: EventFilter = field(default_factory=lambda: EventFilter(limit=1_000_000))
    ephemeral: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)

    def wants_room(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms


@dataclass(frozen=True)
class SyncFilter:
    room: RoomFilter = field(default_factory=RoomFilter)
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    event_fields: list[str] | None = None
    event_format: str = "client"


def parse_filter(raw: Any) -> SyncFilter:
    """Validate a filter definition (400 M_BAD_JSON when it is not one)."""
    if not isinstance(raw, dict):
        raise _bad("A filter must be a JSON object")
    room = _obj(raw, "room")
    event_format = raw.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise _bad("event_format must be client or federation")
    return SyncFilter(
        room=RoomFilter(
            rooms=_str_list(room, "rooms"),
            not_rooms=_str_list(room, "not_rooms") or [],
            include_leave=_bool(room, "include_leave", False),
            timeline=_event_filter(_obj(room, "timeline"), DEFAULT_TIMELINE_LIMIT),
            state=_event_filter(_obj(room, "state"), 1_000_000),
            ephemeral=_event_filter(_obj(room, "ephemeral"), 1000),
            account_data=_event_filter(_obj(room, "account_data"), 1000),
        ),
        presence=_event_filter(_obj(raw, "presence"), 1000),
        account_data=_event_filter(_obj(raw, "account_data"), 1000),
        event_fields=_str_list(raw, "event_fields"),
        event_format=event_format,
    )


class Filters:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, requester_id: str, user_id: str, raw: dict[str, Any]) -> str:
        if requester_id != user_id:
            raise forbidden("You can only create filters for yourself")
        parse_filter(raw)
        text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > MAX_FILTER_BYTES:
            raise MatrixError(413, Codes.TOO_LARGE, "Filter is too large")
        filter_id = await self._db.write(lambda c: filters_repo.insert(c, user_id, text))
        return str(filter_id)

    async def get_raw(self, requester_id: str, user_id: str, filter_id: str) -> dict[str, Any]:
        if requester_id != user_id:
            raise forbidden("You can only read your own filters")
        if not filter_id.isdigit() or len(filter_id) > 18:
            raise not_found("No such filter")
        text = await self._db.read(lambda c: filters_repo.get(c, user_id, int(filter_id)))
        if text is None:
            raise not_found("No such filter")
        value: dict[str, Any] = json.loads(text)
        return value

    async def resolve(self, user_id: str, param: str | None) -> SyncFilter:
        """The `filter` query parameter of /sync: a stored filter ID or inline JSON."""
        if not param:
            return SyncFilter()
        if param.lstrip().startswith("{"):
            try:
                raw = json.loads(param)
            except ValueError:
                raise MatrixError(400, Codes.NOT_JSON, "filter is not valid JSON") from None
            return parse_filter(raw)
        return parse_filter(await self.get_raw(user_id, user_id, param))
