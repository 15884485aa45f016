"""Server-side key backups (spec "Server-side key backups", key_backup.yaml).

Megolm session IDs are base64 and may contain '/', so the session segment uses the `path`
converter. The keys endpoints take the backup version as the required `version` query parameter.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import Fields, authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError, bad_json
from trioserver.services.container import Services
from trioserver.services.key_backup import (
    MAX_ALGORITHM_CHARS,
    check_session_id,
    parse_room_key,
    parse_rooms,
    parse_sessions,
)
from trioserver.services.rooms.service import check_room_id

VERSION = "/_matrix/client/v3/room_keys/version"
KEYS = "/_matrix/client/v3/room_keys/keys"


def _version_param() -> str:
    version = request.args.get("version")
    if version is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing query parameter 'version'")
    return version


def _algorithm(body: Fields) -> str:
    algorithm = body.req_str("algorithm", max_len=MAX_ALGORITHM_CHARS)
    if not algorithm:
        raise MatrixError(400, Codes.INVALID_PARAM, "'algorithm' must not be empty")
    return algorithm


def _auth_data(body: Fields) -> dict[str, Any]:
    if "auth_data" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'auth_data'")
    auth_data = body.raw["auth_data"]
    if not isinstance(auth_data, dict):
        raise bad_json("'auth_data' must be an object")
    return auth_data


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("key_backup", __name__)
    backup = services.key_backup
    sessions = services.sessions

    # -- versions -------------------------------------------------------------------------

    @bp.route(VERSION, methods=["POST"])
    async def create_version() -> Response:
        """POST /_matrix/client/v3/room_keys/version (spec: postRoomKeysVersion)."""
        requester = await authenticate(sessions)
        body = await json_body()
        algorithm = _algorithm(body)
        auth_data = _auth_data(body)
        return reply(await backup.create_version(requester.user_id, algorithm, auth_data))

    @bp.route(VERSION, methods=["GET"])
    async def get_current_version() -> Response:
        """GET /_matrix/client/v3/room_keys/version (spec: getRoomKeysVersionCurrent)."""
        requester = await authenticate(sessions)
        return reply(await backup.get_version(requester.user_id, None))

    @bp.route(VERSION + "/<version>", methods=["GET"])
    async def get_version(version: str) -> Response:
        """GET /_matrix/client/v3/room_keys/version/{version} (spec: getRoomKeysVersion)."""
        requester = await authenticate(sessions)
        return reply(await backup.get_version(requester.user_id, version))

    @bp.route(VERSION + "/<version>", methods=["PUT"])
    async def put_version(version: str) -> Response:
        """PUT /_matrix/client/v3/room_keys/version/{version} (spec: putRoomKeysVersion)."""
        requester = await authenticate(sessions)
        body = await json_body()
        algorithm = _algorithm(body)
        auth_data = _auth_data(body)
        body_version = body.opt_str("version")
        await backup.update_version(requester.user_id, version, algorithm, auth_data,
                                    body_version)
        return reply({})

    @bp.route(VERSION + "/<version>", methods=["DELETE"])
    async def delete_version(version: str) -> Response:
        """DELETE /_matrix/client/v3/room_keys/version/{version}
        (spec: deleteRoomKeysVersion)."""
        requester = await authenticate(sessions)
        await backup.delete_version(requester.user_id, version)
        return reply({})

    # -- keys -----------------------------------------------------------------------------

    @bp.route(KEYS, methods=["PUT"])
    async def put_keys() -> Response:
        """PUT /_matrix/client/v3/room_keys/keys (spec: putRoomKeys)."""
        requester = await authenticate(sessions)
        version = _version_param()
        rooms = parse_rooms((await json_body()).raw)
        return reply(await backup.upload(requester.user_id, version, rooms))

    @bp.route(KEYS, methods=["GET"])
    async def get_keys() -> Response:
        """GET /_matrix/client/v3/room_keys/keys (spec: getRoomKeys)."""
        requester = await authenticate(sessions)
        return reply(await backup.get_keys(requester.user_id, _version_param()))

    @bp.route(KEYS, methods=["DELETE"])
    async def delete_keys() -> Response:
        """DELETE /_matrix/client/v3/room_keys/keys (spec: deleteRoomKeys)."""
        requester = await authenticate(sessions)
        return reply(await backup.delete_keys(requester.user_id, _version_param()))

    @bp.route(KEYS + "/<room_id>", methods=["PUT"])
    async def put_room_keys(room_id: str) -> Response:
        """PUT /_matrix/client/v3/room_keys/keys/{roomId} (spec: putRoomKeysByRoomId)."""
        requester = await authenticate(sessions)
        version = _version_param()
        check_room_id(room_id)
        keys = parse_sessions((await json_body()).raw, room_id)
        return reply(await backup.upload(requester.user_id, version, {room_id: keys}))

    @bp.route(KEYS + "/<room_id>", methods=["GET"])
    async def get_room_keys(room_id: str) -> Response:
        """GET /_matrix/client/v3/room_keys/keys/{roomId} (spec: getRoomKeysByRoomId)."""
        requester = await authenticate(sessions)
        return reply(await backup.get_room_keys(requester.user_id, _version_param(), room_id))

    @bp.route(KEYS + "/<room_id>", methods=["DELETE"])
    async def delete_room_keys(room_id: str) -> Response:
        """DELETE /_matrix/client/v3/room_keys/keys/{roomId} (spec: deleteRoomKeysByRoomId)."""
        requester = await authenticate(sessions)
        return reply(await backup.delete_keys(requester.user_id, _version_param(), room_id))

    @bp.route(KEYS + "/<room_id>/<path:session_id>", methods=["PUT"])
    async def put_session_key(room_id: str, session_id: str) -> Response:
        """PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
        (spec: putRoomKeyBySessionId)."""
        requester = await authenticate(sessions)
        version = _version_param()
        check_room_id(room_id)
        check_session_id(session_id)
        key = parse_room_key((await json_body()).raw)
        return reply(await backup.upload(requester.user_id, version,
                                         {room_id: {session_id: key}}))

    @bp.route(KEYS + "/<room_id>/<path:session_id>", methods=["GET"])
    async def get_session_key(room_id: str, session_id: str) -> Response:
        """GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
        (spec: getRoomKeyBySessionId)."""
        requester = await authenticate(sessions)
        return reply(await backup.get_session_key(requester.user_id, _version_param(), room_id,
                                                  session_id))

    @bp.route(KEYS + "/<room_id>/<path:session_id>", methods=["DELETE"])
    async def delete_session_key(room_id: str, session_id: str) -> Response:
        """DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
        (spec: deleteRoomKeyBySessionId)."""
        requester = await authenticate(sessions)
        return reply(await backup.delete_keys(requester.user_id, _version_param(), room_id,
                                              session_id))

    return bp
