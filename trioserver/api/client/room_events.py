"""Room events and state (spec 1.9, 1.10): send, state, redact, event, messages, context,
members, timestamp_to_event."""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.rooms.reads import EventFilter
from trioserver.services.rooms.service import check_event_id, check_room_id
from trioserver.services.sessions import Requester

R = "/_matrix/client/v3/rooms/<room_id>"


def _int_arg(name: str, default: int, lo: int = 0, hi: int = 1000) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be an integer") from None
    return max(lo, min(value, hi))


def _str_list(raw: dict[str, Any], key: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MatrixError(400, Codes.BAD_JSON, f"filter.{key} must be a list of strings")
    return value


def parse_event_filter(default_limit: int) -> EventFilter:
    """The `filter` query parameter (a RoomEventFilter as JSON) plus `limit`."""
    raw_text = request.args.get("filter")
    raw: dict[str, Any] = {}
    if raw_text:
        try:
            parsed = json.loads(raw_text)
        except ValueError:
            raise MatrixError(400, Codes.NOT_JSON, "filter is not JSON") from None
        if not isinstance(parsed, dict):
            raise MatrixError(400, Codes.BAD_JSON, "filter must be a JSON object")
        raw = parsed
    limit = _int_arg("limit", default_limit)
    if "limit" in raw and request.args.get("limit") is None:
        if isinstance(raw["limit"], bool) or not isinstance(raw["limit"], int):
            raise MatrixError(400, Codes.BAD_JSON, "filter.limit must be an integer")
        limit = max(0, min(raw["limit"], 1000))
    contains_url = raw.get("contains_url")
    if contains_url is not None and not isinstance(contains_url, bool):
        raise MatrixError(400, Codes.BAD_JSON, "filter.contains_url must be a boolean")
    lazy = raw.get("lazy_load_members", False)
    if not isinstance(lazy, bool):
        raise MatrixError(400, Codes.BAD_JSON, "filter.lazy_load_members must be a boolean")
    return EventFilter(
        limit=limit,
        types=_str_list(raw, "types"),
        not_types=_str_list(raw, "not_types") or [],
        senders=_str_list(raw, "senders"),
        not_senders=_str_list(raw, "not_senders") or [],
        contains_url=contains_url,
        lazy_load_members=lazy,
    )


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("room_events", __name__)
    rooms = services.rooms
    reader = services.room_reader
    sessions = services.sessions
    events_limit = services.config.rate_limits.events_per_user

    def check_rate(requester: Requester) -> None:
        """429 M_LIMIT_EXCEEDED past `rate_limits.events_per_user` (appservices may opt out)."""
        if not services.appservices.exempt_from_rate_limits(requester.appservice_id,
                                                            requester.user_id):
            services.limiter.check("events", requester.user_id, events_limit)

    @bp.route(R + "/send/<event_type>/<txn_id>", methods=["PUT"])
    async def send(room_id: str, event_type: str, txn_id: str) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} (spec: sendMessage)."""
        requester = await authenticate(sessions, allow_guest=True)
        body = await json_body()
        check_rate(requester)
        await services.relations.check_annotation(requester.user_id, event_type, body.raw)
        appended = await rooms.send(requester, room_id, event_type, body.raw, txn_id)
        return reply({"event_id": appended.event.event_id})

    @bp.route(R + "/redact/<event_id>/<txn_id>", methods=["PUT"])
    async def redact(room_id: str, event_id: str, txn_id: str) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId} (spec: redactEvent)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        check_rate(requester)
        appended = await rooms.redact(requester, room_id, event_id, body.opt_str("reason"),
                                      txn_id)
        return reply({"event_id": appended.event.event_id})

    @bp.route(R + "/state/<event_type>", methods=["PUT"], defaults={"state_key": ""},
              strict_slashes=False)
    @bp.route(R + "/state/<event_type>/<path:state_key>", methods=["PUT"])
    async def put_state(room_id: str, event_type: str, state_key: str) -> Response:
        """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}."""
        requester = await authenticate(sessions)
        body = await json_body()
        check_rate(requester)
        event_id = await rooms.set_state(requester, room_id, event_type, state_key, body.raw)
        return reply({"event_id": event_id})

    @bp.route(R + "/state/<event_type>", methods=["GET"], defaults={"state_key": ""},
              strict_slashes=False)
    @bp.route(R + "/state/<event_type>/<path:state_key>", methods=["GET"])
    async def get_state_event(room_id: str, event_type: str, state_key: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}."""
        requester = await authenticate(sessions, allow_guest=True)
        event = await reader.state_event(requester.user_id, check_room_id(room_id), event_type,
                                         state_key)
        if request.args.get("format") == "event":
            return reply((await reader.format([event]))[0])
        return reply((await reader.format([event]))[0]["content"])

    @bp.route(R + "/state", methods=["GET"])
    async def get_state(room_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/state (spec: getRoomState)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply(await reader.state(requester.user_id, check_room_id(room_id)))

    @bp.route(R + "/event/<event_id>", methods=["GET"])
    async def get_event(room_id: str, event_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId} (spec: getOneRoomEvent)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply(await reader.get_event(requester.user_id, check_room_id(room_id),
                                            check_event_id(event_id), requester.device_id))

    @bp.route(R + "/messages", methods=["GET"])
    async def messages(room_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/messages (spec: getRoomEvents)."""
        requester = await authenticate(sessions, allow_guest=True)
        direction = request.args.get("dir", "b")
        if direction not in ("b", "f"):
            raise MatrixError(400, Codes.INVALID_PARAM, "dir must be b or f")
        return reply(await reader.messages(
            requester.user_id, check_room_id(room_id), from_token=request.args.get("from"),
            to_token=request.args.get("to"), backwards=direction == "b",
            event_filter=parse_event_filter(10), device_id=requester.device_id))

    @bp.route(R + "/context/<event_id>", methods=["GET"])
    async def context(room_id: str, event_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId} (spec: getEventContext)."""
        requester = await authenticate(sessions, allow_guest=True)
        event_filter = parse_event_filter(10)
        return reply(await reader.context(requester.user_id, check_room_id(room_id),
                                          check_event_id(event_id), event_filter.limit,
                                          event_filter, requester.device_id))

    @bp.route(R + "/members", methods=["GET"])
    async def members(room_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/members (spec: getMembersByRoom)."""
        requester = await authenticate(sessions, allow_guest=True)
        chunk = await reader.members(
            requester.user_id, check_room_id(room_id),
            membership=request.args.get("membership"),
            not_membership=request.args.get("not_membership"), at=request.args.get("at"))
        return reply({"chunk": chunk})

    @bp.route(R + "/joined_members", methods=["GET"])
    async def joined_members(room_id: str) -> Response:
        """GET /_matrix/client/v3/rooms/{roomId}/joined_members (spec: getJoinedMembersByRoom)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply(await reader.joined_members(requester.user_id, check_room_id(room_id)))

    @bp.route("/_matrix/client/v1/rooms/<room_id>/timestamp_to_event", methods=["GET"])
    async def timestamp_to_event(room_id: str) -> Response:
        """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (spec: getEventByTimestamp)."""
        requester = await authenticate(sessions, allow_guest=True)
        ts_raw = request.args.get("ts")
        direction = request.args.get("dir")
        if ts_raw is None or direction is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "ts and dir are required")
        if not ts_raw.isdigit() or direction not in ("f", "b"):
            raise MatrixError(400, Codes.INVALID_PARAM, "ts must be an integer and dir f or b")
        return reply(await reader.timestamp_to_event(
            requester.user_id, check_room_id(room_id), int(ts_raw), direction == "f"))

    return bp
