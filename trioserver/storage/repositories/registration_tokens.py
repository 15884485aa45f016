"""registration_tokens: the admin API's registration tokens (the config's live in memory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apsw


class TokenExists(Exception):
    pass


@dataclass(frozen=True)
class TokenRow:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def valid(self, now_ms: int) -> bool:
        if self.expiry_time is not None and self.expiry_time <= now_ms:
            return False
        return self.uses_allowed is None or self.pending + self.completed < self.uses_allowed

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "uses_allowed": self.uses_allowed, "pending": self.pending,
                "completed": self.completed, "expiry_time": self.expiry_time}


_COLS = "token, uses_allowed, pending, completed, expiry_time"
# The condition under which a token may be used, for SQL (parameter: now in ms).
_VALID = ("(expiry_time IS NULL OR expiry_time > ?) AND"
          " (uses_allowed IS NULL OR pending + completed < uses_allowed)")


def _row(r: tuple[Any, ...]) -> TokenRow:
    return TokenRow(str(r[0]), r[1], int(r[2]), int(r[3]), r[4])


def list_tokens(conn: apsw.Connection) -> list[TokenRow]:
    return [_row(r) for r in conn.execute(f"SELECT {_COLS} FROM registration_tokens"
                                          " ORDER BY token")]


def get(conn: apsw.Connection, token: str) -> TokenRow | None:
    row = conn.execute(f"SELECT {_COLS} FROM registration_tokens WHERE token = ?",
                       (token,)).fetchone()
    return None if row is None else _row(row)


def count(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM registration_tokens").fetchone()
    return int(row[0]) if row else 0


def create(conn: apsw.Connection, token: str, uses_allowed: int | None,
           expiry_time: int | None) -> TokenRow:
    try:
        conn.execute("INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                     " VALUES (?, ?, ?)", (token, uses_allowed, expiry_time))
    except apsw.ConstraintError:
        raise TokenExists(token) from None
    return TokenRow(token, uses_allowed, 0, 0, expiry_time)


def update(conn: apsw.Connection, token: str, changes: dict[str, int | None]) -> TokenRow | None:
    """Set `uses_allowed` and/or `expiry_time` (keys present in `changes`)."""
    for column in ("uses_allowed", "expiry_time"):
        if column in changes:
            conn.execute(f"UPDATE registration_tokens SET {column} = ? WHERE token = ?",
                         (changes[column], token))
    return get(conn, token)


def delete(conn: apsw.Connection, token: str) -> bool:
    conn.execute("DELETE FROM registration_tokens WHERE token = ?", (token,))
    return conn.changes() > 0


def use(conn: apsw.Connection, token: str, now_ms: int) -> bool:
    """In the transaction that creates the account: count one completed registration if the
    token is still valid; False (nothing changed) when it is not, or is not a stored token."""
    conn.execute(f"UPDATE registration_tokens SET completed = completed + 1"
                 f" WHERE token = ? AND {_VALID}", (token, now_ms))
    return conn.changes() > 0
