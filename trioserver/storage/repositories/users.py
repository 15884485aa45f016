"""users: accounts, password hashes, admin/guest/deactivated flags."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


class UserExists(Exception):
    """The user ID is taken (raised inside a write; the service maps it to M_USER_IN_USE)."""


@dataclass(frozen=True)
class UserRow:
    user_id: str
    password_hash: str | None
    is_admin: bool
    is_guest: bool
    deactivated: bool
    created_ts: int


def insert_user(
    conn: apsw.Connection,
    user_id: str,
    password_hash: str | None,
    *,
    now_ms: int,
    is_admin: bool = False,
    is_guest: bool = False,
) -> None:
    try:
        conn.execute(
            "INSERT INTO users (user_id, password_hash, is_admin, is_guest, created_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, password_hash, int(is_admin), int(is_guest), now_ms),
        )
    except apsw.ConstraintError as e:
        raise UserExists(user_id) from e


def get_user(conn: apsw.Connection, user_id: str) -> UserRow | None:
    row = conn.execute(
        "SELECT user_id, password_hash, is_admin, is_guest, deactivated, created_ts"
        " FROM users WHERE user_id = ?",
        (user_id,),
    ).fetchone()
    if row is None:
        return None
    return UserRow(row[0], row[1], bool(row[2]), bool(row[3]), bool(row[4]), row[5])


def user_exists(conn: apsw.Connection, user_id: str) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone() is not None


def set_password_hash(conn: apsw.Connection, user_id: str, password_hash: str | None) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id))


def mark_deactivated(conn: apsw.Connection, user_id: str) -> None:
    conn.execute(
        "UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?", (user_id,)
    )


def count_users(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM users").fetchone()
    return int(row[0]) if row else 0


def list_users(conn: apsw.Connection) -> list[UserRow]:
    """Every account, oldest first (the admin CLI's `list-users`)."""
    rows = conn.execute(
        "SELECT user_id, password_hash, is_admin, is_guest, deactivated, created_ts"
        " FROM users ORDER BY created_ts, user_id"
    )
    return [UserRow(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5]) for r in rows]


def set_admin(conn: apsw.Connection, user_id: str, is_admin: bool) -> bool:
    """Grant or revoke server admin; False if there is no such user."""
    cur = conn.execute(
        "UPDATE users SET is_admin = ? WHERE user_id = ? RETURNING 1", (int(is_admin), user_id)
    )
    return cur.fetchone() is not None


def any_user_id(conn: apsw.Connection) -> str | None:
    """One local user's ID (to tell which server name a database belongs to), or None."""
    row = conn.execute("SELECT user_id FROM users WHERE is_guest = 0 LIMIT 1").fetchone()
    return None if row is None else str(row[0])
