"""Build signed PDUs as another server would, for federation tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from trioserver.services.events import auth_rules
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion
from trioserver.services.events.signing import SigningKey, hash_and_sign_event
from trioserver.services.rooms.cache import RoomView


@dataclass
class RemoteServer:
    name: str
    key: SigningKey = field(default_factory=SigningKey.generate)

    def keys(self) -> dict[str, bytes]:
        return {self.key.key_id: self.key.verify_key_bytes}

    def event(self, version: RoomVersion, *, room_id: str, type: str, sender: str,
              content: dict[str, Any], prev_events: list[str], auth_events: list[str],
              depth: int, state_key: str | None = None, ts: int = 1_700_000_000_000,
              sign: bool = True) -> dict[str, Any]:
        pdu: dict[str, Any] = {"room_id": room_id, "type": type, "sender": sender,
                               "content": content, "prev_events": prev_events,
                               "auth_events": auth_events, "depth": depth,
                               "origin_server_ts": ts}
        if state_key is not None:
            pdu["state_key"] = state_key
        if version.event_id_format is EventIdFormat.V1:
            pdu["event_id"] = f"${secrets.token_hex(8)}:{self.name}"
        if not sign:
            return {**pdu, "hashes": {"sha256": "x"}, "signatures": {}}
        return hash_and_sign_event(pdu, self.name, self.key, version)

    def on_top_of(self, view: RoomView, *, type: str, sender: str, content: dict[str, Any],
                  state_key: str | None = None, **kw: Any) -> dict[str, Any]:
        """An event on the room's current extremities with the auth events its rules pick."""
        wanted = auth_rules.auth_types_for_event(type, state_key, sender, content,
                                                 view.room_version)
        return self.event(view.room_version, room_id=view.room_id, type=type, sender=sender,
                          content=content, state_key=state_key,
                          prev_events=list(view.extremities),
                          auth_events=[view.state[k] for k in wanted if k in view.state],
                          depth=view.depth + 1, **kw)


class FakeKeys:
    """VerifyKeys for check_pdu: the servers' keys, known up front."""

    def __init__(self, *servers: RemoteServer) -> None:
        self._keys = {s.name: s.keys() for s in servers}

    async def verify_keys(self, server_name: str, key_ids: Any, *,
                          minimum_valid_until_ts: int) -> dict[str, bytes]:
        known = self._keys.get(server_name, {})
        return {k: v for k, v in known.items() if k in set(key_ids)}
