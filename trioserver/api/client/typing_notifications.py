"""Typing notifications (spec "Typing Notifications")."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("typing", __name__)
    typing = services.typing
    sessions = services.sessions

    @bp.route("/_matrix/client/v3/rooms/<room_id>/typing/<path:user_id>", methods=["PUT"])
    async def set_typing(room_id: str, user_id: str) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId} (spec: setTyping)."""
        requester = await authenticate(sessions)
        body = await json_body()
        if body.raw.get("typing") is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'typing'")
        is_typing = body.opt_bool("typing")
        timeout = body.raw.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)):
            raise MatrixError(400, Codes.BAD_JSON, "'timeout' must be an integer")
        await typing.set_typing(requester, room_id, user_id, is_typing, timeout)
        return reply({})

    return bp
