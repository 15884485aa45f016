"""Room aliases, the published room directory, summaries and reports (spec 1.12, 1.14, 1.31)."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.services.container import Services
from trioserver.services.rooms.directory import network_selection
from trioserver.services.rooms.service import check_event_id, check_room_id


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("directory", __name__)
    rooms = services.rooms
    directory = services.directory
    sessions = services.sessions
    reader = services.room_reader

    @bp.route("/_matrix/client/v3/directory/room/<alias>", methods=["GET"])
    async def get_alias(alias: str) -> Response:
        """GET /_matrix/client/v3/directory/room/{roomAlias} (spec: getRoomIdByAlias)."""
        room_id, servers = await rooms.lookup_alias(alias)
        return reply({"room_id": room_id, "servers": servers})

    @bp.route("/_matrix/client/v3/directory/room/<alias>", methods=["PUT"])
    async def put_alias(alias: str) -> Response:
        """PUT /_matrix/client/v3/directory/room/{roomAlias} (spec: setRoomAlias)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await rooms.create_alias(requester, alias, check_room_id(body.req_str("room_id")))
        return reply({})

    @bp.route("/_matrix/client/v3/directory/room/<alias>", methods=["DELETE"])
    async def delete_alias(alias: str) -> Response:
        """DELETE /_matrix/client/v3/directory/room/{roomAlias} (spec: deleteRoomAlias)."""
        requester = await authenticate(sessions)
        await rooms.delete_alias(requester, alias)
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/aliases", methods=["GET"])
    async def room_aliases(room_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/aliases (spec: getLocalAliases)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply({"aliases": await rooms.aliases(requester, check_room_id(room_id))})

    @bp.route("/_matrix/client/v3/directory/list/room/<room_id>", methods=["GET"])
    async def get_visibility(room_id: str) -> Response:
        """GET /_matrix/client/v3/directory/list/room/{roomId} (getRoomVisibilityOnDirectory)."""
        return reply({"visibility": await directory.get_visibility(check_room_id(room_id))})

    @bp.route("/_matrix/client/v3/directory/list/room/<room_id>", methods=["PUT"])
    async def set_visibility(room_id: str) -> Response:
        """PUT /_matrix/client/v3/directory/list/room/{roomId} (setRoomVisibilityOnDirectory)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await directory.set_visibility(requester, check_room_id(room_id),
                                       body.opt_str("visibility") or "public")
        return reply({})

    @bp.route("/_matrix/client/v3/publicRooms", methods=["GET"])
    async def public_rooms_get() -> Response:
        """GET /_matrix/client/v3/publicRooms (spec: getPublicRooms)."""
        server = request.args.get("server")
        limit_raw = request.args.get("limit")
        if limit_raw is not None and not limit_raw.isdigit():
            raise MatrixError(400, Codes.INVALID_PARAM, "limit must be an integer")
        limit = int(limit_raw) if limit_raw is not None else None
        # Not in the spec's GET parameters, but Synapse reads them here too.
        network_id = request.args.get("third_party_instance_id")
        include_all = request.args.get("include_all_networks") == "true"
        if server not in (None, services.config.server_name):
            await authenticate(sessions, allow_guest=True)  # no relaying for anonymous callers
            return reply(await services.remote_queries.public_rooms(
                server, limit=limit, since=request.args.get("since"), search=None,
                network=network_id, all_networks=include_all))
        network, all_networks = network_selection(network_id, include_all)
        return reply(await directory.public_rooms(limit, request.args.get("since"), None,
                                                  network=network, all_networks=all_networks))

    @bp.route("/_matrix/client/v3/publicRooms", methods=["POST"])
    async def public_rooms_post() -> Response:
        """POST /_matrix/client/v3/publicRooms (spec: queryPublicRooms)."""
        await authenticate(sessions, allow_guest=True)
        server = request.args.get("server")
        body = await json_body()
        limit = body.raw.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise MatrixError(400, Codes.BAD_JSON, "limit must be an integer")
        flt = body.opt_dict("filter") or {}
        term = flt.get("generic_search_term")
        if term is not None and not isinstance(term, str):
            raise MatrixError(400, Codes.BAD_JSON, "generic_search_term must be a string")
        network_id = body.opt_str("third_party_instance_id")
        include_all = body.opt_bool("include_all_networks") or False
        if server not in (None, services.config.server_name):
            return reply(await services.remote_queries.public_rooms(
                server, limit=limit, since=body.opt_str("since"), search=term,
                network=network_id, all_networks=include_all))
        network, all_networks = network_selection(network_id, include_all)
        return reply(await directory.public_rooms(limit, body.opt_str("since"), term,
                                                  network=network, all_networks=all_networks))

    @bp.route("/_matrix/client/v3/rooms/<room_id>/report/<event_id>", methods=["POST"])
    async def report_event(room_id: str, event_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId} (spec: reportEvent)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        score = body.raw.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int)):
            raise MatrixError(400, Codes.BAD_JSON, "score must be an integer")
        # The reporter must be joined and able to see the event (404 otherwise).
        view = await rooms.view(check_room_id(room_id))
        if await reader.membership(view, requester.user_id) != "join":
            raise not_found("Event not found")
        await reader.get_event(requester.user_id, room_id, check_event_id(event_id))
        await directory.report(requester, room_id, event_id, body.opt_str("reason"), score)
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/report", methods=["POST"])
    async def report_room(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/report (spec: reportRoom)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        await directory.report(requester, check_room_id(room_id), None, body.opt_str("reason"),
                               None)
        return reply({})

    @bp.route("/_matrix/client/v1/room_summary/<room_id_or_alias>", methods=["GET"])
    async def room_summary(room_id_or_alias: str) -> Response:
        """GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (spec: getRoomSummary)."""
        room_id = ((await rooms.lookup_alias(room_id_or_alias))[0]
                   if room_id_or_alias.startswith("#") else check_room_id(room_id_or_alias))
        view = await rooms.view(room_id)
        summary = await directory.summary(view)
        user_id = None
        if request.headers.get("Authorization"):
            user_id = (await authenticate(sessions, allow_guest=True)).user_id
        membership = await reader.membership(view, user_id) if user_id else None
        # Only rooms one could join or peek into (or is in) are described.
        if membership is None and not summary["world_readable"] and summary["join_rule"] not in (
                "public", "knock", "knock_restricted", "restricted"):
            # As for a room that does not exist: its existence is not disclosed.
            raise not_found("Room not found or is not accessible")
        if membership is not None:
            summary["membership"] = membership
        return reply(summary)

    return bp
