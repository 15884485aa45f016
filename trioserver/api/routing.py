"""Routing on the raw request path, so a percent-encoded '/' stays inside its path segment.

The ASGI `path` is percent-decoded, so an identifier containing '/' (a base64 session or
dehydrated-device ID, a room v3 event ID, a state key) would split into two segments and
fall off its route. Routing instead uses the raw path with each segment's own '%2F' turned
into ENCODED_SLASH, a Unicode noncharacter; `restore_slashes` turns it back in view arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from quart.routing import QuartMap
from quart.wrappers.base import BaseRequestWebsocket
from werkzeug.routing import MapAdapter

ENCODED_SLASH = "\U0010ffff"


def routing_path(raw_path: bytes, path: str) -> str:
    """The path to route on: `path`, except that a '/' percent-encoded in `raw_path` becomes
    ENCODED_SLASH. A path that already contains the noncharacter is routed as it is."""
    if b"%2f" not in raw_path.lower() or ENCODED_SLASH in path:
        return path
    segments = raw_path.decode("ascii", "replace").split("/")
    return "/".join(unquote(s).replace("/", ENCODED_SLASH) for s in segments)


def restore_slashes(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """url_value_preprocessor: ENCODED_SLASH back to '/' in every string view argument."""
    if not values:
        return
    for key, value in values.items():
        if isinstance(value, str) and ENCODED_SLASH in value:
            values[key] = value.replace(ENCODED_SLASH, "/")


class RawPathMap(QuartMap):
    """A QuartMap whose adapters match the routing path instead of the decoded one."""

    def bind_to_request(self, request: BaseRequestWebsocket, subdomain: str | None,
                        server_name: str | None) -> MapAdapter:
        adapter = super().bind_to_request(request, subdomain, server_name)
        raw = request.scope.get("raw_path")
        if isinstance(raw, bytes):
            adapter.path_info = routing_path(raw, request.path)
        return adapter
