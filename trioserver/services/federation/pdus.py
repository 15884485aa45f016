"""The checks on a received PDU that need nothing but the PDU and remote keys.

In the spec's order: it must be a valid event for the room version (format and size), carry
valid signatures from every server that must sign it, and match its content hash; a PDU whose
hash does not match is redacted and kept (the spec's rule), one with a bad signature is dropped.
The checks against the room (auth, state, soft-fail) are rooms/remote.py's.
"""

from __future__ import annotations

from typing import Any, Protocol

from trioserver.identifiers import split_user_id
from trioserver.services.events import canonical_json
from trioserver.services.events.event import Event, MalformedEvent
from trioserver.services.events.hashing import check_content_hash
from trioserver.services.events.redaction import redact
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion
from trioserver.services.events.signing import verify_event_signature

MAX_PDU_BYTES = 65_536


class PduError(Exception):
    """The PDU is dropped; the message says why (it goes into the /send response)."""


class VerifyKeys(Protocol):
    async def verify_keys(self, server_name: str, key_ids: Any, *,
                          minimum_valid_until_ts: int) -> dict[str, bytes]: ...


def server_name_of(user_id: str) -> str | None:
    parts = split_user_id(user_id)
    return parts[1] if parts is not None else None


def signing_servers(pdu: dict[str, Any], room_version: RoomVersion) -> set[str]:
    """Servers whose signature the PDU must carry (spec: Validating hashes and signatures)."""
    servers = set()
    sender = pdu.get("sender")
    if isinstance(sender, str):
        server = server_name_of(sender)
        if server:
            servers.add(server)
    if room_version.event_id_format == EventIdFormat.V1:
        event_id = pdu.get("event_id")
        if isinstance(event_id, str) and ":" in event_id:
            servers.add(event_id.split(":", 1)[1])
    content = pdu.get("content")
    if pdu.get("type") == "m.room.member" and isinstance(content, dict) and \
            content.get("membership") == "join":
        via = content.get("join_authorised_via_users_server")
        if isinstance(via, str) and room_version.restricted_join:
            server = server_name_of(via)
            if server:
                servers.add(server)
    return servers


async def check_pdu(pdu: Any, room_version: RoomVersion, keys: VerifyKeys) -> Event:
    """The PDU as an Event if it passes format, size, signature and hash checks (redacted
    when only its hash fails), else PduError."""
    if not isinstance(pdu, dict):
        raise PduError("a PDU must be a JSON object")
    try:
        size = len(canonical_json.encode({k: v for k, v in pdu.items() if k != "unsigned"}))
    except (TypeError, ValueError, canonical_json.InvalidCanonicalJson) as e:
        raise PduError(f"not canonical JSON: {e}") from None
    if size > MAX_PDU_BYTES:
        raise PduError(f"PDU is {size} bytes, more than {MAX_PDU_BYTES}")
    if room_version.strict_canonical_json:
        try:
            canonical_json.check_strict({k: v for k, v in pdu.items() if k != "unsigned"})
        except canonical_json.InvalidCanonicalJson as e:
            raise PduError(str(e)) from None
    pdu = {k: v for k, v in pdu.items() if k != "unsigned"}
    signatures = pdu.get("signatures")
    if not isinstance(signatures, dict):
        raise PduError("the PDU has no signatures")
    ts = pdu.get("origin_server_ts")
    minimum = ts if room_version.enforce_key_validity and isinstance(ts, int) else 0
    for server in signing_servers(pdu, room_version):
        by_key = signatures.get(server)
        if not isinstance(by_key, dict) or not by_key:
            raise PduError(f"the PDU is not signed by {server}")
        keys_of = await keys.verify_keys(server, [k for k in by_key if isinstance(k, str)],
                                         minimum_valid_until_ts=minimum)
        if not any(verify_event_signature(pdu, server, key_id, key, room_version)
                   for key_id, key in keys_of.items()):
            raise PduError(f"no valid signature by {server}")
    if not check_content_hash(pdu):
        # Spec: the signature covers the redacted event, so a hash mismatch means the content
        # was changed in transit; the event is kept, redacted.
        pdu = redact(pdu, room_version)
    try:
        return Event.from_pdu(pdu, room_version)
    except MalformedEvent as e:
        raise PduError(f"malformed PDU: {e}") from None
