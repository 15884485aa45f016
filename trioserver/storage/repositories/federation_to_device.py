"""federation_to_device_outbox, federation_to_device_seen: m.direct_to_device EDUs waiting
for their destination's acknowledgement, and the message_ids received from each origin."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apsw


@dataclass(frozen=True)
class Outgoing:
    id: int
    destination: str
    content: dict[str, Any]


def add_outgoing(conn: apsw.Connection, destination: str, message_id: str,
                 content: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO federation_to_device_outbox (destination, message_id, content)"
        " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (destination, message_id, json.dumps(content, ensure_ascii=False,
                                             separators=(",", ":"))))


def outgoing_after(conn: apsw.Connection, after: int, limit: int) -> list[Outgoing]:
    """Waiting EDUs with an id above `after`, oldest first."""
    return [Outgoing(int(r[0]), str(r[1]), json.loads(r[2])) for r in conn.execute(
        "SELECT id, destination, content FROM federation_to_device_outbox WHERE id > ?"
        " ORDER BY id LIMIT ?", (after, limit))]


def outgoing_to(conn: apsw.Connection, destination: str, after: int, limit: int
                ) -> list[Outgoing]:
    """Waiting EDUs for one destination with an id above `after`, oldest first."""
    return [Outgoing(int(r[0]), str(r[1]), json.loads(r[2])) for r in conn.execute(
        "SELECT id, destination, content FROM federation_to_device_outbox"
        " WHERE destination = ? AND id > ? ORDER BY id LIMIT ?", (destination, after, limit))]


def delete_sent(conn: apsw.Connection, destination: str, message_ids: Iterable[str]) -> None:
    conn.executemany(
        "DELETE FROM federation_to_device_outbox WHERE destination = ? AND message_id = ?",
        [(destination, m) for m in message_ids])


def claim_received(conn: apsw.Connection, origin: str, message_id: str, now_ms: int,
                   prune_before_ms: int) -> bool:
    """Record a received message_id; False if this origin already sent it."""
    conn.execute("DELETE FROM federation_to_device_seen WHERE received_ts < ?",
                 (prune_before_ms,))
    return conn.execute(
        "INSERT INTO federation_to_device_seen (origin, message_id, received_ts)"
        " VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
        (origin, message_id, now_ms)).fetchone() is not None
