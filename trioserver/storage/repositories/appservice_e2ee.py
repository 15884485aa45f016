"""Reads behind the unstable transaction extensions of encrypted bridges: the to-device inbox and
device-list changes after an appservice's positions, and key counts of its users' devices."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import apsw

# SQLite's default limit on bound parameters is far above this; chunks keep statements small.
_CHUNK = 500


@dataclass(frozen=True)
class InboxRow:
    stream_id: int
    user_id: str
    device_id: str
    sender: str
    type: str
    content: dict[str, Any]


def to_device_after(conn: apsw.Connection, after: int, limit: int) -> list[tuple[int, str]]:
    """(stream_id, recipient) of queued to-device messages after `after`, in stream order
    (the content is loaded only for the rows that interest the appservice)."""
    return [(int(r[0]), str(r[1])) for r in conn.execute(
        "SELECT stream_id, user_id FROM to_device_inbox WHERE stream_id > ?"
        " ORDER BY stream_id LIMIT ?", (after, limit))]


def inbox_rows(conn: apsw.Connection, stream_ids: Collection[int]) -> list[InboxRow]:
    out: list[InboxRow] = []
    ids = sorted(stream_ids)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.extend(InboxRow(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]))
                   for r in conn.execute(
                       "SELECT stream_id, user_id, device_id, sender, type, content"
                       f" FROM to_device_inbox WHERE stream_id IN ({marks})", chunk))
    out.sort(key=lambda r: r.stream_id)
    return out


def device_list_changes_after(conn: apsw.Connection, after: int, limit: int
                              ) -> list[tuple[int, str]]:
    """(stream_id, user_id) of device-list changes after `after`, in stream order."""
    return [(int(r[0]), str(r[1])) for r in conn.execute(
        "SELECT stream_id, user_id FROM device_list_changes WHERE stream_id > ?"
        " ORDER BY stream_id LIMIT ?", (after, limit))]


def one_time_key_counts(conn: apsw.Connection, user_ids: Collection[str]
                        ) -> dict[str, dict[str, dict[str, int]]]:
    """user -> device -> algorithm -> unused one-time keys, with an empty map for a device
    that has none (as Synapse sends it)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    users = sorted(user_ids)
    for i in range(0, len(users), _CHUNK):
        chunk = users[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for user_id, device_id, algorithm, count in conn.execute(
                "SELECT d.user_id, d.device_id, k.algorithm, count(k.key_id) FROM devices d"
                " LEFT JOIN one_time_keys k ON k.user_id = d.user_id"
                " AND k.device_id = d.device_id"
                f" WHERE d.user_id IN ({marks}) GROUP BY d.user_id, d.device_id, k.algorithm",
                chunk):
            by_algorithm = out.setdefault(user_id, {}).setdefault(device_id, {})
            if algorithm is not None:
                by_algorithm[algorithm] = int(count)
    return out


def unused_fallback_key_types(conn: apsw.Connection, user_ids: Collection[str]
                              ) -> dict[str, dict[str, list[str]]]:
    """user -> device -> algorithms of its unused fallback keys (an empty list if none)."""
    out: dict[str, dict[str, list[str]]] = {}
    users = sorted(user_ids)
    for i in range(0, len(users), _CHUNK):
        chunk = users[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for user_id, device_id, algorithm in conn.execute(
                "SELECT d.user_id, d.device_id, f.algorithm FROM devices d"
                " LEFT JOIN fallback_keys f ON f.user_id = d.user_id"
                " AND f.device_id = d.device_id AND f.used = 0"
                f" WHERE d.user_id IN ({marks}) ORDER BY d.user_id, d.device_id, f.algorithm",
                chunk):
            algorithms = out.setdefault(user_id, {}).setdefault(device_id, [])
            if algorithm is not None:
                algorithms.append(algorithm)
    return out


def joined_members(conn: apsw.Connection, room_id: str, limit: int) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT state_key FROM current_state WHERE room_id = ? AND type = 'm.room.member'"
        " AND membership = 'join' LIMIT ?", (room_id, limit))]
