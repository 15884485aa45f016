"""Third-party network lookups (spec: Client-Server API, "Third-party Networks"), answered by
the application services that bridge each protocol (see services/appservice/thirdparty.py).

An empty lookup is 404 M_NOT_FOUND, as the spec's responses say (Synapse answers 200 []).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, reply
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.services.appservice.thirdparty import ThirdPartyLookups, query_fields
from trioserver.services.container import Services


def _found(results: list[dict[str, Any]], what: str) -> Response:
    if not results:
        raise not_found(f"No {what} found")
    return reply(results)


def _required_arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{name}' parameter")
    return value


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("thirdparty", __name__)
    sessions = services.sessions
    lookups = ThirdPartyLookups(services.appservices)

    def known(protocol: str) -> str:
        if not lookups.knows_protocol(protocol):
            raise not_found("Unknown protocol")
        return protocol

    @bp.route("/_matrix/client/v3/thirdparty/protocols", methods=["GET"])
    async def protocols() -> Response:
        """GET /_matrix/client/v3/thirdparty/protocols (spec: getProtocols)."""
        await authenticate(sessions, allow_guest=True)
        return reply(await lookups.protocols())

    @bp.route("/_matrix/client/v3/thirdparty/protocol/<protocol>", methods=["GET"])
    async def protocol_metadata(protocol: str) -> Response:
        """GET /_matrix/client/v3/thirdparty/protocol/{protocol} (spec: getProtocolMetadata)."""
        await authenticate(sessions, allow_guest=True)
        found = await lookups.protocols(only=known(protocol))
        if protocol not in found:  # every appservice of the protocol failed to describe it
            raise not_found("Unknown protocol")
        return reply(found[protocol])

    @bp.route("/_matrix/client/v3/thirdparty/location/<protocol>", methods=["GET"])
    async def location(protocol: str) -> Response:
        """GET /_matrix/client/v3/thirdparty/location/{protocol} (spec: queryLocationByProtocol)."""
        await authenticate(sessions, allow_guest=True)
        results = await lookups.lookup("location", known(protocol),
                                       query_fields(request.args.to_dict(flat=False)))
        return _found(results, "portal rooms")

    @bp.route("/_matrix/client/v3/thirdparty/user/<protocol>", methods=["GET"])
    async def user(protocol: str) -> Response:
        """GET /_matrix/client/v3/thirdparty/user/{protocol} (spec: queryUserByProtocol)."""
        await authenticate(sessions, allow_guest=True)
        results = await lookups.lookup("user", known(protocol),
                                       query_fields(request.args.to_dict(flat=False)))
        return _found(results, "users")

    @bp.route("/_matrix/client/v3/thirdparty/location", methods=["GET"])
    async def location_by_alias() -> Response:
        """GET /_matrix/client/v3/thirdparty/location?alias= (spec: queryLocationByAlias)."""
        await authenticate(sessions, allow_guest=True)
        return _found(await lookups.reverse_lookup("location", _required_arg("alias")),
                      "locations")

    @bp.route("/_matrix/client/v3/thirdparty/user", methods=["GET"])
    async def user_by_id() -> Response:
        """GET /_matrix/client/v3/thirdparty/user?userid= (spec: queryUserByID)."""
        await authenticate(sessions, allow_guest=True)
        return _found(await lookups.reverse_lookup("user", _required_arg("userid")),
                      "third-party users")

    return bp
