"""Room creation and membership (spec 1.7, 1.8): createRoom, join, invite, leave, kick, ban..."""

from __future__ import annotations

from quart import Blueprint, Response, request

from trioserver.api.http import Fields, authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.rooms.service import CreateRoomRequest, StateSpec


def _create_request(body: Fields) -> CreateRoomRequest:
    visibility = body.opt_str("visibility") or "private"
    if visibility not in ("public", "private"):
        raise MatrixError(400, Codes.BAD_JSON, "visibility must be public or private")
    initial: list[StateSpec] = []
    raw_initial = body.raw.get("initial_state", [])
    if not isinstance(raw_initial, list):
        raise MatrixError(400, Codes.BAD_JSON, "initial_state must be a list")
    for item in raw_initial:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or \
                not isinstance(item.get("content"), dict) or \
                not isinstance(item.get("state_key", ""), str):
            raise MatrixError(400, Codes.BAD_JSON,
                              "initial_state entries need type, content and a string state_key")
        initial.append(StateSpec(item["type"], item.get("state_key", ""), item["content"]))
    invite = body.raw.get("invite", [])
    if not isinstance(invite, list) or not all(isinstance(u, str) for u in invite):
        raise MatrixError(400, Codes.BAD_JSON, "invite must be a list of user IDs")
    return CreateRoomRequest(
        visibility=visibility,
        room_alias_name=body.opt_str("room_alias_name", max_len=255),
        name=body.opt_str("name", max_len=4096),
        topic=body.opt_str("topic", max_len=32768),
        invite=invite,
        room_version=body.opt_str("room_version", max_len=32),
        creation_content=body.opt_dict("creation_content") or {},
        initial_state=initial,
        preset=body.opt_str("preset", max_len=64),
        is_direct=body.opt_bool("is_direct"),
        power_level_content_override=body.opt_dict("power_level_content_override"),
    )


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("rooms", __name__)
    rooms = services.rooms
    sessions = services.sessions

    @bp.route("/_matrix/client/v3/createRoom", methods=["POST"])
    async def create_room() -> Response:
        """POST /_matrix/client/v3/createRoom (spec: createRoom)."""
        requester = await authenticate(sessions)
        body = await json_body()
        room_id = await rooms.create_room(requester, _create_request(body))
        return reply({"room_id": room_id})

    @bp.route("/_matrix/client/v3/join/<room_id_or_alias>", methods=["POST"])
    async def join_by_id_or_alias(room_id_or_alias: str) -> Response:
        """POST /_matrix/client/v3/join/{roomIdOrAlias} (spec: joinRoom)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        # `via` (v1.12) and its deprecated name `server_name`: servers to join through.
        via = [*request.args.getlist("via"), *request.args.getlist("server_name")]
        room_id = await rooms.join(requester, room_id_or_alias, body.opt_str("reason"), via)
        return reply({"room_id": room_id})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/join", methods=["POST"])
    async def join(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/join (spec: joinRoomById)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        if room_id.startswith("#"):
            raise MatrixError(400, Codes.INVALID_PARAM, "Use /join/{roomIdOrAlias} for aliases")
        joined = await rooms.join(requester, room_id, body.opt_str("reason"))
        return reply({"room_id": joined})

    @bp.route("/_matrix/client/v3/knock/<room_id_or_alias>", methods=["POST"])
    async def knock(room_id_or_alias: str) -> Response:
        """POST /_matrix/client/v3/knock/{roomIdOrAlias} (spec: knockRoom)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        via = [*request.args.getlist("via"), *request.args.getlist("server_name")]
        room_id = await rooms.knock(requester, room_id_or_alias, body.opt_str("reason"), via)
        return reply({"room_id": room_id})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/invite", methods=["POST"])
    async def invite(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/invite (spec: inviteUser)."""
        requester = await authenticate(sessions)
        body = await json_body()
        if "user_id" not in body and "id_server" in body:
            raise MatrixError(400, Codes.UNRECOGNIZED, "Third-party invites are not supported")
        await rooms.set_membership(requester, room_id, body.req_str("user_id", max_len=255),
                                   "invite", body.opt_str("reason"))
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/leave", methods=["POST"])
    async def leave(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/leave (spec: leaveRoom)."""
        requester = await authenticate(sessions, allow_guest=True)
        body = await json_body(optional=True)
        await rooms.leave(requester, room_id, body.opt_str("reason"))
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/forget", methods=["POST"])
    async def forget(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/forget (spec: forgetRoom)."""
        requester = await authenticate(sessions, allow_guest=True)
        await rooms.forget(requester, room_id)
        return reply({})

    def _target(body: Fields) -> tuple[str, str | None]:
        return body.req_str("user_id", max_len=255), body.opt_str("reason")

    @bp.route("/_matrix/client/v3/rooms/<room_id>/kick", methods=["POST"])
    async def kick(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/kick (spec: kick)."""
        requester = await authenticate(sessions)
        await rooms.kick(requester, room_id, *_target(await json_body()))
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/ban", methods=["POST"])
    async def ban(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/ban (spec: ban)."""
        requester = await authenticate(sessions)
        user_id, reason = _target(await json_body())
        await rooms.set_membership(requester, room_id, user_id, "ban", reason)
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/unban", methods=["POST"])
    async def unban(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/unban (spec: unban)."""
        requester = await authenticate(sessions)
        await rooms.unban(requester, room_id, *_target(await json_body()))
        return reply({})

    @bp.route("/_matrix/client/v3/rooms/<room_id>/upgrade", methods=["POST"])
    async def upgrade(room_id: str) -> Response:
        """POST /_matrix/client/v3/rooms/{roomId}/upgrade (spec: upgradeRoom)."""
        requester = await authenticate(sessions)
        body = await json_body()
        creators = body.raw.get("additional_creators", [])
        if not isinstance(creators, list) or not all(isinstance(u, str) for u in creators):
            raise MatrixError(400, Codes.BAD_JSON, "additional_creators must be user IDs")
        new_room = await services.upgrader.upgrade(
            requester, room_id, body.req_str("new_version", max_len=32), creators)
        return reply({"replacement_room": new_room})

    @bp.route("/_matrix/client/v3/joined_rooms", methods=["GET"])
    async def joined_rooms() -> Response:
        """GET /_matrix/client/v3/joined_rooms (spec: getJoinedRooms)."""
        requester = await authenticate(sessions, allow_guest=True)
        return reply({"joined_rooms": await services.room_reader.joined_rooms(requester.user_id)})

    return bp


