"""Account data (spec "Client Config") and room tags (spec "Room Tagging"), stream "ad".

Global and per-room account data are private to their user. Tags are not a separate store: they
are the room account data `m.tag`, `{"tags": {tag: {"order"?: 0..1, ...}}}`, changed by a
read-modify-write inside one write transaction so concurrent tag edits cannot lose each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import apsw

from trioserver.concurrency import Notifier
from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.reads import RoomReader
from trioserver.services.rooms.service import check_room_id
from trioserver.services.sessions import Requester
from trioserver.services.stream_position import PositionedSource, StreamPosition
from trioserver.services.sync.streams import SyncContext, SyncResult, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import account_data as ad_repo

# Types the server manages itself: clients set them through their own endpoints (spec: 405).
SERVER_MANAGED = {
    "m.fully_read": "/rooms/{roomId}/read_markers",
    "m.push_rules": "/pushrules",
}
TAG_TYPE = "m.tag"
MAX_TYPE_BYTES = 255
MAX_TAG_BYTES = 255


def _check_type(data_type: str) -> str:
    if not data_type or len(data_type.encode()) > MAX_TYPE_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid account data type")
    return data_type


def _check_settable(data_type: str) -> None:
    endpoint = SERVER_MANAGED.get(data_type)
    if endpoint is not None:
        raise MatrixError(405, Codes.BAD_JSON,
                          f"Cannot set {data_type} through this API. Use {endpoint}")


def _check_tag(tag: str) -> str:
    if not tag or len(tag.encode()) > MAX_TAG_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "A tag must be 1 to 255 bytes")
    return tag


def tag_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a tag's JSON (spec `Tag`): `order`, if given, is a number in [0, 1]."""
    out = dict(body)
    order = out.get("order")
    if order is None:
        out.pop("order", None)
    elif isinstance(order, bool) or not isinstance(order, int | float):
        raise MatrixError(400, Codes.BAD_JSON, "'order' must be a number")
    elif not 0 <= order <= 1:
        raise MatrixError(400, Codes.INVALID_PARAM, "'order' must be between 0 and 1")
    return out


def tags_of(content: Mapping[str, Any] | None) -> dict[str, Any]:
    """The tag map of an `m.tag` content, tolerating content set through the raw API."""
    tags = content.get("tags") if content is not None else None
    if not isinstance(tags, dict):
        return {}
    return {name: value for name, value in tags.items() if isinstance(value, dict)}


class AccountDataSource(PositionedSource):
    """StreamSource "ad": global account data, and room account data of joined rooms."""

    name = "ad"

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        if since is not None and since >= upto:
            return
        rows = await self._db.read(
            lambda c: ad_repo.changed(c, ctx.user_id, since, upto, ctx.joined_rooms))
        for row in rows:
            event = {"type": row.type, "content": row.content}
            if row.room_id == ad_repo.GLOBAL:
                out.account_data.append(event)
            else:
                out.room(row.room_id).account_data.append(event)


class AccountData:
    def __init__(self, db: Database, notifier: Notifier, room_cache: RoomCache,
                 room_reader: RoomReader) -> None:
        self._db = db
        self._notifier = notifier
        self._rooms = room_cache
        self._reader = room_reader
        self._position = StreamPosition(db, "account_data")
        self.source = AccountDataSource(db, self._position)

    # -- for other services ---------------------------------------------------------------

    async def set_account_data(self, user_id: str, data_type: str,
                               content: dict[str, Any]) -> None:
        """Set global account data, with no checks (server-managed types included)."""
        await self._write(user_id, lambda c: ad_repo.put(c, user_id, ad_repo.GLOBAL, data_type,
                                                         content))

    async def set_room_account_data(self, user_id: str, room_id: str, data_type: str,
                                    content: dict[str, Any]) -> None:
        """Set room account data, with no checks (e.g. `m.fully_read` from read markers)."""
        await self._write(user_id, lambda c: ad_repo.put(c, user_id, room_id, data_type, content))

    async def get_room_account_data(self, user_id: str, room_id: str, data_type: str
                                    ) -> dict[str, Any] | None:
        return await self._db.read(lambda c: ad_repo.get(c, user_id, room_id, data_type))

    async def _write(self, user_id: str,
                     fn: Callable[[apsw.Connection], int | None]) -> None:
        position = await self._db.write(fn)
        if position is not None:
            self._position.advance(position)
            self._notifier.notify([user_key(user_id)])

    # -- endpoints ------------------------------------------------------------------------

    @staticmethod
    def _own(requester: Requester, user_id: str, verb: str) -> None:
        if requester.user_id != user_id:
            raise forbidden(f"Cannot {verb} account data for other users.")

    async def get(self, requester: Requester, user_id: str, data_type: str,
                  room_id: str | None = None) -> dict[str, Any]:
        """GET global (room_id None) or room account data."""
        self._own(requester, user_id, "get")
        if room_id is not None:
            check_room_id(room_id)
        content = await self._db.read(
            lambda c: ad_repo.get(c, user_id, room_id or ad_repo.GLOBAL, data_type))
        if content is None:
            raise not_found("Room account data not found" if room_id else
                            "Account data not found")
        return content

    async def put(self, requester: Requester, user_id: str, data_type: str,
                  content: dict[str, Any], room_id: str | None = None) -> None:
        """PUT global (room_id None) or room account data.

        Like Synapse, room account data does not require the room to be known here: a client
        may keep data about a room it has not joined yet; /sync shows it once it is joined.
        """
        self._own(requester, user_id, "add")
        if room_id is not None:
            check_room_id(room_id)
        _check_type(data_type)
        _check_settable(data_type)
        if room_id is None:
            await self.set_account_data(user_id, data_type, content)
        else:
            await self.set_room_account_data(user_id, room_id, data_type, content)

    async def tags(self, requester: Requester, user_id: str, room_id: str) -> dict[str, Any]:
        if requester.user_id != user_id:
            raise forbidden("Cannot get tags for other users.")
        check_room_id(room_id)
        content = await self._db.read(lambda c: ad_repo.get(c, user_id, room_id, TAG_TYPE))
        return {"tags": tags_of(content)}

    async def add_tag(self, requester: Requester, user_id: str, room_id: str, tag: str,
                      body: Mapping[str, Any]) -> None:
        if requester.user_id != user_id:
            raise forbidden("Cannot add tags for other users.")
        check_room_id(room_id)
        _check_tag(tag)
        value = tag_body(body)
        view = await self._rooms.room(room_id)
        if view is None or await self._reader.membership(view, user_id) is None:
            raise forbidden(f"User {user_id} has no membership in room {room_id}")

        def txn(conn: apsw.Connection) -> int:
            tags = tags_of(ad_repo.get(conn, user_id, room_id, TAG_TYPE))
            tags[tag] = value
            return ad_repo.put(conn, user_id, room_id, TAG_TYPE, {"tags": tags})

        await self._write(user_id, txn)

    async def remove_tag(self, requester: Requester, user_id: str, room_id: str,
                         tag: str) -> None:
        if requester.user_id != user_id:
            raise forbidden("Cannot remove tags for other users.")
        check_room_id(room_id)

        def txn(conn: apsw.Connection) -> int | None:
            content = ad_repo.get(conn, user_id, room_id, TAG_TYPE)
            tags = tags_of(content)
            if tag not in tags:
                return None  # nothing changes: no new position, nobody to wake
            del tags[tag]
            return ad_repo.put(conn, user_id, room_id, TAG_TYPE, {"tags": tags})

        await self._write(user_id, txn)
