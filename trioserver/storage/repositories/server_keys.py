"""server_keys, server_key_responses, old_signing_keys: federation signing keys (0013)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    verify_key: bytes
    valid_until_ts: int
    # Set when the server listed the key in old_verify_keys.
    expired_ts: int | None


@dataclass(frozen=True)
class ResponseRow:
    response: dict[str, Any]
    valid_until_ts: int
    fetched_ts: int


def keys_of(conn: apsw.Connection, server_name: str) -> list[KeyRow]:
    return [KeyRow(key_id, bytes(key), valid_until, expired) for key_id, key, valid_until, expired
            in conn.execute("SELECT key_id, verify_key, valid_until_ts, expired_ts"
                            " FROM server_keys WHERE server_name = ?", (server_name,))]


def upsert_keys(conn: apsw.Connection, server_name: str, rows: list[KeyRow],
                fetched_ts: int) -> None:
    conn.executemany(
        "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, expired_ts,"
        " fetched_ts) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,"
        " valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts,"
        " fetched_ts = excluded.fetched_ts",
        [(server_name, r.key_id, r.verify_key, r.valid_until_ts, r.expired_ts, fetched_ts)
         for r in rows])


def response_of(conn: apsw.Connection, server_name: str) -> ResponseRow | None:
    row = conn.execute("SELECT response, valid_until_ts, fetched_ts FROM server_key_responses"
                       " WHERE server_name = ?", (server_name,)).fetchone()
    if row is None:
        return None
    return ResponseRow(json.loads(row[0]), int(row[1]), int(row[2]))


def store_response(conn: apsw.Connection, server_name: str, response: dict[str, Any],
                   valid_until_ts: int, fetched_ts: int) -> None:
    """Keep `response` unless the stored one is valid for longer."""
    conn.execute(
        "INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_ts)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (server_name) DO UPDATE SET"
        " response = excluded.response, valid_until_ts = excluded.valid_until_ts,"
        " fetched_ts = excluded.fetched_ts"
        " WHERE excluded.valid_until_ts >= server_key_responses.valid_until_ts",
        (server_name, json.dumps(response, separators=(",", ":")), valid_until_ts, fetched_ts))


def old_signing_keys(conn: apsw.Connection) -> list[tuple[str, bytes, int]]:
    """(key_id, verify_key, expired_ts) of this server's retired keys, oldest first."""
    return [(key_id, bytes(key), int(expired)) for key_id, key, expired in conn.execute(
        "SELECT key_id, verify_key, expired_ts FROM old_signing_keys ORDER BY expired_ts")]


def add_old_signing_key(conn: apsw.Connection, key_id: str, verify_key: bytes,
                        expired_ts: int) -> None:
    conn.execute(
        "INSERT INTO old_signing_keys (key_id, verify_key, expired_ts) VALUES (?, ?, ?)"
        " ON CONFLICT (key_id) DO UPDATE SET verify_key = excluded.verify_key,"
        " expired_ts = excluded.expired_ts", (key_id, verify_key, expired_ts))
