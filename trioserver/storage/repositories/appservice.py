"""appservice_stream, appservice_txns: what each application service was sent, and what is next."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apsw

from trioserver.storage.repositories.events import decode_pdu
from trioserver.storage.repositories.stream_ids import last_stream_id


@dataclass(frozen=True)
class StreamRow:
    """An event as the interest filter sees it, without its PDU."""

    stream_ordering: int
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str


@dataclass(frozen=True)
class Positions:
    """What an appservice was sent (or skipped) of each stream."""

    events: int
    to_device: int = 0  # to_device_inbox.stream_id
    device_lists: int = 0  # device_list_changes.stream_id
    receipts: int = 0  # receipts.stream_id


@dataclass(frozen=True)
class PendingTxn:
    txn_id: int
    upto_pos: int
    body: str  # the JSON body, byte for byte as first sent
    upto_to_device: int | None = None  # None: the transaction does not move that position
    upto_device_list: int | None = None
    upto_receipts: int | None = None


@dataclass(frozen=True)
class RoomFacts:
    """What decides whether a room interests an appservice."""

    aliases: frozenset[str]
    joined: frozenset[str]


def position(conn: apsw.Connection, as_id: str) -> Positions:
    """The appservice's last delivered positions; a new one starts at the current ends (it is
    not sent the history from before it was registered, nor before the extensions and the
    receipts position existed)."""
    row = conn.execute("SELECT last_pos, to_device_pos, device_list_pos, receipts_pos"
                       " FROM appservice_stream WHERE as_id = ?", (as_id,)).fetchone()
    if row is None:
        end = conn.execute(
            "SELECT coalesce(max(stream_ordering), 0) FROM events WHERE stream_ordering > 0"
        ).fetchone()
        conn.execute("INSERT INTO appservice_stream (as_id, last_pos) VALUES (?, ?)",
                     (as_id, int(end[0]) if end is not None else 0))
        row = conn.execute("SELECT last_pos, to_device_pos, device_list_pos, receipts_pos"
                           " FROM appservice_stream WHERE as_id = ?", (as_id,)).fetchone()
        assert row is not None
    to_device, device_lists, receipts = row[1], row[2], row[3]
    if to_device is None or device_lists is None or receipts is None:
        to_device = last_stream_id(conn, "to_device_inbox") if to_device is None else to_device
        if device_lists is None:
            device_lists = last_stream_id(conn, "device_list_changes")
        receipts = last_stream_id(conn, "receipts") if receipts is None else receipts
        conn.execute("UPDATE appservice_stream SET to_device_pos = ?, device_list_pos = ?,"
                     " receipts_pos = ? WHERE as_id = ?",
                     (to_device, device_lists, receipts, as_id))
    return Positions(int(row[0]), int(to_device), int(device_lists), int(receipts))


def advance(conn: apsw.Connection, as_id: str, last_pos: int) -> None:
    """Skip past events of no interest."""
    conn.execute("UPDATE appservice_stream SET last_pos = max(last_pos, ?) WHERE as_id = ?",
                 (last_pos, as_id))


def advance_extensions(conn: apsw.Connection, as_id: str, to_device: int | None,
                       device_list: int | None, receipts: int | None = None) -> None:
    """Move past to-device messages, device-list changes and receipts (sent, or of no
    interest); None leaves a position where it is."""
    conn.execute(
        "UPDATE appservice_stream SET"
        " to_device_pos = max(coalesce(to_device_pos, 0), coalesce(?, 0)),"
        " device_list_pos = max(coalesce(device_list_pos, 0), coalesce(?, 0)),"
        " receipts_pos = max(coalesce(receipts_pos, 0), coalesce(?, 0))"
        " WHERE as_id = ?", (to_device, device_list, receipts, as_id))


def events_after(conn: apsw.Connection, after: int, limit: int) -> list[StreamRow]:
    """Events with after < stream_ordering, in stream order (backfill has negative orderings
    and is never delivered)."""
    return [StreamRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]),
                      None if r[4] is None else str(r[4]), str(r[5]))
            for r in conn.execute(
                "SELECT stream_ordering, event_id, room_id, type, state_key, sender FROM events"
                " WHERE stream_ordering > ? ORDER BY stream_ordering LIMIT ?",
                (max(after, 0), limit))]


def room_facts(conn: apsw.Connection, room_ids: Iterable[str]) -> dict[str, RoomFacts]:
    """Each room's local aliases plus its canonical aliases, and its joined members."""
    out: dict[str, RoomFacts] = {}
    for room_id in set(room_ids):
        aliases = {str(a) for (a,) in conn.execute(
            "SELECT alias FROM room_aliases WHERE room_id = ?", (room_id,))}
        row = conn.execute(
            "SELECT e.pdu FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.room_id = ? AND c.type = 'm.room.canonical_alias' AND c.state_key = ''",
            (room_id,)).fetchone()
        if row is not None:
            content = decode_pdu(bytes(row[0])).get("content")
            if isinstance(content, dict):
                aliases.update(_canonical_aliases(content))
        joined = {str(u) for (u,) in conn.execute(
            "SELECT state_key FROM current_state WHERE room_id = ? AND type = 'm.room.member'"
            " AND membership = 'join'", (room_id,))}
        out[room_id] = RoomFacts(frozenset(aliases), frozenset(joined))
    return out


def joined_rooms(conn: apsw.Connection, user_id: str) -> set[str]:
    return {str(r) for (r,) in conn.execute(
        "SELECT room_id FROM current_state WHERE type = 'm.room.member' AND state_key = ?"
        " AND membership = 'join'", (user_id,))}


def _canonical_aliases(content: dict[Any, Any]) -> set[str]:
    found = {content["alias"]} if isinstance(content.get("alias"), str) else set()
    alt = content.get("alt_aliases")
    if isinstance(alt, list):
        found.update(a for a in alt if isinstance(a, str))
    return found


def pending(conn: apsw.Connection, as_id: str) -> PendingTxn | None:
    row = conn.execute("SELECT txn_id, upto_pos, body, upto_to_device, upto_device_list,"
                       " upto_receipts FROM appservice_txns WHERE as_id = ?",
                       (as_id,)).fetchone()
    return None if row is None else PendingTxn(int(row[0]), int(row[1]), str(row[2]),
                                               row[3], row[4], row[5])


def record(conn: apsw.Connection, as_id: str, upto_pos: int, body: dict[str, Any],
           upto_to_device: int | None = None, upto_device_list: int | None = None,
           upto_receipts: int | None = None) -> PendingTxn:
    """Number and store the next transaction before it is first sent."""
    row = conn.execute(
        "UPDATE appservice_stream SET next_txn = next_txn + 1 WHERE as_id = ?"
        " RETURNING next_txn - 1", (as_id,)).fetchone()
    assert row is not None, "position() creates the row first"
    txn_id = row[0]
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    conn.execute("INSERT INTO appservice_txns (as_id, txn_id, upto_pos, body, upto_to_device,"
                 " upto_device_list, upto_receipts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (as_id, int(txn_id), upto_pos, text, upto_to_device, upto_device_list,
                  upto_receipts))
    return PendingTxn(int(txn_id), upto_pos, text, upto_to_device, upto_device_list,
                      upto_receipts)


def acknowledge(conn: apsw.Connection, as_id: str, txn_id: int) -> None:
    """The appservice answered 200: move past the transaction's events, to-device messages,
    device-list changes and receipts."""
    row = conn.execute("DELETE FROM appservice_txns WHERE as_id = ? AND txn_id = ?"
                       " RETURNING upto_pos, upto_to_device, upto_device_list, upto_receipts",
                       (as_id, txn_id)).fetchone()
    if row is not None:
        advance(conn, as_id, int(row[0]))
        if row[1] is not None or row[2] is not None or row[3] is not None:
            advance_extensions(conn, as_id, row[1], row[2], row[3])
