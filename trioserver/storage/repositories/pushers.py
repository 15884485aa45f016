"""pushers: a user's push gateways (POST /pushers/set)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.push import unread_counts

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_COLUMNS = ("user_id, app_id, pushkey, kind, app_display_name, device_display_name,"
            " profile_tag, lang, data, pushkey_ts")


@dataclass(frozen=True)
class PusherRow:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    pushkey_ts: int


def _row(r: tuple[Any, ...]) -> PusherRow:
    u, a, k, kind, adn, ddn, tag, lang, data, ts = r
    return PusherRow(str(u), str(a), str(k), str(kind), str(adn), str(ddn),
                     None if tag is None else str(tag), str(lang), json.loads(data), int(ts))


def user_pushers(conn: apsw.Connection, user_id: str) -> list[PusherRow]:
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM pushers WHERE user_id = ? ORDER BY app_id, pushkey",
        (user_id,))]


def http_pushers_of(conn: apsw.Connection, user_ids: Iterable[str]) -> list[PusherRow]:
    """The http pushers of these users."""
    ids = sorted(set(user_ids))
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM pushers WHERE kind = 'http' AND user_id IN ({marks})", ids)]


def upsert(conn: apsw.Connection, row: PusherRow, *, append: bool) -> None:
    """Create or replace the user's pusher; unless `append`, other users' pushers with the same
    app_id and pushkey are removed (spec: the `append` flag)."""
    if not append:
        conn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?",
                     (row.app_id, row.pushkey, row.user_id))
    conn.execute(
        f"INSERT OR REPLACE INTO pushers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (row.user_id, row.app_id, row.pushkey, row.kind, row.app_display_name,
         row.device_display_name, row.profile_tag, row.lang, _JSON.encode(row.data),
         row.pushkey_ts))


def delete(conn: apsw.Connection, user_id: str, app_id: str, pushkey: str) -> bool:
    return conn.execute(
        "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ? RETURNING 1",
        (user_id, app_id, pushkey)).fetchone() is not None


def owners(conn: apsw.Connection, app_id: str, pushkey: str) -> set[str]:
    """The users with a pusher for this app_id and pushkey."""
    return {str(r[0]) for r in conn.execute(
        "SELECT user_id FROM pushers WHERE app_id = ? AND pushkey = ?", (app_id, pushkey))}


def unread_total(conn: apsw.Connection, user_id: str) -> int:
    """The user's unread notifications across their rooms (the push badge count)."""
    total = 0
    for (room_id,) in conn.execute(
            "SELECT DISTINCT a.room_id FROM push_actions a JOIN current_state c"
            " ON c.room_id = a.room_id AND c.type = 'm.room.member' AND c.state_key = a.user_id"
            " WHERE a.user_id = ? AND c.membership = 'join'", (user_id,)).fetchall():
        total += sum(n for n, _ in unread_counts(conn, user_id, str(room_id)).values())
    return total
