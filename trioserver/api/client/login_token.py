"""Login tokens for signing in another device (spec: login_token.yaml, v1.7)."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("login_token", __name__)
    accounts = services.accounts
    sessions = services.sessions

    @bp.route("/_matrix/client/v1/login/get_token", methods=["POST"])
    async def get_login_token() -> Response:
        """POST /_matrix/client/v1/login/get_token (spec: generateLoginToken; UIA).

        As in Synapse, a password re-authentication is required, unless this device did one in
        the last five minutes.
        """
        requester = await authenticate(sessions)
        tokens = accounts.login_tokens
        assert tokens is not None
        body = await json_body(optional=True)
        if not tokens.is_fresh(requester.user_id, requester.device_id):
            await accounts.require_password_uia(
                requester, body.opt_dict("auth"), method="POST", path=request.path
            )
            tokens.mark_fresh(requester.user_id, requester.device_id)
        minted = tokens.mint(requester.user_id)
        return reply({"login_token": minted.token, "expires_in_ms": minted.expires_in_ms})

    return bp
