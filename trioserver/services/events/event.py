"""The event as the rest of the server sees it: typed fields over the signed PDU JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trioserver.services.events.hashing import compute_event_id, room_id_from_create_event_id
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion


class MalformedEvent(ValueError):
    """The PDU does not have the shape its room version requires."""


StateKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    room_id: str
    sender: str
    type: str
    state_key: str | None
    content: Mapping[str, Any]
    prev_events: tuple[str, ...]
    auth_events: tuple[str, ...]
    depth: int
    origin_server_ts: int
    redacts: str | None
    room_version: RoomVersion
    # The PDU exactly as hashed and signed (no event_id in room versions 3+).
    pdu: Mapping[str, Any]

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_tuple(self) -> StateKey:
        if self.state_key is None:
            raise ValueError(f"{self.event_id} is not a state event")
        return (self.type, self.state_key)

    @property
    def membership(self) -> str | None:
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    @classmethod
    def from_pdu(cls, pdu: dict[str, Any], room_version: RoomVersion,
                 known_event_id: str | None = None) -> Event:
        """Parse a PDU, computing its event ID (and, in v12 creates, its room ID).

        `known_event_id` skips the reference hash for events read back from our own database,
        whose IDs were computed when they were accepted.
        """
        try:
            event_type = pdu["type"]
            sender = pdu["sender"]
            content = pdu["content"]
            depth = pdu["depth"]
            ts = pdu["origin_server_ts"]
        except KeyError as e:
            raise MalformedEvent(f"missing {e.args[0]!r}") from None
        if not isinstance(event_type, str) or not isinstance(sender, str):
            raise MalformedEvent("type and sender must be strings")
        if not isinstance(content, dict):
            raise MalformedEvent("content must be an object")
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise MalformedEvent("depth must be an integer")
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise MalformedEvent("origin_server_ts must be an integer")
        state_key = pdu.get("state_key")
        if state_key is not None and not isinstance(state_key, str):
            raise MalformedEvent("state_key must be a string")
        prev = _event_refs(pdu.get("prev_events", []), room_version, "prev_events")
        auth = _event_refs(pdu.get("auth_events", []), room_version, "auth_events")
        if room_version.event_id_format is EventIdFormat.V1:
            event_id = pdu.get("event_id")
            if not isinstance(event_id, str):
                raise MalformedEvent("event_id is required in this room version")
        elif known_event_id is not None:
            event_id = known_event_id
        else:
            event_id = compute_event_id(pdu, room_version)
        room_id = pdu.get("room_id")
        if room_version.room_id_is_create_hash and event_type == "m.room.create" and \
                state_key == "" and room_id is None:
            room_id = room_id_from_create_event_id(event_id)
        if not isinstance(room_id, str):
            raise MalformedEvent("room_id must be a string")
        redacts = pdu.get("redacts")
        if event_type == "m.room.redaction" and room_version.redacts_in_content:
            redacts = content.get("redacts", redacts)
        return cls(
            event_id=event_id,
            room_id=room_id,
            sender=sender,
            type=event_type,
            state_key=state_key,
            content=content,
            prev_events=prev,
            auth_events=auth,
            depth=depth,
            origin_server_ts=ts,
            redacts=redacts if isinstance(redacts, str) else None,
            room_version=room_version,
            pdu=pdu,
        )


def _event_refs(value: Any, room_version: RoomVersion, name: str) -> tuple[str, ...]:
    """prev_events/auth_events: IDs (v3+) or [id, {hashes}] pairs (v1-2)."""
    if not isinstance(value, list):
        raise MalformedEvent(f"{name} must be a list")
    out: list[str] = []
    for item in value:
        if room_version.event_id_format is EventIdFormat.V1:
            if not (isinstance(item, list) and item and isinstance(item[0], str)):
                raise MalformedEvent(f"{name} entries must be [event_id, hashes] pairs")
            out.append(item[0])
        else:
            if not isinstance(item, str):
                raise MalformedEvent(f"{name} entries must be event IDs")
            out.append(item)
    return tuple(out)
