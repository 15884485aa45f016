"""Invites from other servers to rooms this server is not in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.events import decode_pdu, encode_pdu


@dataclass(frozen=True)
class RemoteInvite:
    stream_id: int
    user_id: str
    room_id: str
    event_id: str
    room_version: str
    inviter: str
    invite_state: list[dict[str, Any]]
    pdu: dict[str, object]
    active: bool
    membership: str = "invite"
    list_pos: int = 0  # the room-event position when it arrived or ended (sliding sync order)
    via: str | None = None  # for a knock: the server it went through

    @property
    def server(self) -> str | None:
        """The server to answer through: a knock's, or the inviter's."""
        if self.via is not None:
            return self.via
        _, _, server = self.inviter.partition(":")
        return server or None


_COLS = ("stream_id, user_id, room_id, event_id, room_version, inviter, invite_state, pdu,"
         " active, membership, list_pos, via")
_EVENTS_END = "(SELECT coalesce(max(stream_ordering), 0) FROM events)"


def _row(r: tuple[Any, ...]) -> RemoteInvite:
    return RemoteInvite(int(r[0]), r[1], r[2], r[3], r[4], r[5], json.loads(r[6]),
                        decode_pdu(r[7]), bool(r[8]), r[9], int(r[10]), r[11])


def put(conn: apsw.Connection, *, user_id: str, room_id: str, event_id: str,
        room_version: str, inviter: str, invite_state: list[dict[str, Any]],
        pdu: dict[str, object], membership: str = "invite", via: str | None = None) -> int:
    """Record (or replace) the user's invite to (or knock on) the room; returns its new
    stream_id. `inviter` is the inviting user, or for a knock the user themselves."""
    conn.execute("DELETE FROM remote_invites WHERE user_id = ? AND room_id = ?",
                 (user_id, room_id))
    row = conn.execute(
        "INSERT INTO remote_invites (user_id, room_id, event_id, room_version, inviter,"
        " invite_state, pdu, membership, via, list_pos) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        + _EVENTS_END + ") RETURNING stream_id",
        (user_id, room_id, event_id, room_version, inviter, json.dumps(invite_state),
         encode_pdu(pdu), membership, via)).fetchone()
    assert row is not None
    return int(row[0])


def close(conn: apsw.Connection, user_id: str, room_id: str) -> int | None:
    """The invite was answered (joined or rejected): it moves to a new position, inactive, so
    incremental syncs see it go. Returns that position, or None if there was none."""
    row = conn.execute("SELECT " + _COLS + " FROM remote_invites WHERE user_id = ? AND"
                       " room_id = ? AND active = 1", (user_id, room_id)).fetchone()
    if row is None:
        return None
    invite = _row(row)
    conn.execute("DELETE FROM remote_invites WHERE stream_id = ?", (invite.stream_id,))
    new = conn.execute(
        "INSERT INTO remote_invites (user_id, room_id, event_id, room_version, inviter,"
        " invite_state, pdu, active, membership, via, list_pos)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, " + _EVENTS_END + ") RETURNING stream_id",
        (invite.user_id, invite.room_id, invite.event_id, invite.room_version,
         invite.inviter, json.dumps(invite.invite_state), encode_pdu(invite.pdu),
         invite.membership, invite.via)).fetchone()
    assert new is not None
    return int(new[0])


def get(conn: apsw.Connection, user_id: str, room_id: str) -> RemoteInvite | None:
    row = conn.execute("SELECT " + _COLS + " FROM remote_invites WHERE user_id = ? AND"
                       " room_id = ? AND active = 1", (user_id, room_id)).fetchone()
    return None if row is None else _row(row)


def changed(conn: apsw.Connection, user_id: str, since: int | None, upto: int
            ) -> list[RemoteInvite]:
    """The user's invites with a position in (since, upto]; active ones only on an initial
    sync (since None)."""
    rows = conn.execute(
        "SELECT " + _COLS + " FROM remote_invites WHERE user_id = ? AND stream_id > ?"
        " AND stream_id <= ?" + (" AND active = 1" if since is None else "") +
        " ORDER BY stream_id", (user_id, since or 0, upto))
    return [_row(r) for r in rows]


def of_user(conn: apsw.Connection, user_id: str) -> list[RemoteInvite]:
    """Every room of the user's invites and knocks from other servers, open or ended (one row
    per room)."""
    rows = conn.execute("SELECT " + _COLS + " FROM remote_invites WHERE user_id = ?"
                        " ORDER BY stream_id", (user_id,))
    return [_row(r) for r in rows]
