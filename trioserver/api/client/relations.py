"""Relations and threads (spec 1.10 "Relationships", "Threading")."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.client.room_events import _int_arg
from trioserver.api.http import authenticate, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.rooms.relations import RelationsQuery
from trioserver.services.rooms.service import check_event_id, check_room_id

R = "/_matrix/client/v1/rooms/<room_id>"


def _recurse() -> bool | None:
    raw = request.args.get("recurse")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise MatrixError(400, Codes.INVALID_PARAM, "recurse must be true or false")
    return raw == "true"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("relations", __name__)
    sessions = services.sessions
    relations = services.relations

    @bp.route(R + "/relations/<event_id>", methods=["GET"])
    @bp.route(R + "/relations/<event_id>/<rel_type>", methods=["GET"])
    @bp.route(R + "/relations/<event_id>/<rel_type>/<event_type>", methods=["GET"])
    async def get_relations(room_id: str, event_id: str, rel_type: str | None = None,
                            event_type: str | None = None) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
        (spec: getRelatingEvents, getRelatingEventsWithRelType[AndEventType])."""
        requester = await authenticate(sessions, allow_guest=True)
        direction = request.args.get("dir", "b")
        if direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        query = RelationsQuery(
            rel_type=rel_type, event_type=event_type, from_token=request.args.get("from"),
            to_token=request.args.get("to"), limit=_int_arg("limit", 50, 1),
            backwards=direction == "b", recurse=_recurse())
        return reply(await relations.relations(requester.user_id, check_room_id(room_id),
                                               check_event_id(event_id), query))

    @bp.route(R + "/threads", methods=["GET"])
    async def get_threads(room_id: str) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/threads (spec: getThreadRoots)."""
        requester = await authenticate(sessions, allow_guest=True)
        include = request.args.get("include", "all")
        if include not in ("all", "participated"):
            raise MatrixError(400, Codes.INVALID_PARAM, "include must be all or participated")
        return reply(await relations.threads(
            requester.user_id, check_room_id(room_id), participated=include == "participated",
            from_token=request.args.get("from"), limit=_int_arg("limit", 50, 1)))

    return bp
