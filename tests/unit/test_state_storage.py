"""State groups stay linear in size and read back exactly (snapshots + deltas)."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

import apsw

from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo


def _rows(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM state_group_entries").fetchone()
    assert row is not None
    return int(row[0])


def _apply_changes(db: Database, changes: list[tuple[str, str]]) -> tuple[list[int], list[dict[
        tuple[str, str], str]]]:
    """Create one state group per change, as the append pipeline does; return groups and the
    expected state after each."""
    groups: list[int] = []
    expected: list[dict[tuple[str, str], str]] = []

    def txn(conn: apsw.Connection) -> None:
        rooms_repo.insert_room(conn, "!r:x", "12", "@a:x", 0, False)
        state: dict[tuple[str, str], str] = {}
        group: int | None = None
        for i, key in enumerate(changes):
            state[key] = f"$e{i}"
            group = events_repo.create_state_group(
                conn, "!r:x", group, {key: f"$e{i}"}, len(state), partial(dict, state))
            groups.append(group)
            expected.append(dict(state))

    db.write_sync(txn)
    return groups, expected


def test_ten_thousand_joins_grow_storage_linearly(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "db.sqlite", readers=1)
    n = 10_000
    groups, expected = _apply_changes(db, [("m.room.member", f"@u{i}:x") for i in range(n)])
    rows = db.read_sync(_rows)
    # Every change adds one key, so the state reaches n entries. A snapshot per 100 changes
    # would store ~n*n/200 = 500,000 rows; growth must stay linear instead.
    assert rows < 4 * n, rows
    for i in (0, 1, 31, 32, 33, 999, 5_000, n - 1):
        assert db.read_sync(partial(events_repo.load_state_group, group=groups[i])) == \
            expected[i]
    db.close()


def test_repeated_changes_to_few_keys_read_back_exactly(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "db.sqlite", readers=1)
    rng = random.Random(7)
    keys = [("m.room.name", ""), ("m.room.topic", "")] + [
        ("m.room.member", f"@u{i}:x") for i in range(20)]
    groups, expected = _apply_changes(db, [rng.choice(keys) for _ in range(2_000)])
    assert db.read_sync(_rows) < 3 * 2_000
    for i in range(0, 2_000, 97):
        assert db.read_sync(partial(events_repo.load_state_group, group=groups[i])) == \
            expected[i]
        for key, event_id in expected[i].items():
            assert db.read_sync(partial(events_repo.state_group_value, group=groups[i],
                                        event_type=key[0], state_key=key[1])) == event_id
    db.close()


def _plan_of(conn: apsw.Connection, call: Callable[[apsw.Connection], object]) -> list[str]:
    """The query plan of every statement `call` runs on `conn`."""
    statements: list[tuple[str, tuple[object, ...]]] = []

    def trace(_cursor: apsw.Cursor, sql: str, bindings: object) -> bool:
        statements.append((sql, tuple(bindings) if isinstance(bindings, tuple | list) else ()))
        return True

    conn.exec_trace = trace
    try:
        call(conn)
    finally:
        conn.exec_trace = None
    return [str(r[3]) for sql, args in statements
            for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


def test_state_reads_seek_entries_by_key_never_scan_them(tmp_path: Path) -> None:
    # A scan of state_group_entries costs the whole server's state history on every read
    # (it once made sliding sync's visibility checks 13x slower); reads must seek by key.
    db = Database.open(tmp_path / "db.sqlite", readers=1)
    groups, _ = _apply_changes(db, [("m.room.member", f"@u{i}:x") for i in range(300)])

    def plans(conn: apsw.Connection) -> list[str]:
        return (_plan_of(conn, partial(events_repo.load_state_group, group=groups[-1]))
                + _plan_of(conn, partial(events_repo.state_group_value, group=groups[-1],
                                         event_type="m.room.member", state_key="@u5:x")))

    steps = db.read_sync(plans)
    assert any("state_group_entries" in s or "SEARCH e" in s for s in steps), steps
    assert not any(s.startswith("SCAN e") or s == "SCAN state_group_entries" for s in steps), \
        steps
    db.close()
