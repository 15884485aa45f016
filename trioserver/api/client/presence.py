"""Presence (spec "Presence")."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services

P = "/_matrix/client/v3/presence/<path:user_id>/status"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("presence", __name__)
    presence = services.presence
    sessions = services.sessions

    @bp.route(P, methods=["GET"])
    async def get_presence(user_id: str) -> Response:
        """GET /_matrix/client/v3/presence/{userId}/status (spec: getPresence)."""
        requester = await authenticate(sessions)
        return reply(await presence.get_status(requester, user_id))

    @bp.route(P, methods=["PUT"])
    async def set_presence(user_id: str) -> Response:
        """PUT /_matrix/client/v3/presence/{userId}/status (spec: setPresence)."""
        requester = await authenticate(sessions)
        body = await json_body()
        state = body.req_str("presence", max_len=32)
        status_msg = body.opt_str("status_msg")
        await presence.set_status(requester, user_id, state, status_msg)
        return reply({})

    return bp
