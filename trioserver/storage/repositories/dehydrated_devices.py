"""dehydrated_devices: each user's single dehydrated device (MSC3814) and its inbox reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.to_device import Message


@dataclass(frozen=True)
class DehydratedRow:
    device_id: str
    device_data: dict[str, Any]


def get(conn: apsw.Connection, user_id: str) -> DehydratedRow | None:
    row = conn.execute(
        "SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = ?", (user_id,)
    ).fetchone()
    return None if row is None else DehydratedRow(row[0], json.loads(row[1]))


def set_device(conn: apsw.Connection, user_id: str, device_id: str, device_data: str) -> None:
    """Record `device_id` (an existing row of `devices`) as the user's dehydrated device."""
    conn.execute(
        "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id,"
        " device_data = excluded.device_data",
        (user_id, device_id, device_data),
    )


def messages_after(conn: apsw.Connection, user_id: str, device_id: str, since: int,
                   limit: int) -> list[Message]:
    """Up to `limit` of the device's to-device messages after position `since`, oldest first."""
    return [Message(int(r[0]), r[1], r[2], json.loads(r[3])) for r in conn.execute(
        "SELECT stream_id, sender, type, content FROM to_device_inbox"
        " WHERE user_id = ? AND device_id = ? AND stream_id > ? ORDER BY stream_id LIMIT ?",
        (user_id, device_id, since, limit))]
