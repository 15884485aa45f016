"""to_device_inbox, to_device_txns: pending send-to-device messages and handled txn ids."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.stream_ids import last_stream_id


@dataclass(frozen=True)
class Message:
    stream_id: int
    sender: str
    type: str
    content: dict[str, Any]


def claim_txn(conn: apsw.Connection, user_id: str, device_id: str, event_type: str,
              txn_id: str, now_ms: int) -> bool:
    """Record a transaction id; False if this device already used it for this type."""
    row = conn.execute(
        "INSERT INTO to_device_txns (user_id, device_id, type, txn_id, created_ts)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
        (user_id, device_id, event_type, txn_id, now_ms)).fetchone()
    return row is not None


def prune_txns(conn: apsw.Connection, older_than_ms: int) -> None:
    conn.execute("DELETE FROM to_device_txns WHERE created_ts < ?", (older_than_ms,))


def insert_messages(conn: apsw.Connection, sender: str, event_type: str,
                    messages: Iterable[tuple[str, str, str]]) -> int:
    """Queue (user, device, content as compact JSON) messages; return the last position."""
    last = 0
    for user_id, device_id, content in messages:
        row = conn.execute(
            "INSERT INTO to_device_inbox (user_id, device_id, sender, type, content)"
            " VALUES (?, ?, ?, ?, ?) RETURNING stream_id",
            (user_id, device_id, sender, event_type, content)).fetchone()
        assert row is not None
        last = int(row[0])
    return last


def pending(conn: apsw.Connection, user_id: str, device_id: str, since: int | None,
            upto: int) -> list[Message]:
    """The device's messages with a position in (since, upto], oldest first."""
    return [Message(int(r[0]), r[1], r[2], json.loads(r[3])) for r in conn.execute(
        "SELECT stream_id, sender, type, content FROM to_device_inbox"
        " WHERE user_id = ? AND device_id = ? AND stream_id > ? AND stream_id <= ?"
        " ORDER BY stream_id", (user_id, device_id, since or 0, upto))]


def has_delivered(conn: apsw.Connection, user_id: str, device_id: str, upto: int) -> bool:
    """Whether any message at or below `upto` is still stored for the device."""
    return conn.execute(
        "SELECT 1 FROM to_device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?"
        " LIMIT 1", (user_id, device_id, upto)).fetchone() is not None


def delete_delivered(conn: apsw.Connection, user_id: str, device_id: str, upto: int) -> int:
    """Delete the device's messages at or below `upto`; return how many."""
    return len(conn.execute(
        "DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?"
        " RETURNING 1", (user_id, device_id, upto)).fetchall())


def position(conn: apsw.Connection) -> int:
    return last_stream_id(conn, "to_device_inbox")
