"""Federation endpoints that read rooms: events, state, auth chains, backfill, gap filling."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services


def _event_id_arg() -> str:
    event_id = request.args.get("event_id")
    if not event_id:
        raise MatrixError(400, Codes.MISSING_PARAM, "event_id is required")
    return event_id


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be a whole number")
    return int(raw)


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_events", __name__)
    reads = services.federation_reads

    @bp.route("/_matrix/federation/v1/event/<event_id>", methods=["GET"])
    async def event(event_id: str) -> Response:
        """GET /_matrix/federation/v1/event/{eventId} (spec: getEvent)."""
        origin = await authenticate_origin(services)
        return reply(await reads.event(origin, event_id))

    @bp.route("/_matrix/federation/v1/state_ids/<room_id>", methods=["GET"])
    async def state_ids(room_id: str) -> Response:
        """GET /_matrix/federation/v1/state_ids/{roomId} (spec: getRoomStateIds)."""
        origin = await authenticate_origin(services)
        return reply(await reads.state_ids(origin, room_id, _event_id_arg()))

    @bp.route("/_matrix/federation/v1/state/<room_id>", methods=["GET"])
    async def state(room_id: str) -> Response:
        """GET /_matrix/federation/v1/state/{roomId} (spec: getRoomState)."""
        origin = await authenticate_origin(services)
        return reply(await reads.state(origin, room_id, _event_id_arg()))

    @bp.route("/_matrix/federation/v1/event_auth/<room_id>/<event_id>", methods=["GET"])
    async def event_auth(room_id: str, event_id: str) -> Response:
        """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} (spec: getEventAuth)."""
        origin = await authenticate_origin(services)
        return reply(await reads.event_auth(origin, room_id, event_id))

    @bp.route("/_matrix/federation/v1/backfill/<room_id>", methods=["GET"])
    async def backfill(room_id: str) -> Response:
        """GET /_matrix/federation/v1/backfill/{roomId} (spec: backfillRoom)."""
        origin = await authenticate_origin(services)
        from_ids = request.args.getlist("v")
        if not from_ids:
            raise MatrixError(400, Codes.MISSING_PARAM, "v is required")
        return reply(await reads.backfill(origin, room_id, from_ids, _int_arg("limit", 10)))

    @bp.route("/_matrix/federation/v1/get_missing_events/<room_id>", methods=["POST"])
    async def get_missing_events(room_id: str) -> Response:
        """POST /_matrix/federation/v1/get_missing_events/{roomId} (spec: getMissingEvents)."""
        origin = await authenticate_origin(services)
        body = await json_body()
        earliest = body.raw.get("earliest_events", [])
        latest = body.raw.get("latest_events", [])
        if not isinstance(earliest, list) or not isinstance(latest, list) or not all(
                isinstance(e, str) for e in [*earliest, *latest]):
            raise MatrixError(400, Codes.BAD_JSON, "earliest_events and latest_events: arrays")
        limit = body.raw.get("limit", 10)
        min_depth = body.raw.get("min_depth", 0)
        if not isinstance(limit, int) or not isinstance(min_depth, int):
            raise MatrixError(400, Codes.BAD_JSON, "limit and min_depth must be integers")
        return reply(await reads.missing_events(origin, room_id, earliest, latest, limit,
                                                min_depth))

    return bp
