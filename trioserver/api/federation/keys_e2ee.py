"""Federation endpoints for end-to-end encryption (Server-Server API "End-to-End Encryption"
and "Device Management"): our users' device keys, one-time keys and device lists.

Every handler authenticates the calling server (X-Matrix) before reading anything else.
"""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_keys_e2ee", __name__)
    remote_keys = services.remote_keys

    @bp.route("/_matrix/federation/v1/user/keys/query", methods=["POST"])
    async def keys_query() -> Response:
        """POST /_matrix/federation/v1/user/keys/query (spec: queryUserKeys)."""
        await authenticate_origin(services)
        wanted = (await json_body()).opt_dict("device_keys")
        if wanted is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'device_keys'")
        return reply(await remote_keys.serve_query(wanted))

    @bp.route("/_matrix/federation/v1/user/keys/claim", methods=["POST"])
    async def keys_claim() -> Response:
        """POST /_matrix/federation/v1/user/keys/claim (spec: claimUserKeys)."""
        await authenticate_origin(services)
        wanted = (await json_body()).opt_dict("one_time_keys")
        if wanted is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'one_time_keys'")
        return reply(await remote_keys.serve_claim(wanted))

    @bp.route("/_matrix/federation/v1/user/devices/<user_id>", methods=["GET"])
    async def user_devices(user_id: str) -> Response:
        """GET /_matrix/federation/v1/user/devices/{userId} (spec: getUserDevices)."""
        await authenticate_origin(services)
        return reply(await remote_keys.serve_devices(user_id))

    return bp
