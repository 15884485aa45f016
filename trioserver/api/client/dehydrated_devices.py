"""Dehydrated devices (MSC3814) under the unstable prefix org.matrix.msc3814.v1.

Device ids of dehydrated devices are unpadded base64 Curve25519 keys and may contain '/', so
the events endpoint uses the `path` converter.
"""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError, bad_json
from trioserver.services.container import Services

PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("dehydrated_devices", __name__)
    dehydrated = services.dehydrated_devices
    sessions = services.sessions

    @bp.route(PREFIX, methods=["PUT"])
    async def put_device() -> Response:
        requester = await authenticate(sessions)
        body = await json_body()
        device_id = body.req_str("device_id", max_len=255)
        if "device_data" not in body or body.raw["device_data"] is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'device_data'")
        device_data = body.raw["device_data"]
        if not isinstance(device_data, dict):
            raise bad_json("'device_data' must be an object")
        display_name = body.opt_str("initial_device_display_name")
        created = await dehydrated.put(
            requester, device_id, device_data, display_name, body.raw.get("device_keys"),
            body.raw.get("one_time_keys"), body.raw.get("fallback_keys"))
        return reply({"device_id": created})

    @bp.route(PREFIX, methods=["GET"])
    async def get_device() -> Response:
        requester = await authenticate(sessions)
        row = await dehydrated.get(requester)
        return reply({"device_id": row.device_id, "device_data": row.device_data})

    @bp.route(PREFIX, methods=["DELETE"])
    async def delete_device() -> Response:
        requester = await authenticate(sessions)
        return reply({"device_id": await dehydrated.delete(requester)})

    @bp.route(f"{PREFIX}/<path:device_id>/events", methods=["POST"])
    async def device_events(device_id: str) -> Response:
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        batch = await dehydrated.events(requester, device_id, body.opt_str("next_batch"))
        return reply({"events": batch.events, "next_batch": batch.next_batch})

    return bp
