"""devices, access_tokens, refresh_tokens: a user's sessions and the hashes of their tokens."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


@dataclass(frozen=True)
class DeviceRow:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ip: str | None
    last_seen_ts: int | None


@dataclass(frozen=True)
class TokenRow:
    """What an access token resolves to."""

    user_id: str
    device_id: str
    expires_ts: int | None
    refresh_token_id: int | None
    refresh_prev_id: int | None  # set until this token's refresh token retires its predecessor
    is_guest: bool
    deactivated: bool
    locked: bool = False
    suspended: bool = False


@dataclass(frozen=True)
class RefreshRow:
    id: int
    user_id: str
    device_id: str
    prev_id: int | None


_DEVICE_COLS = "user_id, device_id, display_name, last_seen_ip, last_seen_ts"


def upsert_device(
    conn: apsw.Connection, user_id: str, device_id: str, display_name: str | None, now_ms: int
) -> bool:
    """Create the device if missing (keeping an existing one's name); True if it was created."""
    cur = conn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id, device_id) DO NOTHING RETURNING 1",
        (user_id, device_id, display_name, now_ms),
    )
    return cur.fetchone() is not None


def list_devices(conn: apsw.Connection, user_id: str) -> list[DeviceRow]:
    rows = conn.execute(
        f"SELECT {_DEVICE_COLS} FROM devices WHERE user_id = ? ORDER BY device_id", (user_id,)
    )
    return [DeviceRow(*r) for r in rows]


def get_device(conn: apsw.Connection, user_id: str, device_id: str) -> DeviceRow | None:
    row = conn.execute(
        f"SELECT {_DEVICE_COLS} FROM devices WHERE user_id = ? AND device_id = ?",
        (user_id, device_id),
    ).fetchone()
    return None if row is None else DeviceRow(*row)


def set_display_name(
    conn: apsw.Connection, user_id: str, device_id: str, display_name: str | None
) -> bool:
    cur = conn.execute(
        "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ? RETURNING 1",
        (display_name, user_id, device_id),
    )
    return cur.fetchone() is not None


def touch_device(
    conn: apsw.Connection, user_id: str, device_id: str, ip: str | None, ua: str | None, now_ms: int
) -> None:
    conn.execute(
        "UPDATE devices SET last_seen_ip = ?, last_seen_ts = ?, user_agent = ?"
        " WHERE user_id = ? AND device_id = ?",
        (ip, now_ms, ua, user_id, device_id),
    )


def delete_devices(conn: apsw.Connection, user_id: str, device_ids: list[str]) -> list[str]:
    """Delete devices (their tokens cascade); return the ids that existed."""
    deleted: list[str] = []
    for device_id in device_ids:
        cur = conn.execute(
            "DELETE FROM devices WHERE user_id = ? AND device_id = ? RETURNING device_id",
            (user_id, device_id),
        )
        if cur.fetchone() is not None:
            deleted.append(device_id)
    return deleted


def delete_all_devices(
    conn: apsw.Connection, user_id: str, except_device: str | None = None
) -> list[str]:
    cur = conn.execute(
        "DELETE FROM devices WHERE user_id = ? AND device_id IS NOT ? RETURNING device_id",
        (user_id, except_device),
    )
    return [r[0] for r in cur]


def device_token_hashes(conn: apsw.Connection, user_id: str, device_id: str | None) -> list[bytes]:
    """Hashes of the access tokens of one device (or of every device when None)."""
    if device_id is None:
        cur = conn.execute("SELECT token_hash FROM access_tokens WHERE user_id = ?", (user_id,))
    else:
        cur = conn.execute(
            "SELECT token_hash FROM access_tokens WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        )
    return [bytes(r[0]) for r in cur]


def insert_access_token(
    conn: apsw.Connection,
    token_hash: bytes,
    user_id: str,
    device_id: str,
    *,
    refresh_token_id: int | None,
    expires_ts: int | None,
    now_ms: int,
) -> None:
    conn.execute(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, refresh_token_id, expires_ts,"
        " created_ts) VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, user_id, device_id, refresh_token_id, expires_ts, now_ms),
    )


def get_access_token(conn: apsw.Connection, token_hash: bytes) -> TokenRow | None:
    row = conn.execute(
        "SELECT t.user_id, t.device_id, t.expires_ts, t.refresh_token_id, r.prev_id,"
        " u.is_guest, u.deactivated, u.locked, u.suspended"
        " FROM access_tokens t JOIN users u USING (user_id)"
        " LEFT JOIN refresh_tokens r ON r.id = t.refresh_token_id WHERE t.token_hash = ?",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    return TokenRow(row[0], row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]),
                    bool(row[7]), bool(row[8]))


def delete_access_token(conn: apsw.Connection, token_hash: bytes) -> None:
    conn.execute("DELETE FROM access_tokens WHERE token_hash = ?", (token_hash,))


def insert_refresh_token(
    conn: apsw.Connection,
    token_hash: bytes,
    user_id: str,
    device_id: str,
    *,
    prev_id: int | None,
    now_ms: int,
) -> int:
    row = conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, device_id, prev_id, created_ts)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (token_hash, user_id, device_id, prev_id, now_ms),
    ).fetchone()
    assert row is not None
    return int(row[0])


def get_refresh_token(conn: apsw.Connection, token_hash: bytes) -> RefreshRow | None:
    row = conn.execute(
        "SELECT id, user_id, device_id, prev_id FROM refresh_tokens WHERE token_hash = ?",
        (token_hash,),
    ).fetchone()
    return None if row is None else RefreshRow(*row)


def access_hashes_of_refresh(conn: apsw.Connection, refresh_id: int) -> list[bytes]:
    cur = conn.execute(
        "SELECT token_hash FROM access_tokens WHERE refresh_token_id = ?", (refresh_id,)
    )
    return [bytes(r[0]) for r in cur]


def delete_refresh_token(conn: apsw.Connection, refresh_id: int) -> None:
    """Delete a refresh token; access tokens issued with it cascade."""
    conn.execute("DELETE FROM refresh_tokens WHERE id = ?", (refresh_id,))


def retire_previous_refresh(conn: apsw.Connection, refresh_id: int) -> None:
    """The token `refresh_id` was used: revoke the ones it replaced (and their access tokens).

    Walks the whole chain, because a client may have refreshed several times before using any
    of the new tokens. Also revokes sibling branches: tokens minted by retrying a refresh with
    the predecessor whose results were never used.
    """
    row = conn.execute("SELECT prev_id FROM refresh_tokens WHERE id = ?", (refresh_id,)).fetchone()
    prev = row[0] if row else None
    while prev is not None:
        conn.execute(
            "DELETE FROM refresh_tokens WHERE prev_id = ? AND id != ?", (prev, refresh_id)
        )
        nxt = conn.execute("SELECT prev_id FROM refresh_tokens WHERE id = ?", (prev,)).fetchone()
        conn.execute("DELETE FROM refresh_tokens WHERE id = ?", (prev,))
        prev = nxt[0] if nxt else None
    conn.execute("UPDATE refresh_tokens SET prev_id = NULL WHERE id = ?", (refresh_id,))
