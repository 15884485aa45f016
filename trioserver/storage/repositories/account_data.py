"""account_data: a user's global (room_id '') and per-room account data, incl. m.tag."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.stream_ids import last_stream_id

GLOBAL = ""  # the room_id of global account data


@dataclass(frozen=True)
class AccountDataRow:
    stream_id: int
    room_id: str  # GLOBAL for global account data
    type: str
    content: dict[str, Any]


def encode(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _decode(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def put(conn: apsw.Connection, user_id: str, room_id: str, data_type: str,
        content: dict[str, Any]) -> int:
    """Set one key, replacing its row with one at a new position; return the position."""
    conn.execute("DELETE FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
                 (user_id, room_id, data_type))
    row = conn.execute(
        "INSERT INTO account_data (user_id, room_id, type, content) VALUES (?, ?, ?, ?)"
        " RETURNING stream_id", (user_id, room_id, data_type, encode(content))).fetchone()
    assert row is not None
    return int(row[0])


def get(conn: apsw.Connection, user_id: str, room_id: str, data_type: str
        ) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
        (user_id, room_id, data_type)).fetchone()
    return None if row is None else _decode(row[0])


def changed(conn: apsw.Connection, user_id: str, since: int | None, upto: int,
            room_ids: Sequence[str]) -> list[AccountDataRow]:
    """The user's global rows and rows of `room_ids` whose position is in (since, upto]
    (all up to `upto` when since is None), oldest first."""
    rows = conn.execute(
        "SELECT stream_id, room_id, type, content FROM account_data WHERE user_id = ?"
        " AND stream_id > ? AND stream_id <= ?"
        " AND (room_id = '' OR room_id IN (SELECT value FROM json_each(?)))"
        " ORDER BY stream_id",
        (user_id, since if since is not None else 0, upto, json.dumps(list(room_ids))))
    return [AccountDataRow(int(r[0]), r[1], r[2], _decode(r[3])) for r in rows]


def position(conn: apsw.Connection) -> int:
    return last_stream_id(conn, "account_data")
