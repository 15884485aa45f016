"""m.direct_to_device in and out (services/federation/to_device_edu.py), with fakes."""

from __future__ import annotations

from typing import Any

import pytest

from trioserver.errors import MatrixError
from trioserver.services.federation.to_device_edu import EDU_TYPE, FederatedToDevice
from trioserver.services.to_device import Messages

US = "us.example"


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, str, Messages]] = []
        self.queued: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = False

    async def deliver(self, sender: str, event_type: str, messages: Messages) -> None:
        if self.fail:
            raise RuntimeError("database unavailable")
        self.delivered.append((sender, event_type, messages))

    def queue_edu(self, destination: str, edu_type: str, content: dict[str, Any]) -> None:
        self.queued.append((destination, edu_type, content))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def fed(rec: Recorder) -> FederatedToDevice:
    return FederatedToDevice(US, rec.deliver, rec.queue_edu)


def edu(message_id: str = "m1", sender: str = "@bob:them.example") -> dict[str, Any]:
    return {"sender": sender, "type": "m.room.encrypted", "message_id": message_id,
            "messages": {f"@alice:{US}": {"DEV": {"x": 1}}}}


def test_one_edu_per_destination_server_with_one_message_id(
        fed: FederatedToDevice, rec: Recorder) -> None:
    fed.send("@alice:us.example", "m.room.encrypted", {
        "@a:one.example": {"D1": {"n": 1}}, "@b:one.example": {"*": {"n": 2}},
        "@c:two.example": {"D3": {"n": 3}}, "@self:us.example": {"D": {}}})
    assert [(d, t) for d, t, _ in rec.queued] == [("one.example", EDU_TYPE),
                                                  ("two.example", EDU_TYPE)]
    one, two = rec.queued[0][2], rec.queued[1][2]
    assert one["messages"] == {"@a:one.example": {"D1": {"n": 1}},
                               "@b:one.example": {"*": {"n": 2}}}
    assert two["messages"] == {"@c:two.example": {"D3": {"n": 3}}}
    assert one["sender"] == "@alice:us.example"
    assert one["type"] == "m.room.encrypted"
    assert one["message_id"] == two["message_id"]


async def test_a_repeated_message_id_is_delivered_once(fed: FederatedToDevice,
                                                       rec: Recorder) -> None:
    await fed.receive("them.example", edu("m1"))
    await fed.receive("them.example", edu("m1"))
    await fed.receive("them.example", edu("m2"))
    assert len(rec.delivered) == 2
    # Message IDs are per origin server.
    await fed.receive("other.example", edu("m1", sender="@eve:other.example"))
    assert len(rec.delivered) == 3


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
