"""Receipts pushed to appservices by position: the bounded scan behind a transaction (which
receipts, how far, whether to look again) and the position that moves with the transaction."""

from __future__ import annotations

import json
from typing import Any

import apsw
import pytest

from trioserver.services.appservice import receipts as as_receipts
from trioserver.services.appservice.registration import Registration, parse_registration
from trioserver.storage.migrations import load_migrations, migrate
from trioserver.storage.repositories import appservice as as_repo
from trioserver.storage.repositories.appservice import RoomFacts

SERVER = "hs"
ROOM, OTHER = "!in:hs", "!out:hs"
ALICE, GHOST = "@alice:hs", "@b_1:hs"


def _reg() -> Registration:
    return parse_registration({
        "id": "b", "url": "http://127.0.0.1:1", "as_token": "a", "hs_token": "h",
        "sender_localpart": "bbot", "receive_ephemeral": True,
        "namespaces": {"users": [{"exclusive": True, "regex": "@b_.*"}]}})


@pytest.fixture
def conn() -> apsw.Connection:
    connection = apsw.Connection(":memory:")
    migrate(connection, load_migrations())
    # Receipts are inserted on their own here, without the rooms and events they point to.
    connection.execute("PRAGMA foreign_keys = OFF")
    return connection


def _put(conn: apsw.Connection, room_id: str, user_id: str, receipt_type: str = "m.read",
         event_id: str = "$e", thread_id: str = "", ts: int = 1) -> int:
    row = conn.execute(
        "INSERT OR REPLACE INTO receipts (room_id, user_id, receipt_type, thread_id, event_id,"
        " event_stream_ordering, ts) VALUES (?, ?, ?, ?, ?, 1, ?) RETURNING stream_id",
        (room_id, user_id, receipt_type, thread_id, event_id, ts)).fetchone()
    assert row is not None
    return int(row[0])


def _in_room(room_id: str, _facts: RoomFacts) -> bool:
    return room_id == ROOM


def _collect(conn: apsw.Connection, after: int) -> as_receipts.ReceiptScan:
    return as_receipts.collect(conn, _reg(), SERVER, after, _in_room)


def test_interesting_rooms_and_private_receipts_only_of_its_users(
        conn: apsw.Connection) -> None:
    _put(conn, ROOM, ALICE, ts=5)
    _put(conn, ROOM, ALICE, "m.read.private")  # not the appservice's user: skipped
    _put(conn, ROOM, GHOST, "m.read.private", thread_id="main", ts=7)
    last = _put(conn, OTHER, ALICE)  # a room of no interest
    scan = _collect(conn, 0)
    assert scan.events == [{"type": "m.receipt", "room_id": ROOM, "content": {"$e": {
        "m.read": {ALICE: {"ts": 5}},
        "m.read.private": {GHOST: {"ts": 7, "thread_id": "main"}}}}}]
    assert (scan.upto, scan.more) == (last, False)
    assert _collect(conn, last) == as_receipts.ReceiptScan()  # nothing new: no move


def test_only_receipts_of_no_interest_move_the_position(conn: apsw.Connection) -> None:
    _put(conn, OTHER, ALICE)
    last = _put(conn, ROOM, ALICE, "m.read.private")
    assert _collect(conn, 0) == as_receipts.ReceiptScan([], last, False)


def test_a_replaced_receipt_is_seen_once_under_its_new_position(
        conn: apsw.Connection) -> None:
    first = _put(conn, ROOM, ALICE, event_id="$1")
    scan = _collect(conn, 0)
    assert scan.upto == first
    second = _put(conn, ROOM, ALICE, event_id="$2")
    scan = _collect(conn, first)
    assert [list(e["content"]) for e in scan.events] == [["$2"]]
    assert scan.upto == second


def test_a_bounded_scan_asks_to_look_again(conn: apsw.Connection) -> None:
    limit = as_receipts.MAX_RECEIPTS_PER_TXN
    ids = [_put(conn, ROOM, f"@u{n}:hs") for n in range(limit + 5)]
    scan = _collect(conn, 0)
    assert (scan.upto, scan.more) == (ids[limit - 1], True)
    assert len(scan.events[0]["content"]["$e"]["m.read"]) == limit
    scan = _collect(conn, ids[limit - 1])
    assert (scan.upto, scan.more) == (ids[-1], False)
    assert len(scan.events[0]["content"]["$e"]["m.read"]) == 5


def test_a_long_run_of_no_interest_is_scanned_in_steps(
        conn: apsw.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(as_receipts, "SCAN_BATCH", 2)
    monkeypatch.setattr(as_receipts, "MAX_SCAN_BATCHES", 2)
    ids = [_put(conn, OTHER, f"@u{n}:hs") for n in range(5)]
    scan = _collect(conn, 0)
    assert scan == as_receipts.ReceiptScan([], ids[3], True)
    assert _collect(conn, ids[3]) == as_receipts.ReceiptScan([], ids[4], False)


def test_the_position_moves_only_when_the_transaction_is_acknowledged(
        conn: apsw.Connection) -> None:
    before = _put(conn, ROOM, ALICE, event_id="$old")
    assert as_repo.position(conn, "b").receipts == before  # a new appservice: the current end
    body: dict[str, Any] = {"events": [], "ephemeral": []}
    txn = as_repo.record(conn, "b", upto_pos=0, body=body, upto_receipts=before + 3)
    assert as_repo.pending(conn, "b") == txn
    assert json.loads(txn.body) == body
    assert as_repo.position(conn, "b").receipts == before  # pending: not yet
    as_repo.acknowledge(conn, "b", txn.txn_id)
    assert as_repo.position(conn, "b").receipts == before + 3
    as_repo.advance_extensions(conn, "b", to_device=None, device_list=None)
    assert as_repo.position(conn, "b").receipts == before + 3  # None leaves it
    as_repo.advance_extensions(conn, "b", to_device=None, device_list=None,
                               receipts=before + 1)
    assert as_repo.position(conn, "b").receipts == before + 3  # never backwards
