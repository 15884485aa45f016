"""Account administration: lock/suspend flags, whois sessions, the Synapse-style user list."""

from __future__ import annotations

import json
from dataclasses import dataclass

import apsw


@dataclass(frozen=True)
class AccountFlags:
    is_admin: bool
    deactivated: bool
    locked: bool
    suspended: bool


@dataclass(frozen=True)
class SessionRow:
    device_id: str
    last_seen_ip: str | None
    last_seen_ts: int | None
    user_agent: str | None


@dataclass(frozen=True)
class AdminUserRow:
    user_id: str
    is_admin: bool
    is_guest: bool
    deactivated: bool
    locked: bool
    suspended: bool
    created_ts: int
    displayname: str | None


def get_flags(conn: apsw.Connection, user_id: str) -> AccountFlags | None:
    row = conn.execute(
        "SELECT is_admin, deactivated, locked, suspended FROM users WHERE user_id = ?", (user_id,)
    ).fetchone()
    if row is None:
        return None
    return AccountFlags(bool(row[0]), bool(row[1]), bool(row[2]), bool(row[3]))


def set_locked(conn: apsw.Connection, user_id: str, locked: bool) -> None:
    conn.execute("UPDATE users SET locked = ? WHERE user_id = ?", (int(locked), user_id))


def set_suspended(conn: apsw.Connection, user_id: str, suspended: bool) -> None:
    conn.execute("UPDATE users SET suspended = ? WHERE user_id = ?", (int(suspended), user_id))


def list_sessions(conn: apsw.Connection, user_id: str) -> list[SessionRow]:
    rows = conn.execute(
        "SELECT device_id, last_seen_ip, last_seen_ts, user_agent FROM devices"
        " WHERE user_id = ? ORDER BY device_id",
        (user_id,),
    )
    return [SessionRow(r[0], r[1], r[2], r[3]) for r in rows]


_USER_COLUMNS = (
    "SELECT u.user_id, u.is_admin, u.is_guest, u.deactivated, u.locked, u.suspended,"
    " u.created_ts, p.value_json FROM users u"
    " LEFT JOIN profile_fields p ON p.user_id = u.user_id AND p.field = 'displayname'"
)


def _admin_row(r: tuple[object, ...]) -> AdminUserRow:
    return AdminUserRow(str(r[0]), bool(r[1]), bool(r[2]), bool(r[3]), bool(r[4]), bool(r[5]),
                        int(r[6]) if isinstance(r[6], int) else 0,
                        _json_str(r[7]))


def _json_str(value_json: object) -> str | None:
    if not isinstance(value_json, str):
        return None
    value = json.loads(value_json)
    return value if isinstance(value, str) else None


def list_users_page(
    conn: apsw.Connection, *, offset: int, limit: int, include_guests: bool,
    include_deactivated: bool, name_contains: str | None,
) -> tuple[list[AdminUserRow], int]:
    """One page of accounts ordered by user ID, and the total that matched."""
    where = ["1 = 1"]
    args: list[object] = []
    if not include_guests:
        where.append("u.is_guest = 0")
    if not include_deactivated:
        where.append("u.deactivated = 0")
    if name_contains:
        where.append("instr(lower(u.user_id), lower(?)) > 0")
        args.append(name_contains)
    clause = " WHERE " + " AND ".join(where)
    total_row = conn.execute(f"SELECT count(*) FROM users u{clause}", args).fetchone()
    rows = conn.execute(
        f"{_USER_COLUMNS}{clause} ORDER BY u.user_id LIMIT ? OFFSET ?", [*args, limit, offset]
    )
    return [_admin_row(r) for r in rows], int(total_row[0]) if total_row else 0


def get_admin_user(conn: apsw.Connection, user_id: str) -> AdminUserRow | None:
    row = conn.execute(f"{_USER_COLUMNS} WHERE u.user_id = ?", (user_id,)).fetchone()
    return None if row is None else _admin_row(row)
