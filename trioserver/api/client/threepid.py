"""Third-party identifiers (spec: administrative_contact.yaml and the requestToken endpoints)
and /.well-known/matrix/support.

This server sends neither email nor SMS, so no address or phone number can be validated: every
requestToken and bind answers 403 M_THREEPID_DENIED, and accounts list no identifiers.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from trioserver.api.http import authenticate, reply
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.services.container import Services

_REQUEST_TOKEN_PATHS = (
    "/_matrix/client/v3/register/email/requestToken",
    "/_matrix/client/v3/register/msisdn/requestToken",
    "/_matrix/client/v3/account/password/email/requestToken",
    "/_matrix/client/v3/account/password/msisdn/requestToken",
    "/_matrix/client/v3/account/3pid/email/requestToken",
    "/_matrix/client/v3/account/3pid/msisdn/requestToken",
)
_CHANGE_PATHS = (
    "/_matrix/client/v3/account/3pid",
    "/_matrix/client/v3/account/3pid/add",
    "/_matrix/client/v3/account/3pid/bind",
    "/_matrix/client/v3/account/3pid/delete",
    "/_matrix/client/v3/account/3pid/unbind",
)


def _denied() -> MatrixError:
    return MatrixError(403, Codes.THREEPID_DENIED,
                       "Third-party identifiers are not supported: this server sends no email"
                       " or SMS")


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("threepid", __name__)
    sessions = services.sessions
    well_known = services.config.well_known

    @bp.route("/_matrix/client/v3/account/3pid", methods=["GET"])
    async def list_threepids() -> Response:
        """GET /_matrix/client/v3/account/3pid (spec: getAccount3PIDs): always none here."""
        await authenticate(sessions)
        return reply({"threepids": []})

    async def request_token() -> Response:
        """POST .../{email,msisdn}/requestToken (spec: the requestToken endpoints): refused."""
        raise _denied()

    for i, path in enumerate(_REQUEST_TOKEN_PATHS):
        bp.add_url_rule(path, f"request_token_{i}", request_token, methods=["POST"])

    async def change_threepid() -> Response:
        """POST /_matrix/client/v3/account/3pid[/add|/bind|/delete|/unbind]: refused."""
        await authenticate(sessions)
        raise _denied()

    for i, path in enumerate(_CHANGE_PATHS):
        bp.add_url_rule(path, f"change_threepid_{i}", change_threepid, methods=["POST"])

    @bp.route("/.well-known/matrix/support", methods=["GET"])
    async def wellknown_support() -> Response:
        """GET /.well-known/matrix/support (spec: getWellknownSupport); 404 when unset."""
        if not well_known.support_contacts and not well_known.support_page:
            raise not_found("No support information is configured")
        out: dict[str, Any] = {}
        if well_known.support_contacts:
            out["contacts"] = [
                {k: v for k, v in (("role", c.role), ("matrix_id", c.matrix_id),
                                   ("email_address", c.email_address)) if v}
                for c in well_known.support_contacts
            ]
        if well_known.support_page:
            out["support_page"] = well_known.support_page
        return reply(out)

    return bp
