"""Turning PDUs into the Client-Server event format ("ClientEvent")."""

from __future__ import annotations

from typing import Any

from trioserver.services.clock import now_ms
from trioserver.services.events.event import Event
from trioserver.services.events.redaction import redact


def client_event(
    event: Event,
    *,
    redacted_because: Event | None = None,
    txn_id: str | None = None,
    include_room_id: bool = True,
    erased: bool = False,
) -> dict[str, Any]:
    """The client format of `event`, redacted if a redaction of it was accepted, or if its
    sender asked for erasure and the reader may only see it redacted (`erased`)."""
    content: Any = event.content
    if redacted_because is not None or erased:
        content = redact(dict(event.pdu), event.room_version)["content"]
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
        "content": content,
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if event.state_key is not None:
        out["state_key"] = event.state_key
    if event.redacts is not None:
        # Room v11 moved `redacts` into content; clients still read the top-level key.
        out["redacts"] = event.redacts
    unsigned: dict[str, Any] = {"age": max(0, now_ms() - event.origin_server_ts)}
    if redacted_because is not None:
        unsigned["redacted_because"] = client_event(redacted_because)
    if txn_id is not None:
        unsigned["transaction_id"] = txn_id
    out["unsigned"] = unsigned
    return out


def stripped_state(event: Event) -> dict[str, Any]:
    """The "stripped state" form used for invites and knocks."""
    return {"type": event.type, "state_key": event.state_key, "sender": event.sender,
            "content": event.content}
