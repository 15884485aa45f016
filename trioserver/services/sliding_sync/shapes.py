"""The two wire shapes of a sliding sync response.

The engine produces one internal shape; `to_v4` gives MSC4186's final `/v4/sync` response and
`to_unstable` the shape current clients (matrix-rust-sdk, Element X) read from the unstable
endpoint, as Synapse serves it: `ops` in lists, `invite_state`, `unstable_expanded_timeline`,
notification counts in every room, and no `lists`/`membership` or state stubs in rooms.
"""

from __future__ import annotations

import re
from typing import Any

_MSC_PREFIX = re.compile(r"org\.matrix\.msc\d+\.")


def extension_keys(requested: Any) -> dict[str, str]:
    """Extension name -> the key the client used for it (`to_device` or a prefixed alias such
    as `org.matrix.msc4538.to_device`), so results come back under the client's own key."""
    if not isinstance(requested, dict):
        return {}
    return {_MSC_PREFIX.sub("", k, count=1): k for k in requested if isinstance(k, str)}


def to_v4(body: dict[str, Any], keys: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"pos": body["pos"]}
    if body["lists"]:
        out["lists"] = {name: {"count": lst["count"]} for name, lst in body["lists"].items()}
    rooms = {}
    for room_id, room in body["rooms"].items():
        r = dict(room)
        r.pop("unread", None)
        rooms[room_id] = r
    if rooms:
        out["rooms"] = rooms
    if body["extensions"]:
        out["extensions"] = {(keys or {}).get(k, k): v for k, v in body["extensions"].items()}
    return out


def to_unstable(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"pos": body["pos"], "lists": body["lists"]}
    rooms = {}
    for room_id, room in body["rooms"].items():
        r = dict(room)
        r.pop("lists", None)
        r.pop("membership", None)
        if "stripped_state" in r:
            r["invite_state"] = r.pop("stripped_state")
        if r.pop("expanded_timeline", False):
            r["unstable_expanded_timeline"] = True
        if "required_state" in r:
            # No state stubs in this shape: a removed state key is simply not listed.
            r["required_state"] = [e for e in r["required_state"] if "content" in e]
        for key in ("name", "avatar"):
            if key in r and r[key] is None:
                del r[key]
        # Always present in this shape (Synapse sends them for invites and left rooms too).
        unread = r.pop("unread", None) or {}
        r["notification_count"] = unread.get("notification_count", 0)
        r["highlight_count"] = unread.get("highlight_count", 0)
        rooms[room_id] = r
    out["rooms"] = rooms
    out["extensions"] = body["extensions"]
    return out
