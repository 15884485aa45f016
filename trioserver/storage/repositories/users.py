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
