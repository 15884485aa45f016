"""End-to-end encryption keys (spec 1.24): upload, query, claim, changes."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.federation.remote_keys import timeout_seconds
from trioserver.services.sync.tokens import parse_sync_token


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("keys", __name__)
    sessions = services.sessions
    keys = services.e2ee
    cross_signing = services.cross_signing

    @bp.route("/_matrix/client/v3/keys/upload", methods=["POST"])
    async def upload() -> Response:
        """POST /_matrix/client/v3/keys/upload (spec: uploadKeys)."""
        requester = await authenticate(sessions)
        body = await json_body()
        counts = await keys.upload(requester, body.raw.get("device_keys"),
                                   body.raw.get("one_time_keys"), body.raw.get("fallback_keys"))
        return reply({"one_time_key_counts": counts})

    @bp.route("/_matrix/client/v3/keys/query", methods=["POST"])
    async def query() -> Response:
        """POST /_matrix/client/v3/keys/query (spec: queryKeys)."""
        requester = await authenticate(sessions)
        body = await json_body()
        wanted = body.opt_dict("device_keys")
        if wanted is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'device_keys'")
        timeout_s = timeout_seconds(body.raw.get("timeout"))
        return reply(await services.remote_keys.query(requester, wanted, timeout_s))

    @bp.route("/_matrix/client/v3/keys/claim", methods=["POST"])
    async def claim() -> Response:
        """POST /_matrix/client/v3/keys/claim (spec: claimKeys)."""
        await authenticate(sessions)
        body = await json_body()
        wanted = body.opt_dict("one_time_keys")
        if wanted is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'one_time_keys'")
        timeout_s = timeout_seconds(body.raw.get("timeout"))
        return reply(await services.remote_keys.claim(wanted, timeout_s))

    @bp.route("/_matrix/client/v3/keys/changes", methods=["GET"])
    async def changes() -> Response:
        """GET /_matrix/client/v3/keys/changes (spec: getKeysChanges)."""
        requester = await authenticate(sessions)
        from_raw, to_raw = request.args.get("from"), request.args.get("to")
        if from_raw is None or to_raw is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "from and to are required")
        start, end = parse_sync_token(from_raw), parse_sync_token(to_raw)
        changed, left = await keys.changes(
            requester.user_id, start.events, end.events, start.get("dl") or 0,
            end.get("dl") or 0)
        return reply({"changed": changed, "left": left})

    @bp.route("/_matrix/client/v3/keys/device_signing/upload", methods=["POST"])
    async def device_signing_upload() -> Response:
        """POST /_matrix/client/v3/keys/device_signing/upload (spec: uploadCrossSigningKeys)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await cross_signing.upload_keys(requester, body.raw, body.opt_dict("auth"),
                                        method="POST", path=request.path)
        return reply({})

    @bp.route("/_matrix/client/v3/keys/signatures/upload", methods=["POST"])
    async def signatures_upload() -> Response:
        """POST /_matrix/client/v3/keys/signatures/upload (spec: uploadCrossSigningSignatures)."""
        requester = await authenticate(sessions)
        body = await json_body()
        return reply(await cross_signing.upload_signatures(requester, body.raw))

    return bp
