"""Receipts and read markers (spec "Receipts", "Read and unread markers")."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services
from trioserver.services.rooms.service import check_room_id

R = "/_matrix/client/v3/rooms/<room_id>"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("receipts", __name__)
    receipts = services.receipts
    sessions = services.sessions

    @bp.route(R + "/receipt/<receipt_type>/<event_id>", methods=["POST"])
    async def post_receipt(room_id: str, receipt_type: str, event_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
        (spec: postReceipt)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        await receipts.post_receipt(requester.user_id, check_room_id(room_id), receipt_type,
                                    event_id, body.raw.get("thread_id"))
        return reply({})

    @bp.route(R + "/read_markers", methods=["POST"])
    async def read_markers(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers (spec: setReadMarker)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await receipts.set_read_markers(
            requester.user_id, check_room_id(room_id), fully_read=body.raw.get("m.fully_read"),
            read=body.raw.get("m.read"), read_private=body.raw.get("m.read.private"))
        return reply({})

    return bp
