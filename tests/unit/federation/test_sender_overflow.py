"""The federation sender's PDU queue per destination: when a destination is away long enough
for it to overflow, the oldest PDUs leave memory only; once it is back and the queue drained,
they are read again from the database (in batches) and sent, so every event arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from trioserver.services.federation import sender as sender_module
from trioserver.services.federation.sender import FederationSender
from trioserver.storage.repositories import federation_out as out_repo
from trioserver.storage.repositories.events import StoredEvent

US = "us.example"
THEM = "them.example"


class _Db:
    """Runs the repository functions the sender uses against `events` (replaced below)."""

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        return fn(None)

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        return fn(None)


def _stored(n: int) -> StoredEvent:
    return StoredEvent(n, f"$e{n}", "!r:us.example", {"n": n}, 0, 0)


async def test_pdus_dropped_while_a_server_was_away_are_sent_when_it_is_back(
        monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery) -> None:
    monkeypatch.setattr(sender_module, "MAX_QUEUE", 50)
    monkeypatch.setattr(sender_module, "CATCH_UP_LIMIT", 30)
    monkeypatch.setattr(sender_module, "BACKOFF_START_S", 0.01)
    events = [_stored(n) for n in range(1, 201)]
    asked: list[int] = []

    def unacked_events(_conn: Any, destination: str, after: int, our_server: str,
                       limit: int) -> list[StoredEvent]:
        asked.append(after)
        return [e for e in events if e.stream_ordering > after][:limit]

    monkeypatch.setattr(out_repo, "unacked_events", unacked_events)
    monkeypatch.setattr(out_repo, "mark_acked", lambda *a, **k: None)
    monkeypatch.setattr(out_repo, "destinations", lambda _c: [])
    up = trio.Event()
    received: list[int] = []

    async def send_transaction(destination: str, txn_id: str, body: dict[str, Any]) -> None:
        if not up.is_set():
            raise OSError("connection refused")
        received.extend(p["n"] for p in body["pdus"])

    sender = FederationSender(US, None, send_transaction, _Db())  # type: ignore[arg-type]
    await nursery.start(sender.run)
    for e in events:
        sender.queue(THEM, dict(e.pdu), e.stream_ordering)
    assert sender.stats()[THEM]["pending"] == 50  # 150 dropped from memory
    up.set()
    with trio.fail_after(10):
        while len(set(received)) < len(events):  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert set(received) == set(range(1, 201))
    assert asked[0] == 0  # re-read from the first dropped one, in batches of 30
    assert len(asked) == 5
