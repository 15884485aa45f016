"""Deactivation: what it removes at once, and the queue of users still to take out of rooms."""

from __future__ import annotations

import apsw

from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import profiles as profiles_repo
from trioserver.storage.repositories import users as users_repo

# Non-event data erased on request ("erase": true): account data (push rules included), filters,
# key backups. Tables in deletion order (keys before the versions they reference).
_ERASED_TABLES = ("account_data", "push_rules", "push_rule_defaults", "filters",
                  "key_backup_keys", "key_backup_versions")


def deactivate(conn: apsw.Connection, user_id: str, *, erase: bool, now_ms: int) -> list[str]:
    """Deactivate the account in one transaction: devices and their tokens, profile, pushers,
    the password; queue the user's rooms to be left. Returns the deleted device IDs."""
    deleted = devices_repo.delete_all_devices(conn, user_id)
    profiles_repo.delete_profile(conn, user_id)
    users_repo.mark_deactivated(conn, user_id)
    conn.execute("DELETE FROM pushers WHERE user_id = ?", (user_id,))
    if erase:
        conn.execute("UPDATE users SET erased = 1 WHERE user_id = ?", (user_id,))
        for table in _ERASED_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
    conn.execute("INSERT OR IGNORE INTO deactivation_queue (user_id, queued_ts) VALUES (?, ?)",
                 (user_id, now_ms))
    return deleted


def queued(conn: apsw.Connection) -> list[str]:
    """Users still to be taken out of their rooms, oldest first."""
    return [r[0] for r in conn.execute(
        "SELECT user_id FROM deactivation_queue ORDER BY queued_ts, user_id")]


def rooms_to_leave(conn: apsw.Connection, user_id: str) -> list[str]:
    """Rooms where the user is joined, invited or knocking, and pending invites from other
    servers."""
    rooms = [r[0] for r in conn.execute(
        "SELECT room_id FROM current_state WHERE type = 'm.room.member' AND state_key = ?"
        " AND membership IN ('join', 'invite', 'knock') ORDER BY room_id", (user_id,))]
    rooms += [r[0] for r in conn.execute(
        "SELECT room_id FROM remote_invites WHERE user_id = ? AND active = 1"
        " ORDER BY room_id", (user_id,)) if r[0] not in rooms]
    return rooms


def done(conn: apsw.Connection, user_id: str) -> None:
    conn.execute("DELETE FROM deactivation_queue WHERE user_id = ?", (user_id,))


def is_erased(conn: apsw.Connection, user_id: str) -> bool:
    row = conn.execute("SELECT erased FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return bool(row and row[0])


def erased_users(conn: apsw.Connection) -> set[str]:
    """Users who asked for erasure (few: the set is kept in memory)."""
    return {r[0] for r in conn.execute("SELECT user_id FROM users WHERE erased = 1")}
