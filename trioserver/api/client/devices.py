"""Device management (spec 1.23)."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import is_valid_device_id
from trioserver.services.container import Services
from trioserver.services.devices import device_json


def _device_id(raw: str) -> str:
    if not is_valid_device_id(raw):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device ID")
    return raw


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("devices", __name__)
    devices = services.devices
    sessions = services.sessions

    @bp.route("/_matrix/client/v3/devices", methods=["GET"])
    async def list_devices() -> Response:
        """GET /_matrix/client/v3/devices (spec: getDevices)."""
        requester = await authenticate(sessions, allow_guest=True)
        rows = await devices.list_all(requester)
        return reply({"devices": [device_json(r) for r in rows]})

    @bp.route("/_matrix/client/v3/devices/<device_id>", methods=["GET"])
    async def get_device(device_id: str) -> Response:
        """GET /_matrix/client/v3/devices/{deviceId} (spec: getDevice)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply(device_json(await devices.get(requester, _device_id(device_id))))

    @bp.route("/_matrix/client/v3/devices/<device_id>", methods=["PUT"])
    async def update_device(device_id: str) -> Response:
        """PUT /_matrix/client/v3/devices/{deviceId} (spec: updateDevice)."""
        requester = await authenticate(sessions, allow_guest=True)
        body = await json_body()
        name = body.opt_str("display_name", max_len=512)
        created = await devices.rename(requester, _device_id(device_id), name)
        return reply({}, status=201 if created else 200)

    @bp.route("/_matrix/client/v3/devices/<device_id>", methods=["DELETE"])
    async def delete_device(device_id: str) -> Response:
        """DELETE /_matrix/client/v3/devices/{deviceId} (spec: deleteDevice; UIA)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        await devices.delete(
            requester, [_device_id(device_id)], body.opt_dict("auth"),
            method="DELETE", path=request.path,
        )
        return reply({})

    @bp.route("/_matrix/client/v3/delete_devices", methods=["POST"])
    async def delete_devices() -> Response:
        """POST /_matrix/client/v3/delete_devices (spec: deleteDevices; UIA)."""
        requester = await authenticate(sessions)
        body = await json_body()
        ids = [_device_id(d) for d in body.str_list("devices")]
        await devices.delete(
            requester, ids, body.opt_dict("auth"), method="POST", path=request.path
        )
        return reply({})

    return bp
