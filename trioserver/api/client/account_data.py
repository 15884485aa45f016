"""Account data (spec "Client Config") and room tags (spec "Room Tagging").

User IDs may contain '/' (historical and `[a-z0-9._=-/+]` localparts), as may types and tags, so
those path segments use the `path` converter.
"""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.services.container import Services

U = "/_matrix/client/v3/user/<path:user_id>"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("account_data", __name__)
    account_data = services.account_data
    sessions = services.sessions

    @bp.route(U + "/account_data/<path:data_type>", methods=["GET"])
    async def get_global(user_id: str, data_type: str) -> Response:
        """GET /_matrix/client/v3/user/{userId}/account_data/{type} (spec: getAccountData)."""
        requester = await authenticate(sessions)
        return reply(await account_data.get(requester, user_id, data_type))

    @bp.route(U + "/account_data/<path:data_type>", methods=["PUT"])
    async def put_global(user_id: str, data_type: str) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/account_data/{type} (spec: setAccountData)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await account_data.put(requester, user_id, data_type, body.raw)
        return reply({})

    @bp.route(U + "/rooms/<room_id>/account_data/<path:data_type>", methods=["GET"])
    async def get_room(user_id: str, room_id: str, data_type: str) -> Response:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
        (spec: getAccountDataPerRoom)."""
        requester = await authenticate(sessions)
        return reply(await account_data.get(requester, user_id, data_type, room_id))

    @bp.route(U + "/rooms/<room_id>/account_data/<path:data_type>", methods=["PUT"])
    async def put_room(user_id: str, room_id: str, data_type: str) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
        (spec: setAccountDataPerRoom)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await account_data.put(requester, user_id, data_type, body.raw, room_id)
        return reply({})

    @bp.route(U + "/rooms/<room_id>/tags", methods=["GET"])
    async def get_tags(user_id: str, room_id: str) -> Response:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags (spec: getRoomTags)."""
        requester = await authenticate(sessions)
        return reply(await account_data.tags(requester, user_id, room_id))

    @bp.route(U + "/rooms/<room_id>/tags/<path:tag>", methods=["PUT"])
    async def put_tag(user_id: str, room_id: str, tag: str) -> Response:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} (spec: setRoomTag)."""
        requester = await authenticate(sessions)
        body = await json_body()
        await account_data.add_tag(requester, user_id, room_id, tag, body.raw)
        return reply({})

    @bp.route(U + "/rooms/<room_id>/tags/<path:tag>", methods=["DELETE"])
    async def delete_tag(user_id: str, room_id: str, tag: str) -> Response:
        """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
        (spec: deleteRoomTag)."""
        requester = await authenticate(sessions)
        await account_data.remove_tag(requester, user_id, room_id, tag)
        return reply({})

    return bp
