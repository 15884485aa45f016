"""device_keys, one_time_keys, fallback_keys, cross_signing_keys, device_list_changes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apsw


@dataclass(frozen=True)
class Claimed:
    key_id: str
    key: Any
    fallback: bool


def get_device_keys(conn: apsw.Connection, user_id: str, device_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT keys_json FROM device_keys WHERE user_id = ? AND device_id = ?",
                       (user_id, device_id)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def set_device_keys(conn: apsw.Connection, user_id: str, device_id: str,
                    keys: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO device_keys (user_id, device_id, keys_json) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, device_id) DO UPDATE SET keys_json = excluded.keys_json",
        (user_id, device_id, json.dumps(keys, separators=(",", ":"))))


def users_device_keys(conn: apsw.Connection, user_id: str
                      ) -> list[tuple[str, dict[str, Any], str | None]]:
    """(device_id, keys, display name) of every device of the user that has keys."""
    rows = conn.execute(
        "SELECT k.device_id, k.keys_json, d.display_name FROM device_keys k JOIN devices d"
        " USING (user_id, device_id) WHERE k.user_id = ? ORDER BY k.device_id", (user_id,))
    return [(r[0], dict(json.loads(r[1])), r[2]) for r in rows]


def get_one_time_key(conn: apsw.Connection, user_id: str, device_id: str, key_id: str
                     ) -> Any | None:
    row = conn.execute(
        "SELECT key_json FROM one_time_keys WHERE user_id = ? AND device_id = ? AND key_id = ?",
        (user_id, device_id, key_id)).fetchone()
    return None if row is None else json.loads(row[0])


def add_one_time_key(conn: apsw.Connection, user_id: str, device_id: str, algorithm: str,
                     key_id: str, key: Any) -> None:
    conn.execute(
        "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, device_id, algorithm, key_id, json.dumps(key, separators=(",", ":"))))


def one_time_key_counts(conn: apsw.Connection, user_id: str, device_id: str) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute(
        "SELECT algorithm, count(*) FROM one_time_keys WHERE user_id = ? AND device_id = ?"
        " GROUP BY algorithm", (user_id, device_id))}


def set_fallback_key(conn: apsw.Connection, user_id: str, device_id: str, algorithm: str,
                     key_id: str, key: Any) -> None:
    """Replace the device's fallback key for `algorithm` (re-uploading the same one keeps its
    used flag)."""
    conn.execute(
        "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
        " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
        " used = CASE WHEN fallback_keys.key_id = excluded.key_id"
        "             AND fallback_keys.key_json = excluded.key_json"
        "        THEN fallback_keys.used ELSE 0 END,"
        " key_id = excluded.key_id, key_json = excluded.key_json",
        (user_id, device_id, algorithm, key_id, json.dumps(key, separators=(",", ":"))))


def unused_fallback_algorithms(conn: apsw.Connection, user_id: str, device_id: str
                               ) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT algorithm FROM fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0"
        " ORDER BY algorithm", (user_id, device_id))]


def claim(conn: apsw.Connection, user_id: str, device_id: str, algorithm: str
          ) -> Claimed | None:
    """Inside a write: take the oldest one-time key (deleting it), else the fallback key
    (marking it used). Exactly-once because writes are serialized and this is one transaction."""
    row = conn.execute(
        "DELETE FROM one_time_keys WHERE seq = (SELECT seq FROM one_time_keys WHERE user_id = ?"
        " AND device_id = ? AND algorithm = ? ORDER BY seq LIMIT 1)"
        " RETURNING key_id, key_json", (user_id, device_id, algorithm)).fetchone()
    if row is not None:
        return Claimed(str(row[0]), json.loads(row[1]), fallback=False)
    row = conn.execute(
        "UPDATE fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ?"
        " RETURNING key_id, key_json", (user_id, device_id, algorithm)).fetchone()
    if row is not None:
        return Claimed(str(row[0]), json.loads(row[1]), fallback=True)
    return None


def cross_signing_keys(conn: apsw.Connection, user_id: str) -> dict[str, dict[str, Any]]:
    return {r[0]: dict(json.loads(r[1])) for r in conn.execute(
        "SELECT key_type, key_json FROM cross_signing_keys WHERE user_id = ?", (user_id,))}


def record_device_list_change(conn: apsw.Connection, user_id: str) -> int:
    row = conn.execute("INSERT INTO device_list_changes (user_id) VALUES (?) RETURNING stream_id",
                       (user_id,)).fetchone()
    assert row is not None
    return int(row[0])


def device_list_position(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT max(stream_id) FROM device_list_changes").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def latest_change_of(conn: apsw.Connection, user_id: str) -> int:
    """The position of the user's last device-list change (0 if none)."""
    row = conn.execute("SELECT max(stream_id) FROM device_list_changes WHERE user_id = ?",
                       (user_id,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def recent_changes_of(conn: apsw.Connection, user_id: str, count: int) -> list[int]:
    """The positions of the user's last `count` device-list changes, oldest first."""
    cur = conn.execute("SELECT stream_id FROM device_list_changes WHERE user_id = ?"
                       " ORDER BY stream_id DESC LIMIT ?", (user_id, count))
    return sorted(int(stream_id) for (stream_id,) in cur)


def change_before(conn: apsw.Connection, user_id: str, position: int) -> int | None:
    """The position of the user's device-list change just before `position`, if any."""
    row = conn.execute("SELECT max(stream_id) FROM device_list_changes"
                       " WHERE user_id = ? AND stream_id < ?", (user_id, position)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def users_with_device_changes(conn: apsw.Connection, after: int, upto: int,
                              among: Iterable[str] | None = None) -> set[str]:
    users = {r[0] for r in conn.execute(
        "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_id > ? AND stream_id <= ?",
        (after, upto))}
    if among is not None:
        users &= set(among)
    return users


def set_cross_signing_key(conn: apsw.Connection, user_id: str, key_type: str,
                          key: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
        (user_id, key_type, json.dumps(key, separators=(",", ":"))))


def device_exists(conn: apsw.Connection, user_id: str, device_id: str) -> bool:
    return conn.execute("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?",
                        (user_id, device_id)).fetchone() is not None


def add_signature(conn: apsw.Connection, target_user_id: str, target_key_id: str,
                  signer_user_id: str, signing_key_id: str, signature: str) -> None:
    conn.execute(
        "INSERT INTO cross_signing_signatures (target_user_id, target_key_id, signer_user_id,"
        " signing_key_id, signature) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (target_user_id, target_key_id, signer_user_id, signing_key_id)"
        " DO UPDATE SET signature = excluded.signature",
        (target_user_id, target_key_id, signer_user_id, signing_key_id, signature))


def delete_signatures_by(conn: apsw.Connection, signer_user_id: str, signing_key_id: str
                         ) -> None:
    conn.execute("DELETE FROM cross_signing_signatures WHERE signer_user_id = ?"
                 " AND signing_key_id = ?", (signer_user_id, signing_key_id))


def visible_signatures(conn: apsw.Connection, target_user_id: str, viewer: str
                       ) -> list[tuple[str, str, str, str]]:
    """(target_key_id, signer, signing_key_id, signature) on the user's keys that `viewer` may
    see: the user's own signatures, and the viewer's signatures on them."""
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
        "SELECT target_key_id, signer_user_id, signing_key_id, signature"
        " FROM cross_signing_signatures WHERE target_user_id = ?"
        " AND (signer_user_id = target_user_id OR signer_user_id = ?)"
        " ORDER BY target_key_id, signer_user_id, signing_key_id", (target_user_id, viewer))]


# -- devices deleted by another process, to be announced ---------------------------------------


def record_offline_deletions(conn: apsw.Connection, user_id: str, device_ids: list[str]) -> None:
    """In the transaction that deleted `device_ids` (whose trigger recorded one change each, in
    order): queue their announcement for the running server."""
    if not device_ids:
        return
    positions = recent_changes_of(conn, user_id, len(device_ids))
    conn.executemany("INSERT OR REPLACE INTO device_deletions_outbox (stream_id, user_id,"
                     " device_id) VALUES (?, ?, ?)",
                     [(p, user_id, d) for p, d in zip(positions, device_ids, strict=True)])


def offline_deletions(conn: apsw.Connection, limit: int = 1000) -> list[tuple[int, str, str]]:
    return [(int(p), str(u), str(d)) for p, u, d in conn.execute(
        "SELECT stream_id, user_id, device_id FROM device_deletions_outbox ORDER BY stream_id"
        " LIMIT ?", (limit,))]


def forget_offline_deletions(conn: apsw.Connection, positions: list[int]) -> None:
    conn.executemany("DELETE FROM device_deletions_outbox WHERE stream_id = ?",
                     [(p,) for p in positions])
