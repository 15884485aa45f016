"""OpenID (spec 1.x OpenID): POST /user/{userId}/openid/request_token, and the federation
side GET /_matrix/federation/v1/openid/userinfo that third parties call."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("openid", __name__)
    tokens = services.openid

    @bp.route("/_matrix/client/v3/user/<user_id>/openid/request_token", methods=["POST"])
    async def request_token(user_id: str) -> Response:
        """POST /_matrix/client/v3/user/{userId}/openid/request_token (spec: requestOpenIdToken)."""
        requester = await authenticate(services.sessions)
        await json_body(optional=True)
        if user_id != requester.user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "Cannot request tokens for other users")
        return reply(tokens.issue(requester.user_id))

    @bp.route("/_matrix/federation/v1/openid/userinfo", methods=["GET"])
    async def userinfo() -> Response:
        """GET /_matrix/federation/v1/openid/userinfo (spec: exchangeOpenIdToken). Called by
        third parties, so not X-Matrix authenticated: the token is the credential."""
        return reply({"sub": tokens.user_of(request.args.get("access_token", ""))})

    return bp
