"""Read receipts pushed to application services (spec v1.13 "Pushing ephemeral data", for
registrations with `receive_ephemeral`).

They are read from the receipts table after the appservice's receipts position, as the to-device
extension reads the inbox (e2ee_extensions.py). The table keeps the newest receipt per room,
user, type and thread, and a change takes a new, higher stream_id, so the scan sees each key's
newest receipt once. The transaction records the position it completes, which moves only once
the appservice answered 200 (storage/repositories/appservice.py): a receipt stored while the
appservice is down, or while one of its transactions is pending, reaches it once it is back,
across restarts, exactly once.

An appservice gets the receipts of rooms that interest it, and m.read.private receipts only of
its own users; the others are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apsw

from trioserver.services.appservice.registration import Registration
from trioserver.storage.repositories import appservice as as_repo
from trioserver.storage.repositories import receipts as receipts_repo
from trioserver.storage.repositories.appservice import RoomFacts
from trioserver.storage.repositories.receipts import PRIVATE, UNTHREADED, ReceiptRow

MAX_RECEIPTS_PER_TXN = 100
SCAN_BATCH = 1000
MAX_SCAN_BATCHES = 20  # per transaction; more is scanned on the next round

RoomInterest = Callable[[str, RoomFacts], bool]


@dataclass
class ReceiptScan:
    events: list[dict[str, Any]] = field(default_factory=list)  # m.receipt, one per room
    upto: int | None = None  # the position scanned up to; None: nothing new
    more: bool = False  # the scan stopped early: look again without waiting


def receipt_content(rows: list[ReceiptRow]) -> dict[str, Any]:
    """m.receipt content as /sync shows it: event -> receipt type -> user -> {ts, thread_id}."""
    content: dict[str, Any] = {}
    for row in rows:
        entry: dict[str, Any] = {"ts": row.ts}
        if row.thread_id != UNTHREADED:
            entry["thread_id"] = row.thread_id
        content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})[row.user_id] = entry
    return content


def receipt_events(rows: list[ReceiptRow]) -> list[dict[str, Any]]:
    """One m.receipt ephemeral event per room, rooms in the order of their first receipt."""
    by_room: dict[str, list[ReceiptRow]] = {}
    for row in rows:
        by_room.setdefault(row.room_id, []).append(row)
    return [{"type": "m.receipt", "room_id": room_id, "content": receipt_content(room_rows)}
            for room_id, room_rows in by_room.items()]


def collect(conn: apsw.Connection, reg: Registration, server_name: str, after: int,
            room_interest: RoomInterest) -> ReceiptScan:
    """The receipts after `after` the appservice may see (at most MAX_RECEIPTS_PER_TXN), as
    ephemeral events, and how far the scan went."""
    interesting: dict[str, bool] = {}
    found: list[ReceiptRow] = []
    upto = after
    more = True  # unless the scan reaches the end of the table
    for _ in range(MAX_SCAN_BATCHES):
        rows = receipts_repo.receipts_after(conn, upto, SCAN_BATCH)
        if not rows:
            more = False
            break
        unknown = {r.room_id for r in rows} - interesting.keys()
        for room_id, facts in as_repo.room_facts(conn, unknown).items():
            interesting[room_id] = room_interest(room_id, facts)
        for row in rows:
            upto = row.stream_id
            if not interesting[row.room_id]:
                continue
            if row.receipt_type == PRIVATE and not reg.is_interested_in_user(row.user_id,
                                                                             server_name):
                continue  # a private receipt only for the appservice's own users
            found.append(row)
            if len(found) == MAX_RECEIPTS_PER_TXN:
                break
        if found:
            more = len(found) == MAX_RECEIPTS_PER_TXN or len(rows) == SCAN_BATCH
            break
    return ReceiptScan(receipt_events(found), upto if upto > after else None, more)
