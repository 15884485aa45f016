"""User directory search over users, profile_fields and current_state (read-only)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import apsw

from trioserver.storage.repositories.events import decode_pdu


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    display_name: str | None
    avatar_url: str | None


def public_rooms(conn: apsw.Connection) -> list[str]:
    """Rooms whose current join rule is "public"."""
    out: list[str] = []
    for room_id, pdu in conn.execute(
            "SELECT c.room_id, e.pdu FROM current_state c JOIN events e ON e.event_id ="
            " c.event_id WHERE c.type = 'm.room.join_rules' AND c.state_key = ''"):
        content = decode_pdu(pdu).get("content")
        if isinstance(content, dict) and content.get("join_rule") == "public":
            out.append(str(room_id))
    return out


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(conn: apsw.Connection, searcher: str, term: str, limit: int, *,
           all_local_users: bool) -> list[DirectoryUser]:
    """Up to `limit` users visible to `searcher` whose localpart or display name contains
    `term` (case-insensitive): members of rooms the searcher is joined to, joined members of
    public rooms and, with `all_local_users`, every local user. Deactivated users are left
    out. Exact and prefix matches come first."""
    rooms = json.dumps(public_rooms(conn))
    like = _like(term.lower())
    prefix = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(
        """
        WITH visible(user_id) AS (
            SELECT m2.state_key FROM current_state m1 JOIN current_state m2
              ON m2.room_id = m1.room_id AND m2.type = 'm.room.member'
             AND m2.membership = 'join'
             WHERE m1.type = 'm.room.member' AND m1.state_key = :me AND m1.membership = 'join'
            UNION
            SELECT state_key FROM current_state WHERE type = 'm.room.member'
               AND membership = 'join' AND room_id IN (SELECT value FROM json_each(:rooms))
            UNION
            SELECT user_id FROM users WHERE :all AND deactivated = 0 AND is_guest = 0
        ),
        named AS (
            SELECT v.user_id,
                   substr(v.user_id, 2, instr(v.user_id, ':') - 2) AS localpart,
                   (SELECT json_extract(value_json, '$') FROM profile_fields p
                     WHERE p.user_id = v.user_id AND p.field = 'displayname') AS display_name,
                   (SELECT json_extract(value_json, '$') FROM profile_fields p
                     WHERE p.user_id = v.user_id AND p.field = 'avatar_url') AS avatar_url
              FROM visible v LEFT JOIN users u ON u.user_id = v.user_id
             WHERE coalesce(u.deactivated, 0) = 0
        )
        SELECT user_id, display_name, avatar_url FROM named
         WHERE lower(localpart) LIKE :like ESCAPE '\\'
            OR lower(coalesce(display_name, '')) LIKE :like ESCAPE '\\'
         ORDER BY (lower(localpart) LIKE :prefix ESCAPE '\\'
                   OR lower(coalesce(display_name, '')) LIKE :prefix ESCAPE '\\') DESC,
                  user_id
         LIMIT :limit
        """,
        {"me": searcher, "rooms": rooms, "all": int(all_local_users), "like": like,
         "prefix": prefix, "limit": limit}).fetchall()
    return [DirectoryUser(str(u), d if isinstance(d, str) else None,
                          a if isinstance(a, str) and a else None) for u, d, a in rows]
