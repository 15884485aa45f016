"""Server-side key backups (spec "End-to-end encryption" > "Server-side key backups").

A user has numbered backup versions; only the newest version that is not deleted accepts keys
(an older one answers `403 M_WRONG_ROOM_KEYS_VERSION` with `current_version`), while keys of any
existing version can be read and deleted. A deleted version stays as a tombstone: deleting it
again succeeds, and its number is never handed out again. Versions are opaque strings to
clients; here they are the decimal form of a per-user counter, so anything else is unknown.

Each version has an `etag` that changes whenever its keys change and a `count` of its keys. When
an uploaded key meets a stored key for the same session, `should_replace` applies the spec's
rule; an upload that changes nothing leaves the etag alone.

Every write runs under the user's `backup:` serializer key, and its check-then-act (is this the
current version? which key wins?) runs inside one write transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apsw

from trioserver.concurrency import KeyedSerializer
from trioserver.errors import Codes, MatrixError, bad_json, not_found
from trioserver.services.rooms.service import check_room_id
from trioserver.storage.db import Database
from trioserver.storage.repositories import key_backup as repo
from trioserver.storage.repositories.key_backup import BackupVersion, RoomKey

MAX_ALGORITHM_CHARS = 255
MAX_SESSION_ID_BYTES = 255
# Canonical JSON's integer range; larger values could not be stored or compared faithfully.
MAX_INT = 2**53 - 1

Upload = dict[str, dict[str, RoomKey]]  # room ID -> session ID -> key


# -- the replacement rule -----------------------------------------------------------------


def should_replace(existing: RoomKey | None, new: RoomKey) -> bool:
    """Whether an uploaded key replaces the stored key of the same session.

    The spec's order: the verified key wins; then the lower `first_message_index`; then the lower
    `forwarded_count`. On a complete tie the stored key stays (nothing changes, nor the etag).
    """
    if existing is None:
        return True
    if new.is_verified != existing.is_verified:
        return new.is_verified
    if new.first_message_index != existing.first_message_index:
        return new.first_message_index < existing.first_message_index
    return new.forwarded_count < existing.forwarded_count


# -- request bodies -----------------------------------------------------------------------


def parse_version(version: str) -> int | None:
    """The number behind a version string, or None if no version could have that name."""
    if not version.isascii() or not version.isdigit() or len(version) > 15:
        return None
    number = int(version)
    return number if number > 0 and str(number) == version else None


def check_session_id(session_id: str) -> str:
    if not session_id or len(session_id.encode()) > MAX_SESSION_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid session ID")
    return session_id


def _count(raw: Mapping[str, Any], name: str, where: str) -> int:
    if name not in raw:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{name}' in {where}")
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise bad_json(f"'{name}' in {where} must be a non-negative integer")
    return value


def parse_room_key(raw: Any, where: str = "the key") -> RoomKey:
    """Validate a `KeyBackupData` object. Fields beyond the spec's four are not kept."""
    if not isinstance(raw, dict):
        raise bad_json(f"{where} must be an object")
    if "is_verified" not in raw:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing 'is_verified' in {where}")
    if not isinstance(raw["is_verified"], bool):
        raise bad_json(f"'is_verified' in {where} must be a boolean")
    if "session_data" not in raw:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing 'session_data' in {where}")
    if not isinstance(raw["session_data"], dict):
        raise bad_json(f"'session_data' in {where} must be an object")
    return RoomKey(
        first_message_index=_count(raw, "first_message_index", where),
        forwarded_count=_count(raw, "forwarded_count", where),
        is_verified=raw["is_verified"],
        session_data=raw["session_data"],
    )


def parse_sessions(raw: Any, room_id: str) -> dict[str, RoomKey]:
    """Validate a `RoomKeyBackup` object (`{"sessions": {session ID: KeyBackupData}}`)."""
    where = f"room {room_id}"
    if not isinstance(raw, dict):
        raise bad_json(f"The keys of {where} must be an object")
    if "sessions" not in raw:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing 'sessions' for {where}")
    sessions = raw["sessions"]
    if not isinstance(sessions, dict):
        raise bad_json(f"'sessions' of {where} must be an object")
    return {check_session_id(session_id): parse_room_key(key, f"session {session_id} of {where}")
            for session_id, key in sessions.items()}


def parse_rooms(raw: Mapping[str, Any]) -> Upload:
    """Validate the body of `PUT /room_keys/keys` (`{"rooms": {room ID: RoomKeyBackup}}`)."""
    if "rooms" not in raw:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'rooms'")
    rooms = raw["rooms"]
    if not isinstance(rooms, dict):
        raise bad_json("'rooms' must be an object")
    return {check_room_id(room_id): parse_sessions(room, room_id)
            for room_id, room in rooms.items()}


def _version_json(info: BackupVersion) -> dict[str, Any]:
    return {"algorithm": info.algorithm, "auth_data": info.auth_data, "count": info.count,
            "etag": str(info.etag), "version": str(info.version)}


def _key_json(key: RoomKey) -> dict[str, Any]:
    return {"first_message_index": key.first_message_index,
            "forwarded_count": key.forwarded_count, "is_verified": key.is_verified,
            "session_data": key.session_data}


def _update_json(etag: int, count: int) -> dict[str, Any]:
    return {"etag": str(etag), "count": count}


def _unknown_version() -> MatrixError:
    return not_found("Unknown backup version")


def _existing(conn: apsw.Connection, user_id: str, version: str) -> BackupVersion:
    """The version named `version` if it exists and is not deleted, else 404."""
    number = parse_version(version)
    info = None if number is None else repo.get_version(conn, user_id, number)
    if info is None or info.deleted:
        raise _unknown_version()
    return info


# -- the service --------------------------------------------------------------------------


class KeyBackup:
    def __init__(self, db: Database, serializer: KeyedSerializer) -> None:
        self._db = db
        self._serializer = serializer

    @staticmethod
    def _key(user_id: str) -> str:
        return f"backup:{user_id}"

    # versions

    async def create_version(self, user_id: str, algorithm: str,
                             auth_data: dict[str, Any]) -> dict[str, Any]:
        """POST /room_keys/version: a new version, which becomes the current one."""
        async with self._serializer.hold(self._key(user_id)):
            version = await self._db.write(
                lambda c: repo.create_version(c, user_id, algorithm, auth_data))
        return {"version": str(version)}

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        """GET /room_keys/version[/{version}]: a version's info (the current one if None)."""
        def read(conn: apsw.Connection) -> BackupVersion:
            if version is not None:
                return _existing(conn, user_id, version)
            info = repo.latest_version(conn, user_id)
            if info is None:
                raise not_found("No current backup version")
            return info

        return _version_json(await self._db.read(read))

    async def update_version(self, user_id: str, version: str, algorithm: str,
                             auth_data: dict[str, Any], body_version: str | None) -> None:
        """PUT /room_keys/version/{version}: replace `auth_data`; nothing else may change."""
        if body_version is not None and body_version != version:
            raise MatrixError(400, Codes.INVALID_PARAM, "Version in body does not match")

        def txn(conn: apsw.Connection) -> None:
            info = _existing(conn, user_id, version)
            if algorithm != info.algorithm:
                raise MatrixError(400, Codes.INVALID_PARAM, "Algorithm does not match")
            repo.set_auth_data(conn, user_id, info.version, auth_data)

        async with self._serializer.hold(self._key(user_id)):
            await self._db.write(txn)

    async def delete_version(self, user_id: str, version: str) -> None:
        """DELETE /room_keys/version/{version}: the version and all its keys. Deleting a
        version that was already deleted succeeds; one that never existed is 404."""
        def txn(conn: apsw.Connection) -> None:
            number = parse_version(version)
            info = None if number is None else repo.get_version(conn, user_id, number)
            if info is None:
                raise _unknown_version()
            if not info.deleted:
                repo.mark_deleted(conn, user_id, info.version)

        async with self._serializer.hold(self._key(user_id)):
            await self._db.write(txn)

    # keys

    async def upload(self, user_id: str, version: str, rooms: Upload) -> dict[str, Any]:
        """PUT /room_keys/keys[/{roomId}[/{sessionId}]]: store keys in the current version,
        each only if it wins against the stored key of its session."""
        def txn(conn: apsw.Connection) -> tuple[int, int]:
            current = repo.latest_version(conn, user_id)
            if current is None:
                raise _unknown_version()
            if str(current.version) != version:
                _existing(conn, user_id, version)  # 404 if no such version, else:
                raise MatrixError(403, Codes.WRONG_ROOM_KEYS_VERSION, "Wrong backup version.",
                                  current_version=str(current.version))
            changed = added = 0
            for room_id, sessions in rooms.items():
                for session_id, key in sessions.items():
                    existing = repo.get_key(conn, user_id, current.version, room_id, session_id)
                    if should_replace(existing, key):
                        repo.put_key(conn, user_id, current.version, room_id, session_id, key)
                        changed += 1
                        added += existing is None
            if not changed:
                return current.etag, current.count
            return repo.record_change(conn, user_id, current.version, added)

        async with self._serializer.hold(self._key(user_id)):
            etag, count = await self._db.write(txn)
        return _update_json(etag, count)

    async def get_keys(self, user_id: str, version: str) -> dict[str, Any]:
        """GET /room_keys/keys: every key of a version, `{"rooms": {...}}`."""
        def read(conn: apsw.Connection) -> list[repo.StoredKey]:
            return repo.keys(conn, user_id, _existing(conn, user_id, version).version)

        rooms: dict[str, dict[str, Any]] = {}
        for stored in await self._db.read(read):
            room = rooms.setdefault(stored.room_id, {"sessions": {}})
            room["sessions"][stored.session_id] = _key_json(stored.key)
        return {"rooms": rooms}

    async def get_room_keys(self, user_id: str, version: str, room_id: str) -> dict[str, Any]:
        """GET /room_keys/keys/{roomId}: `{"sessions": {...}}`, empty if the room has none."""
        check_room_id(room_id)

        def read(conn: apsw.Connection) -> list[repo.StoredKey]:
            return repo.keys(conn, user_id, _existing(conn, user_id, version).version, room_id)

        return {"sessions": {s.session_id: _key_json(s.key) for s in await self._db.read(read)}}

    async def get_session_key(self, user_id: str, version: str, room_id: str,
                              session_id: str) -> dict[str, Any]:
        """GET /room_keys/keys/{roomId}/{sessionId}: one key, 404 if the backup lacks it."""
        check_room_id(room_id)
        check_session_id(session_id)

        def read(conn: apsw.Connection) -> RoomKey | None:
            number = _existing(conn, user_id, version).version
            return repo.get_key(conn, user_id, number, room_id, session_id)

        key = await self._db.read(read)
        if key is None:
            raise not_found("Key not found")
        return _key_json(key)

    async def delete_keys(self, user_id: str, version: str, room_id: str | None = None,
                          session_id: str | None = None) -> dict[str, Any]:
        """DELETE /room_keys/keys[/{roomId}[/{sessionId}]]: from any existing version."""
        if room_id is not None:
            check_room_id(room_id)
        if session_id is not None:
            check_session_id(session_id)

        def txn(conn: apsw.Connection) -> tuple[int, int]:
            info = _existing(conn, user_id, version)
            removed = repo.delete_keys(conn, user_id, info.version, room_id, session_id)
            if not removed:
                return info.etag, info.count
            return repo.record_change(conn, user_id, info.version, -removed)

        async with self._serializer.hold(self._key(user_id)):
            etag, count = await self._db.write(txn)
        return _update_json(etag, count)
