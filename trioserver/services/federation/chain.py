"""Checking a batch of events another server sent us as state or auth chain.

Each must pass the PDU checks (signatures, hashes) and then the auth rules against its own
auth events, in topological (depth) order, so an event is only ever checked against events
already accepted. Those that fail are left out: the caller treats them as rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from trioserver.services.events import auth_rules
from trioserver.services.events.auth_events import check_auth_events
from trioserver.services.events.auth_numbers import AuthError
from trioserver.services.events.event import Event
from trioserver.services.events.hashing import compute_event_id
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion
from trioserver.services.federation.pdus import PduError, VerifyKeys, check_pdu

log = logging.getLogger(__name__)


async def accept_chain(pdus: Iterable[Any], version: RoomVersion, keys: VerifyKeys,
                       known: dict[str, Event] | None = None) -> dict[str, Event]:
    """The events of `pdus` that pass the PDU checks and auth against their auth events
    (which may also be among `known`, events we already hold)."""
    parsed: dict[str, Event] = {}
    pool = dict(known or {})
    accepted: dict[str, Event] = {}
    for pdu in pdus:
        event_id = event_id_of(pdu, version)
        if event_id in pool:
            accepted[event_id] = pool[event_id]  # ours already: checked when it arrived
            continue
        try:
            event = await check_pdu(pdu, version, keys)
        except PduError as e:
            log.info("state/auth event refused: %s", e)
            continue
        parsed[event.event_id] = event
    create = next((e for e in [*parsed.values(), *pool.values()]
                   if e.type == "m.room.create"), None)
    for event in sorted(parsed.values(), key=lambda e: (e.depth, e.event_id)):
        try:
            auth = [accepted.get(a) or pool[a] for a in event.auth_events
                    if a in accepted or a in pool]
            auth_state = check_auth_events(event, auth, create_event=create)
            auth_rules.check_event(event, auth_state,
                                   create if event.type != "m.room.create" else None)
        except (AuthError, ValueError) as e:
            log.info("state/auth event %s rejected: %s", event.event_id, e)
            continue
        accepted[event.event_id] = event
    return accepted


def event_id_of(pdu: Any, version: RoomVersion) -> str:
    """The ID of a PDU as it arrived (before any checks); "" if it has none."""
    if not isinstance(pdu, dict):
        return ""
    if version.event_id_format is EventIdFormat.V1:
        return str(pdu.get("event_id", ""))
    try:
        return compute_event_id(pdu, version)
    except (KeyError, TypeError, ValueError):
        return ""
