"""User directory search (spec "User directory": searchUserDirectory)."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services

DEFAULT_LIMIT = 10


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("user_directory", __name__)
    directory = services.user_directory
    sessions = services.sessions

    @bp.route("/_matrix/client/v3/user_directory/search", methods=["POST"])
    async def search() -> Response:
        """POST /_matrix/client/v3/user_directory/search (spec: searchUserDirectory)."""
        requester = await authenticate(sessions)
        body = await json_body()
        term = body.raw.get("search_term")
        if term is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'search_term'")
        if not isinstance(term, str):
            raise MatrixError(400, Codes.BAD_JSON, "'search_term' must be a string")
        limit = body.raw.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise MatrixError(400, Codes.BAD_JSON, "'limit' must be a non-negative integer")
        return reply(await directory.search(requester.user_id, term, limit))

    return bp
