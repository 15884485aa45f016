"""GET /_matrix/federation/v1/version (Server-Server API, "Server implementation")."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver import __version__
from trioserver.api.http import reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_version", __name__)

    @bp.route("/_matrix/federation/v1/version", methods=["GET"])
    async def version() -> Response:
        """GET /_matrix/federation/v1/version (spec: getVersion), unauthenticated."""
        if not services.config.federation.enabled:
            raise MatrixError(404, Codes.UNRECOGNIZED, "Federation is disabled on this server")
        return reply({"server": {"name": "trioserver", "version": __version__}})

    return bp
