"""m.direct_to_device in and out (services/federation/to_device_edu.py): the outbox's order,
acknowledgement and deletion, and the persisted dedup of received message_ids."""

from __future__ import annotations

from typing import Any

import apsw
import pytest
import trio

from tests.unit.federation.conftest import DAY, NOW, Clock
from trioserver.errors import MatrixError
from trioserver.services.federation.sender import MAX_EDU_QUEUE, FederationSender
from trioserver.services.federation.to_device_edu import EDU_TYPE, Claim, FederatedToDevice
from trioserver.services.to_device import Messages
from trioserver.storage.db import Database

US = "us.example"


class Recorder:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.delivered: list[tuple[str, str, Messages]] = []
        self.queued: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = False

    async def deliver(self, sender: str, event_type: str, messages: Messages,
                      claim: Claim) -> None:
        def txn(conn: apsw.Connection) -> None:
            if not claim(conn):
                return
            if self.fail:
                raise RuntimeError("database unavailable")
            self.delivered.append((sender, event_type, messages))

        await self.db.write(txn)

    def queue_edu(self, destination: str, edu_type: str, content: dict[str, Any]) -> None:
        self.queued.append((destination, edu_type, content))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rec(db: Database) -> Recorder:
    return Recorder(db)


def new_fed(db: Database, rec: Recorder, clock: Clock) -> FederatedToDevice:
    """A FederatedToDevice as after a (re)start."""
    return FederatedToDevice(US, db, rec.deliver, rec.queue_edu, clock=clock)


@pytest.fixture
def fed(db: Database, rec: Recorder, clock: Clock) -> FederatedToDevice:
    return new_fed(db, rec, clock)


async def send(db: Database, fed: FederatedToDevice, messages: Messages,
               sender: str = f"@alice:{US}") -> None:
    """As ToDevice.send does: stage in the client's transaction, wake after the commit."""
    if await db.write(lambda c: fed.stage(c, sender, "m.room.encrypted", messages)):
        fed.wake()


async def count(db: Database, table: str) -> int:
    def read(conn: apsw.Connection) -> int:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])

    return await db.read(read)


def edu(message_id: str = "m1", sender: str = "@bob:them.example") -> dict[str, Any]:
    return {"sender": sender, "type": "m.room.encrypted", "message_id": message_id,
            "messages": {f"@alice:{US}": {"DEV": {"x": 1}}}}


async def test_one_edu_per_destination_server_with_one_message_id(
        db: Database, fed: FederatedToDevice, rec: Recorder) -> None:
    await send(db, fed, {
        "@a:one.example": {"D1": {"n": 1}}, "@b:one.example": {"*": {"n": 2}},
        "@c:two.example": {"D3": {"n": 3}}, "@self:us.example": {"D": {}}})
    await fed.queue_outbox()
    assert [(d, t) for d, t, _ in rec.queued] == [("one.example", EDU_TYPE),
                                                  ("two.example", EDU_TYPE)]
    one, two = rec.queued[0][2], rec.queued[1][2]
    assert one["messages"] == {"@a:one.example": {"D1": {"n": 1}},
                               "@b:one.example": {"*": {"n": 2}}}
    assert two["messages"] == {"@c:two.example": {"D3": {"n": 3}}}
    assert one["sender"] == "@alice:us.example"
    assert one["type"] == "m.room.encrypted"
    assert one["message_id"] == two["message_id"]


async def test_only_local_recipients_stage_nothing(db: Database, fed: FederatedToDevice,
                                                   rec: Recorder) -> None:
    assert not await db.write(lambda c: fed.stage(c, f"@a:{US}", "t", {f"@b:{US}": {"D": {}}}))
    await fed.queue_outbox()
    assert rec.queued == []


async def test_outbox_is_queued_in_order_once(db: Database, fed: FederatedToDevice,
                                              rec: Recorder) -> None:
    for n in range(5):
        await send(db, fed, {"@a:one.example": {"D": {"n": n}}})
    await fed.queue_outbox()
    await fed.queue_outbox()  # nothing new: nothing queued twice
    assert [c["messages"]["@a:one.example"]["D"]["n"] for _, _, c in rec.queued] == [
        0, 1, 2, 3, 4]
    await send(db, fed, {"@a:one.example": {"D": {"n": 5}}})
    await fed.queue_outbox()
    assert len(rec.queued) == 6


async def test_only_acknowledged_edus_are_deleted_and_the_rest_requeued_after_restart(
        db: Database, fed: FederatedToDevice, rec: Recorder, clock: Clock) -> None:
    for n in range(3):
        await send(db, fed, {"@a:one.example": {"D": {"n": n}},
                             "@b:two.example": {"D": {"n": n}}})
    await fed.queue_outbox()
    to_one = [{"edu_type": t, "content": c} for d, t, c in rec.queued if d == "one.example"]
    # one.example acknowledged a transaction with the first two (and an unrelated EDU).
    await fed.on_sent("one.example", [*to_one[:2], {"edu_type": "m.typing", "content": {}}])
    rec.queued.clear()
    restarted = new_fed(db, rec, clock)
    await restarted.queue_outbox()
    assert [(d, c["messages"][next(iter(c["messages"]))]["D"]["n"])
            for d, _, c in rec.queued] == [("two.example", 0), ("two.example", 1),
                                           ("one.example", 2), ("two.example", 2)]


async def test_rows_are_deleted_only_when_the_sender_got_the_acknowledgement(
        db: Database, rec: Recorder, nursery: trio.Nursery) -> None:
    release = trio.Event()
    carried: list[dict[str, Any]] = []

    async def send_transaction(destination: str, txn_id: str, body: dict[str, Any]) -> None:
        carried.extend(body["edus"])
        await release.wait()

    sender = FederationSender(US, None, send_transaction)  # type: ignore[arg-type]
    await nursery.start(sender.run)
    real = FederatedToDevice(US, db, rec.deliver, sender.queue_edu)
    sender.edu_ack_listeners.append(real.on_sent)
    await nursery.start(real.run)
    await send(db, real, {"@a:one.example": {"D": {"n": 1}}})

    async def outbox() -> int:
        return await count(db, "federation_to_device_outbox")

    with trio.fail_after(5):
        while not carried:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert carried[0]["edu_type"] == EDU_TYPE
    assert await outbox() == 1  # in flight, not acknowledged
    release.set()
    with trio.fail_after(5):
        while await outbox():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_repeated_message_id_is_delivered_once_even_after_a_restart(
        db: Database, fed: FederatedToDevice, rec: Recorder, clock: Clock) -> None:
    await fed.receive("them.example", edu("m1"))
    await fed.receive("them.example", edu("m1"))
    await fed.receive("them.example", edu("m2"))
    assert len(rec.delivered) == 2
    # Message IDs are per origin server.
    await fed.receive("other.example", edu("m1", sender="@eve:other.example"))
    assert len(rec.delivered) == 3
    await new_fed(db, rec, clock).receive("them.example", edu("m1"))
    assert len(rec.delivered) == 3


async def test_seen_message_ids_are_forgotten_after_seven_days(
        db: Database, fed: FederatedToDevice, rec: Recorder, clock: Clock) -> None:
    await fed.receive("them.example", edu("m1"))
    clock.now = NOW + 8 * DAY
    await fed.receive("them.example", edu("m2"))  # prunes m1
    assert await count(db, "federation_to_device_seen") == 1


async def test_the_sender_must_belong_to_the_origin(fed: FederatedToDevice,
                                                    rec: Recorder) -> None:
    with pytest.raises(MatrixError):
        await fed.receive("evil.example", edu(sender="@bob:them.example"))
    with pytest.raises(MatrixError):
        await fed.receive("them.example", {"sender": "@bob:them.example", "type": "t"})
    assert rec.delivered == []


async def test_a_failed_delivery_can_be_retried(fed: FederatedToDevice, rec: Recorder) -> None:
    rec.fail = True
    with pytest.raises(RuntimeError):
        await fed.receive("them.example", edu("m1"))
    rec.fail = False
    await fed.receive("them.example", edu("m1"))
    assert len(rec.delivered) == 1


async def test_messages_dropped_while_a_server_was_away_go_out_when_it_is_back(
        db: Database, rec: Recorder, nursery: trio.Nursery) -> None:
    """More to-device EDUs than the sender keeps in memory pile up for a dead server; the
    oldest are dropped from memory but stay in the outbox. Once the server answers again and
    its queue drained, the outbox is handed over again in batches: every message arrives, with
    no restart, and the outbox empties."""
    up = trio.Event()
    received: list[str] = []

    async def send_transaction(destination: str, txn_id: str, body: dict[str, Any]) -> None:
        if not up.is_set():
            raise OSError("connection refused")
        received.extend(e["content"]["message_id"] for e in body["edus"])

    fed_sender = FederationSender(US, None, send_transaction)  # type: ignore[arg-type]
    await nursery.start(fed_sender.run)
    real = FederatedToDevice(US, db, rec.deliver, fed_sender.queue_edu)
    fed_sender.edu_ack_listeners.append(real.on_sent)
    fed_sender.edu_drop_listeners.append(real.requeue)
    await nursery.start(real.run)
    total = MAX_EDU_QUEUE + 700  # more than the queue holds and than one requeue batch
    for n in range(total):
        await send(db, real, {"@a:one.example": {"D": {"n": n}}})
    with trio.fail_after(10):
        while await count(db, "federation_to_device_outbox") < total:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert fed_sender.stats()["one.example"]["edus"] == MAX_EDU_QUEUE  # the rest dropped
    up.set()  # the sender's back-off retries within seconds
    with trio.fail_after(15):
        while await count(db, "federation_to_device_outbox"):  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert len(set(received)) == total
