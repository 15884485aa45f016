"""Login, logout and refresh (spec 1.3)."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.client.register import session_json
from trioserver.api.http import authenticate, bearer_token, client_ip, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.accounts import LoginRequest
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("login", __name__)
    accounts = services.accounts
    sessions = services.sessions
    server_name = services.config.server_name

    @bp.route("/_matrix/client/v3/login", methods=["GET"])
    async def login_flows() -> Response:
        """GET /_matrix/client/v3/login (spec: getLoginFlows)."""
        flows: list[dict[str, object]] = [
            {"type": "m.login.password"},
            # Tokens come from POST /v1/login/get_token on an already signed-in device.
            {"type": "m.login.token", "get_login_token": True},
        ]
        if services.appservices:
            flows.append({"type": "m.login.application_service"})
        return reply({"flows": flows})

    @bp.route("/_matrix/client/v3/login", methods=["POST"])
    async def login() -> Response:
        """POST /_matrix/client/v3/login (spec: login)."""
        body = await json_body()
        login_type = body.req_str("type", max_len=255)
        identifier = body.opt_dict("identifier")
        user: str | None
        if identifier is not None:
            if identifier.get("type") != "m.id.user":
                raise MatrixError(400, Codes.UNKNOWN, "Unsupported identifier type")
            raw_user = identifier.get("user")
            if not isinstance(raw_user, str):
                raise MatrixError(400, Codes.BAD_JSON, "identifier.user must be a string")
            user = raw_user
        else:
            user = body.opt_str("user", max_len=512)
        req = LoginRequest(
            login_type=login_type,
            user=user,
            password=body.opt_str("password", max_len=4096),
            device_id=body.opt_str("device_id", max_len=255),
            initial_device_display_name=body.opt_str("initial_device_display_name", max_len=512),
            refresh_token=body.opt_bool("refresh_token"),
            token=body.opt_str("token", max_len=512),
        )
        if login_type == "m.login.application_service":
            # The as_token is the credential (spec: Application Service API, "Server admin
            # style permissions"); no password, no per-address login limit.
            appservice = services.appservices.by_token(bearer_token())
            if appservice is None:
                raise MatrixError(401, Codes.UNKNOWN_TOKEN, "Unrecognised access token")
            result = await accounts.login_appservice_user(appservice, req)
        else:
            result = await accounts.login(req, client_ip=client_ip())
        return reply(session_json(result, server_name))

    @bp.route("/_matrix/client/v3/logout", methods=["POST"])
    async def logout() -> Response:
        """POST /_matrix/client/v3/logout (spec: logout): deletes the device and its tokens."""
        requester = await authenticate(sessions, allow_guest=True, allow_expired=True)
        await accounts.logout(requester)
        return reply({})

    @bp.route("/_matrix/client/v3/logout/all", methods=["POST"])
    async def logout_all() -> Response:
        """POST /_matrix/client/v3/logout/all (spec: logout_all)."""
        requester = await authenticate(sessions, allow_guest=True, allow_expired=True)
        await accounts.logout_all(requester)
        return reply({})

    @bp.route("/_matrix/client/v3/refresh", methods=["POST"])
    async def refresh() -> Response:
        """POST /_matrix/client/v3/refresh (spec: refresh)."""
        body = await json_body()
        minted = await sessions.refresh(body.req_str("refresh_token", max_len=512))
        out: dict[str, object] = {"access_token": minted.access_token}
        if minted.refresh_token is not None:
            out["refresh_token"] = minted.refresh_token
        if minted.expires_in_ms is not None:
            out["expires_in_ms"] = minted.expires_in_ms
        return reply(out)

    return bp
