"""Send-to-device messaging (spec "Send-to-Device messaging")."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.to_device import parse_messages


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("to_device", __name__)
    to_device = services.to_device
    sessions = services.sessions

    @bp.route("/_matrix/client/v3/sendToDevice/<event_type>/<txn_id>", methods=["PUT"])
    async def send_to_device(event_type: str, txn_id: str) -> Response:
        """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId} (spec: sendToDevice)."""
        requester = await authenticate(sessions, allow_guest=True)
        body = await json_body()
        if "messages" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'messages'")
        messages = parse_messages(body.raw["messages"])
        await to_device.send(requester, event_type, txn_id, messages)
        return reply({})

    return bp
