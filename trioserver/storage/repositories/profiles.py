"""profile_fields: displayname, avatar_url, m.tz and custom profile keys (JSON values)."""

from __future__ import annotations

import json
from typing import Any

import apsw


def get_profile(conn: apsw.Connection, user_id: str) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT field, value_json FROM profile_fields WHERE user_id = ? ORDER BY field", (user_id,)
    )
    return {field: json.loads(value) for field, value in rows}


def profile_size_without(conn: apsw.Connection, user_id: str, field: str) -> int:
    """Bytes the profile takes (key + JSON value per field), not counting `field`."""
    row = conn.execute(
        "SELECT coalesce(sum(length(CAST(field AS BLOB)) + length(CAST(value_json AS BLOB))), 0)"
        " FROM profile_fields WHERE user_id = ? AND field != ?",
        (user_id, field),
    ).fetchone()
    return int(row[0]) if row else 0


def set_field(conn: apsw.Connection, user_id: str, field: str, value_json: str) -> None:
    conn.execute(
        "INSERT INTO profile_fields (user_id, field, value_json) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, field) DO UPDATE SET value_json = excluded.value_json",
        (user_id, field, value_json),
    )


def delete_field(conn: apsw.Connection, user_id: str, field: str) -> None:
    conn.execute("DELETE FROM profile_fields WHERE user_id = ? AND field = ?", (user_id, field))


def delete_profile(conn: apsw.Connection, user_id: str) -> None:
    conn.execute("DELETE FROM profile_fields WHERE user_id = ?", (user_id,))
