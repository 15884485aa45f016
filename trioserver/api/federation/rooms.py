"""Federation endpoints that change rooms: /send, and remote users joining our rooms.

Every handler authenticates the calling server (X-Matrix) before reading anything else.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import json_body, reply
from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_rooms", __name__)
    inbound = services.federation_in

    @bp.route("/_matrix/federation/v1/send/<txn_id>", methods=["PUT"])
    async def send(txn_id: str) -> Response:
        """PUT /_matrix/federation/v1/send/{txnId} (spec: sendTransaction)."""
        origin = await authenticate_origin(services)
        body = (await json_body()).raw
        return reply(await inbound.transaction(origin, txn_id, body))

    @bp.route("/_matrix/federation/v1/make_join/<room_id>/<user_id>", methods=["GET"])
    async def make_join(room_id: str, user_id: str) -> Response:
        """GET /_matrix/federation/v1/make_join/{roomId}/{userId} (spec: makeJoin)."""
        origin = await authenticate_origin(services)
        versions = request.args.getlist("ver") or ["1"]
        return reply(await inbound.make_join(origin, room_id, user_id, versions))

    async def _send_join(room_id: str, event_id: str) -> dict[str, Any]:
        origin = await authenticate_origin(services)
        body = (await json_body()).raw
        return await inbound.send_join(origin, room_id, event_id, body)

    @bp.route("/_matrix/federation/v2/send_join/<room_id>/<event_id>", methods=["PUT"])
    async def send_join_v2(room_id: str, event_id: str) -> Response:
        """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} (spec: sendJoinV2)."""
        return reply(await _send_join(room_id, event_id))

    @bp.route("/_matrix/federation/v1/send_join/<room_id>/<event_id>", methods=["PUT"])
    async def send_join_v1(room_id: str, event_id: str) -> Response:
        """PUT /_matrix/federation/v1/send_join/{roomId}/{eventId} (deprecated: [200, body])."""
        return reply([200, await _send_join(room_id, event_id)])

    @bp.route("/_matrix/federation/v1/make_leave/<room_id>/<user_id>", methods=["GET"])
    async def make_leave(room_id: str, user_id: str) -> Response:
        """GET /_matrix/federation/v1/make_leave/{roomId}/{userId} (spec: makeLeave)."""
        origin = await authenticate_origin(services)
        return reply(await inbound.make_leave(origin, room_id, user_id))

    @bp.route("/_matrix/federation/v2/send_leave/<room_id>/<event_id>", methods=["PUT"])
    async def send_leave_v2(room_id: str, event_id: str) -> Response:
        """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} (spec: sendLeaveV2)."""
        origin = await authenticate_origin(services)
        await inbound.send_leave(origin, room_id, event_id, (await json_body()).raw)
        return reply({})

    @bp.route("/_matrix/federation/v1/send_leave/<room_id>/<event_id>", methods=["PUT"])
    async def send_leave_v1(room_id: str, event_id: str) -> Response:
        """PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId} (deprecated: [200, {}])."""
        origin = await authenticate_origin(services)
        await inbound.send_leave(origin, room_id, event_id, (await json_body()).raw)
        return reply([200, {}])

    @bp.route("/_matrix/federation/v1/make_knock/<room_id>/<user_id>", methods=["GET"])
    async def make_knock(room_id: str, user_id: str) -> Response:
        """GET /_matrix/federation/v1/make_knock/{roomId}/{userId} (spec: makeKnock)."""
        origin = await authenticate_origin(services)
        versions = request.args.getlist("ver") or ["1"]
        return reply(await inbound.make_membership(origin, room_id, user_id, "knock",
                                                   versions))

    @bp.route("/_matrix/federation/v1/send_knock/<room_id>/<event_id>", methods=["PUT"])
    async def send_knock(room_id: str, event_id: str) -> Response:
        """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} (spec: sendKnock)."""
        origin = await authenticate_origin(services)
        return reply(await inbound.send_knock(origin, room_id, event_id,
                                              (await json_body()).raw))

    @bp.route("/_matrix/federation/v2/invite/<room_id>/<event_id>", methods=["PUT"])
    async def invite_v2(room_id: str, event_id: str) -> Response:
        """PUT /_matrix/federation/v2/invite/{roomId}/{eventId} (spec: sendInviteV2)."""
        origin = await authenticate_origin(services)
        body = (await json_body()).raw
        return reply(await services.invites.receive(origin, room_id, event_id, body))

    return bp

