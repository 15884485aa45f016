"""The redaction algorithm per room version (spec "Redactions" in each room version)."""

from __future__ import annotations

from typing import Any

from trioserver.services.events.room_versions import RedactionRules, RoomVersion

_TOP_LEVEL_OLD = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts",
    "membership",
})
_TOP_LEVEL_V11 = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "auth_events", "origin_server_ts",
})

_PL_KEYS = ("ban", "events", "events_default", "kick", "redact", "state_default", "users",
            "users_default")


def _content_keys(rules: RedactionRules, event_type: str) -> tuple[str, ...] | None:
    """Content keys kept for `event_type`; None means all of them."""
    v11 = rules is RedactionRules.V11
    if event_type == "m.room.member":
        if rules in (RedactionRules.V9, RedactionRules.V11):
            return ("membership", "join_authorised_via_users_server")
        return ("membership",)
    if event_type == "m.room.create":
        return None if v11 else ("creator",)
    if event_type == "m.room.join_rules":
        if rules in (RedactionRules.V8, RedactionRules.V9, RedactionRules.V11):
            return ("join_rule", "allow")
        return ("join_rule",)
    if event_type == "m.room.power_levels":
        return (*_PL_KEYS, "invite") if v11 else _PL_KEYS
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.aliases" and rules is RedactionRules.V1:
        return ("aliases",)
    if event_type == "m.room.redaction" and v11:
        return ("redacts",)
    return ()


def redact(event: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """A copy of `event` (PDU or client JSON) stripped as the room version's algorithm says."""
    rules = room_version.redaction
    keep_top = _TOP_LEVEL_V11 if rules is RedactionRules.V11 else _TOP_LEVEL_OLD
    out = {k: v for k, v in event.items() if k in keep_top}
    content = event.get("content")
    content = content if isinstance(content, dict) else {}
    event_type = event.get("type")
    keys = _content_keys(rules, event_type) if isinstance(event_type, str) else ()
    new_content = dict(content) if keys is None else {k: content[k] for k in keys if k in content}
    if event_type == "m.room.member" and rules is RedactionRules.V11:
        tpi = content.get("third_party_invite")
        if isinstance(tpi, dict) and "signed" in tpi:
            new_content["third_party_invite"] = {"signed": tpi["signed"]}
    out["content"] = new_content
    return out
