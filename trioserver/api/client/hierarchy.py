"""Spaces (spec 1.15): GET /rooms/{roomId}/hierarchy, and its federation form."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import authenticate, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be true or false")
    return raw == "true"


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.lstrip("-").isdigit() or len(raw) > 9:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be an integer")
    return int(raw)


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("hierarchy", __name__)
    hierarchy = services.hierarchy

    @bp.route("/_matrix/client/v1/rooms/<room_id>/hierarchy", methods=["GET"])
    async def client_hierarchy(room_id: str) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy (spec: getSpaceHierarchy)."""
        requester = await authenticate(services.sessions, allow_guest=True)
        return reply(await hierarchy.for_client(
            requester.user_id, room_id, suggested_only=_bool_arg("suggested_only"),
            limit=_int_arg("limit"), max_depth=_int_arg("max_depth"),
            from_token=request.args.get("from")))

    @bp.route("/_matrix/federation/v1/hierarchy/<room_id>", methods=["GET"])
    async def federation_hierarchy(room_id: str) -> Response:
        """GET /_matrix/federation/v1/hierarchy/{roomId} (spec: getSpaceHierarchy, SS API)."""
        origin = await authenticate_origin(services)
        return reply(await hierarchy.for_server(origin, room_id, _bool_arg("suggested_only")))

    return bp
