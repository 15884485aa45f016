"""Account management (spec 1.2): whoami, password change, deactivation."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("account", __name__)
    accounts = services.accounts
    sessions = services.sessions

    @bp.route("/_matrix/client/v3/account/whoami", methods=["GET"])
    async def whoami() -> Response:
        """GET /_matrix/client/v3/account/whoami (spec: getTokenOwner)."""
        requester = await authenticate(sessions, allow_guest=True)
        out: dict[str, Any] = {"user_id": requester.user_id}
        if requester.device_id:  # an application service may act without a device
            out["device_id"] = requester.device_id
        if requester.is_guest:
            out["is_guest"] = True
        return reply(out)

    @bp.route("/_matrix/client/v3/account/password", methods=["POST"])
    async def change_password() -> Response:
        """POST /_matrix/client/v3/account/password (spec: changePassword; UIA)."""
        requester = await authenticate(sessions)
        body = await json_body()
        new_password = body.req_str("new_password", max_len=4096)
        logout_devices = body.opt_bool("logout_devices", default=True)
        accounts.check_password_strength(new_password)
        await accounts.require_password_uia(
            requester, body.opt_dict("auth"), method="POST", path=request.path
        )
        await accounts.change_password(requester, new_password, logout_devices=logout_devices)
        return reply({})

    @bp.route("/_matrix/client/v3/account/deactivate", methods=["POST"])
    async def deactivate() -> Response:
        """POST /_matrix/client/v3/account/deactivate (spec: deactivateAccount; UIA)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        body.opt_str("id_server")
        erase = body.opt_bool("erase") or False
        await accounts.require_password_uia(
            requester, body.opt_dict("auth"), method="POST", path=request.path
        )
        await accounts.deactivate(requester, erase=erase)
        # We hold no third-party identifiers, so there is nothing to unbind.
        return reply({"id_server_unbind_result": "success"})

    return bp
