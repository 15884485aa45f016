"""Pushers (spec "Push Notifications": getPushers, postPusher)."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services
from trioserver.services.push.pushers import to_json

P = "/_matrix/client/v3/pushers"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("pushers", __name__)
    pushers = services.pushers
    sessions = services.sessions

    @bp.route(P, methods=["GET"])
    async def get_pushers() -> Response:
        """GET /_matrix/client/v3/pushers (spec: getPushers)."""
        requester = await authenticate(sessions)
        rows = await pushers.list(requester.user_id)
        return reply({"pushers": [to_json(r) for r in rows]})

    @bp.route(P + "/set", methods=["POST"])
    async def set_pusher() -> Response:
        """POST /_matrix/client/v3/pushers/set (spec: postPusher)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await pushers.set(requester.user_id, body.raw)
        return reply({})

    return bp
