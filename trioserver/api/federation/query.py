"""Federation queries about our users and aliases (Server-Server API "Querying for
information"), and our public room directory ("Public Room Directory")."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import json_body, reply
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.identifiers import split_user_id
from trioserver.services.container import Services
from trioserver.services.rooms.directory import network_selection


def _required_arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{name}'")
    return value


def _limit(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw.isdigit() and len(raw) < 10:
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    raise MatrixError(400, Codes.INVALID_PARAM, "limit must be a non-negative integer")


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_query", __name__)
    ours = services.config.server_name

    @bp.route("/_matrix/federation/v1/query/profile", methods=["GET"])
    async def query_profile() -> Response:
        """GET /_matrix/federation/v1/query/profile (spec: queryProfile)."""
        await authenticate_origin(services)
        user_id = _required_arg("user_id")
        parts = split_user_id(user_id)
        if parts is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
        if parts[1] != ours:
            raise MatrixError(400, Codes.INVALID_PARAM, "User is not hosted on this server")
        field = request.args.get("field")
        profile = await services.profiles.get(user_id)
        if field is None:
            return reply(profile)
        if field not in profile:
            raise not_found("Profile field not found")
        return reply({field: profile[field]})

    @bp.route("/_matrix/federation/v1/query/directory", methods=["GET"])
    async def query_directory() -> Response:
        """GET /_matrix/federation/v1/query/directory (spec: queryRoomDirectory)."""
        await authenticate_origin(services)
        alias = _required_arg("room_alias")
        room_id = await services.rooms.resolve_alias(alias)  # 404 for aliases not ours
        others = sorted(await services.room_servers.of(room_id) - {ours})
        return reply({"room_id": room_id, "servers": [ours, *others]})

    @bp.route("/_matrix/federation/v1/publicRooms", methods=["GET"])
    async def public_rooms_get() -> Response:
        """GET /_matrix/federation/v1/publicRooms (spec: getPublicRooms)."""
        await authenticate_origin(services)
        network, all_networks = network_selection(
            request.args.get("third_party_instance_id"),
            request.args.get("include_all_networks") == "true")
        return reply(await services.directory.public_rooms(
            _limit(request.args.get("limit")), request.args.get("since"), None,
            network=network, all_networks=all_networks))

    @bp.route("/_matrix/federation/v1/publicRooms", methods=["POST"])
    async def public_rooms_post() -> Response:
        """POST /_matrix/federation/v1/publicRooms (spec: queryPublicRooms)."""
        await authenticate_origin(services)
        body = await json_body(optional=True)
        flt = body.opt_dict("filter") or {}
        term = flt.get("generic_search_term")
        if term is not None and not isinstance(term, str):
            raise MatrixError(400, Codes.BAD_JSON, "generic_search_term must be a string")
        network, all_networks = network_selection(body.opt_str("third_party_instance_id"),
                                                  body.opt_bool("include_all_networks"))
        return reply(await services.directory.public_rooms(
            _limit(body.raw.get("limit")), body.opt_str("since"), term,
            network=network, all_networks=all_networks))

    return bp
