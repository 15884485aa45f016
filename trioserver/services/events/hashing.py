"""Content hashes, reference hashes and event IDs (Server-Server API, "Signing events")."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from trioserver.services.events import canonical_json
from trioserver.services.events.redaction import redact
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion


def unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def urlsafe_unpadded_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode_unpadded_b64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not."""
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def content_hash(pdu: dict[str, Any]) -> bytes:
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(canonical_json.encode(stripped)).digest()


def reference_hash(pdu: dict[str, Any], room_version: RoomVersion) -> bytes:
    redacted = redact(pdu, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(canonical_json.encode(redacted)).digest()


def compute_event_id(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """The event ID of a PDU in room versions 3+ ("$" + its reference hash)."""
    digest = reference_hash(pdu, room_version)
    if room_version.event_id_format is EventIdFormat.V3:
        return "$" + unpadded_b64(digest)
    if room_version.event_id_format is EventIdFormat.V4:
        return "$" + urlsafe_unpadded_b64(digest)
    raise ValueError("room versions 1 and 2 carry their event IDs in the event")


def room_id_from_create_event_id(event_id: str) -> str:
    """Room version 12: the room ID is the create event's ID with the "!" sigil."""
    return "!" + event_id[1:]


def add_content_hash(pdu: dict[str, Any]) -> None:
    pdu["hashes"] = {"sha256": unpadded_b64(content_hash(pdu))}


def check_content_hash(pdu: dict[str, Any]) -> bool:
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        return False
    try:
        return decode_unpadded_b64(hashes["sha256"]) == content_hash(pdu)
    except ValueError:
        return False
