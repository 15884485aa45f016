"""Simplified Sliding Sync (MSC4186), in both wire shapes, over one engine.

POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync: the shape matrix-rust-sdk and
Element X send today (pos and timeout in the query string). POST /_matrix/client/v4/sync: the
MSC's final shape.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services
from trioserver.services.sliding_sync.request import parse_unstable, parse_v4
from trioserver.services.sliding_sync.shapes import extension_keys, to_unstable, to_v4

UNSTABLE_FEATURE = "org.matrix.simplified_msc3575"


async def _raw_body() -> dict[str, Any]:
    # An empty body is an empty request: all defaults, no lists.
    return (await json_body(optional=True)).raw


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("sliding_sync", __name__)
    sessions = services.sessions
    engine = services.sliding_sync

    @bp.route(f"/_matrix/client/unstable/{UNSTABLE_FEATURE}/sync", methods=["POST"])
    async def unstable_sync() -> Response:
        """POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (MSC4186, as
        served by Synapse)."""
        requester = await authenticate(sessions)
        body = await _raw_body()
        req = parse_unstable(body, request.args, requester.user_id)
        with services.presence.syncing(requester.user_id, req.set_presence):
            result = await engine.sync(requester.user_id, requester.device_id, req,
                                       unread_counts=True)
        return reply(to_unstable(result))

    @bp.route("/_matrix/client/v4/sync", methods=["POST"])
    async def v4_sync() -> Response:
        """POST /_matrix/client/v4/sync (MSC4186)."""
        requester = await authenticate(sessions)
        body = await _raw_body()
        req = parse_v4(body, requester.user_id)
        with services.presence.syncing(requester.user_id, req.set_presence):
            result = await engine.sync(requester.user_id, requester.device_id, req,
                                       unread_counts=False)
        return reply(to_v4(result, extension_keys(body.get("extensions"))))

    return bp
