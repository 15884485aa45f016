"""Registration (spec 1.2): POST /register, /register/available, registration token validity."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import bearer_token, client_ip, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.accounts import RegisterRequest, SessionResult
from trioserver.services.container import Services


def session_json(result: SessionResult, server_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": result.user_id, "home_server": server_name}
    if result.tokens is not None:
        body["access_token"] = result.tokens.access_token
        body["device_id"] = result.device_id
        if result.tokens.refresh_token is not None:
            body["refresh_token"] = result.tokens.refresh_token
        if result.tokens.expires_in_ms is not None:
            body["expires_in_ms"] = result.tokens.expires_in_ms
    return body


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("register", __name__)
    accounts = services.accounts
    server_name = services.config.server_name

    @bp.route("/_matrix/client/v3/register", methods=["POST"])
    async def register() -> Response:
        """POST /_matrix/client/v3/register (spec: register; UIA)."""
        kind = request.args.get("kind", "user")
        body = await json_body()
        if kind == "guest":
            name = body.opt_str("initial_device_display_name", max_len=512)
            result = await accounts.register_guest(name, client_ip())
            return reply(session_json(result, server_name))
        if kind != "user":
            raise MatrixError(400, Codes.INVALID_PARAM, "kind must be 'user' or 'guest'")
        req = RegisterRequest(
            # Length is judged by the user-ID grammar (M_INVALID_USERNAME), not as bad JSON.
            username=body.opt_str("username", max_len=4096),
            password=body.opt_str("password"),
            device_id=body.opt_str("device_id", max_len=255),
            initial_device_display_name=body.opt_str("initial_device_display_name", max_len=512),
            inhibit_login=body.opt_bool("inhibit_login"),
            refresh_token=body.opt_bool("refresh_token"),
            auth=body.opt_dict("auth"),
        )
        if body.opt_str("type") == "m.login.application_service":
            # Application Service API, "Server admin style permissions": the as_token is the
            # only credential; the user need not exist yet (it is being created).
            appservice = services.appservices.by_token(bearer_token())
            if appservice is None:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unrecognised access token")
            result = await accounts.register_appservice_user(appservice, req)
            return reply(session_json(result, server_name))
        result = await accounts.register(req, path=request.path, client_ip=client_ip())
        return reply(session_json(result, server_name))

    @bp.route("/_matrix/client/v3/register/available", methods=["GET"])
    async def available() -> Response:
        """GET /_matrix/client/v3/register/available (spec: checkUsernameAvailability)."""
        username = request.args.get("username")
        if username is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'username'")
        await accounts.check_username_available(username)
        return reply({"available": True})

    @bp.route("/_matrix/client/v1/register/m.login.registration_token/validity", methods=["GET"])
    async def token_validity() -> Response:
        """GET /_matrix/client/v1/register/m.login.registration_token/validity (MSC3231)."""
        token = request.args.get("token")
        if token is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'token'")
        if ["m.login.registration_token"] not in await accounts.registration_flows():
            raise MatrixError(403, Codes.FORBIDDEN, "Registration tokens are not in use")
        return reply({"valid": await accounts.check_registration_token(token, client_ip())})

    return bp
