"""Sync and filters (spec 1.5, 1.6): GET /sync, POST/GET /user/{userId}/filter."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.sync.engine import SyncRequest


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("sync", __name__)
    sessions = services.sessions
    engine = services.sync
    filters = services.filters

    @bp.route("/_matrix/client/v3/sync", methods=["GET"])
    async def sync() -> Response:
        """GET /_matrix/client/v3/sync (spec: sync). A disconnecting client cancels the wait."""
        requester = await authenticate(sessions, allow_guest=True)
        timeout_raw = request.args.get("timeout", "0")
        if not timeout_raw.isdigit():
            raise MatrixError(400, Codes.INVALID_PARAM, "timeout must be a whole number of ms")
        full_state = request.args.get("full_state", "false")
        if full_state not in ("true", "false"):
            raise MatrixError(400, Codes.INVALID_PARAM, "full_state must be true or false")
        set_presence = request.args.get("set_presence")
        if set_presence not in (None, "online", "offline", "unavailable"):
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "set_presence must be online, offline or unavailable")
        with services.presence.syncing(requester.user_id, set_presence):
            body = await engine.sync(SyncRequest(
                user_id=requester.user_id,
                device_id=requester.device_id,
                since=request.args.get("since"),
                timeout_ms=int(timeout_raw[:9]),
                full_state=full_state == "true",
                filter_param=request.args.get("filter"),
                set_presence=set_presence,
            ))
        return reply(body)

    @bp.route("/_matrix/client/v3/user/<user_id>/filter", methods=["POST"])
    async def create_filter(user_id: str) -> Response:
        """POST /_matrix/client/v3/user/{userId}/filter (spec: defineFilter)."""
        requester = await authenticate(sessions, allow_guest=True)
        body = await json_body()
        return reply({"filter_id": await filters.create(requester.user_id, user_id, body.raw)})

    @bp.route("/_matrix/client/v3/user/<user_id>/filter/<filter_id>", methods=["GET"])
    async def get_filter(user_id: str, filter_id: str) -> Response:
        """GET /_matrix/client/v3/user/{userId}/filter/{filterId} (spec: getFilter)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply(await filters.get_raw(requester.user_id, user_id, filter_id))

    return bp
