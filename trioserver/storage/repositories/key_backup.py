"""key_backup_versions, key_backup_keys: a user's server-side key backups and their room keys.

A version's `etag` and `key_count` are bumped by `record_change` in the same transaction as the
key rows they describe; callers hold the user's serializer for read-modify-write sequences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw


@dataclass(frozen=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict[str, Any]
    etag: int
    count: int
    deleted: bool


@dataclass(frozen=True)
class RoomKey:
    """One backed-up megolm session key (spec `KeyBackupData`); `session_data` is opaque."""

    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]


@dataclass(frozen=True)
class StoredKey:
    room_id: str
    session_id: str
    key: RoomKey


def _encode(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decode(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


_VERSION_COLUMNS = "version, algorithm, auth_data, etag, key_count, deleted"


def _version(row: Any) -> BackupVersion:
    return BackupVersion(int(row[0]), row[1], _decode(row[2]), int(row[3]), int(row[4]),
                         bool(row[5]))


# -- versions -----------------------------------------------------------------------------


def latest_version(conn: apsw.Connection, user_id: str) -> BackupVersion | None:
    """The newest version that is not deleted: the only one that accepts uploads."""
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM key_backup_versions"
        " WHERE user_id = ? AND deleted = 0 ORDER BY version DESC LIMIT 1",
        (user_id,)).fetchone()
    return None if row is None else _version(row)


def get_version(conn: apsw.Connection, user_id: str, version: int) -> BackupVersion | None:
    """A version, deleted ones included (see `BackupVersion.deleted`)."""
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM key_backup_versions WHERE user_id = ? AND version = ?",
        (user_id, version)).fetchone()
    return None if row is None else _version(row)


def create_version(conn: apsw.Connection, user_id: str, algorithm: str,
                   auth_data: dict[str, Any]) -> int:
    """Add a version numbered above every earlier one, deleted ones included; return it."""
    row = conn.execute(
        "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)"
        " SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ? FROM key_backup_versions"
        " WHERE user_id = ? RETURNING version",
        (user_id, algorithm, _encode(auth_data), user_id)).fetchone()
    assert row is not None
    return int(row[0])


def set_auth_data(conn: apsw.Connection, user_id: str, version: int,
                  auth_data: dict[str, Any]) -> None:
    conn.execute("UPDATE key_backup_versions SET auth_data = ? WHERE user_id = ? AND version = ?",
                 (_encode(auth_data), user_id, version))


def mark_deleted(conn: apsw.Connection, user_id: str, version: int) -> None:
    """Drop a version's keys and keep only a tombstone of it."""
    conn.execute("DELETE FROM key_backup_keys WHERE user_id = ? AND version = ?",
                 (user_id, version))
    conn.execute(
        "UPDATE key_backup_versions SET deleted = 1, auth_data = '{}', key_count = 0"
        " WHERE user_id = ? AND version = ?", (user_id, version))


def record_change(conn: apsw.Connection, user_id: str, version: int,
                  added: int) -> tuple[int, int]:
    """Note that a version's keys changed (`added` rows more, or fewer if negative): bump its
    etag and count; return the new (etag, count)."""
    row = conn.execute(
        "UPDATE key_backup_versions SET etag = etag + 1, key_count = key_count + ?"
        " WHERE user_id = ? AND version = ? RETURNING etag, key_count",
        (added, user_id, version)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# -- keys ---------------------------------------------------------------------------------


def get_key(conn: apsw.Connection, user_id: str, version: int, room_id: str,
            session_id: str) -> RoomKey | None:
    row = conn.execute(
        "SELECT first_message_index, forwarded_count, is_verified, session_data"
        " FROM key_backup_keys"
        " WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?",
        (user_id, version, room_id, session_id)).fetchone()
    if row is None:
        return None
    return RoomKey(int(row[0]), int(row[1]), bool(row[2]), _decode(row[3]))


def put_key(conn: apsw.Connection, user_id: str, version: int, room_id: str, session_id: str,
            key: RoomKey) -> None:
    """Insert or overwrite one session's key (the caller decided that it should win)."""
    conn.execute(
        "INSERT INTO key_backup_keys (user_id, version, room_id, session_id,"
        " first_message_index, forwarded_count, is_verified, session_data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
        " first_message_index = excluded.first_message_index,"
        " forwarded_count = excluded.forwarded_count,"
        " is_verified = excluded.is_verified, session_data = excluded.session_data",
        (user_id, version, room_id, session_id, key.first_message_index, key.forwarded_count,
         int(key.is_verified), _encode(key.session_data)))


def _where(room_id: str | None, session_id: str | None) -> tuple[str, tuple[str, ...]]:
    if room_id is None:
        return "", ()
    if session_id is None:
        return " AND room_id = ?", (room_id,)
    return " AND room_id = ? AND session_id = ?", (room_id, session_id)


def keys(conn: apsw.Connection, user_id: str, version: int, room_id: str | None = None,
         session_id: str | None = None) -> list[StoredKey]:
    """The version's keys: all, one room's (room_id) or one session's (both)."""
    where, args = _where(room_id, session_id)
    rows = conn.execute(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
        " session_data FROM key_backup_keys WHERE user_id = ? AND version = ?" + where +
        " ORDER BY room_id, session_id", (user_id, version, *args))
    return [StoredKey(r[0], r[1], RoomKey(int(r[2]), int(r[3]), bool(r[4]), _decode(r[5])))
            for r in rows]


def delete_keys(conn: apsw.Connection, user_id: str, version: int, room_id: str | None = None,
                session_id: str | None = None) -> int:
    """Delete all, one room's or one session's keys of a version; return how many went."""
    where, args = _where(room_id, session_id)
    conn.execute("DELETE FROM key_backup_keys WHERE user_id = ? AND version = ?" + where,
                 (user_id, version, *args))
    return conn.changes()
