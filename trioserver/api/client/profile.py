"""Profiles (spec 1.16): the whole profile and single fields, including custom keys."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services

PREFIX = "/_matrix/client/v3/profile/"


def split_profile_path(rest: str) -> tuple[str, str | None]:
    """Split `{userId}[/{keyName}]`.

    User IDs may contain '/' in their localpart but never after the server name's ':', and
    profile keys never contain ':', so the last segment is a key only if it has no ':'.
    """
    head, sep, last = rest.rpartition("/")
    if sep and ":" not in last and ":" in head:
        return head, last
    return rest, None


def field_path(rest: str) -> tuple[str, str]:
    """`{userId}/{keyName}` for the methods that need a key (405 without one)."""
    user_id, key = split_profile_path(rest)
    if key is None:
        raise MatrixError(405, Codes.UNRECOGNIZED, "This method needs a profile key")
    return user_id, key


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("profile", __name__)
    profiles = services.profiles
    sessions = services.sessions

    @bp.route(PREFIX + "<path:rest>", methods=["GET"])
    async def get_profile(rest: str) -> Response:
        """GET /_matrix/client/v3/profile/{userId}[/{keyName}] (getUserProfile, getProfileField)."""
        user_id, key = split_profile_path(rest)
        if key is None:
            return reply(await profiles.get(user_id))
        return reply({key: await profiles.get_field(user_id, key)})

    @bp.route(PREFIX + "<path:rest>", methods=["PUT"])
    async def set_field(rest: str) -> Response:
        """PUT /_matrix/client/v3/profile/{userId}/{keyName} (spec: setProfileField)."""
        user_id, key = field_path(rest)
        requester = await authenticate(sessions, allow_guest=True)
        body = await json_body()
        if key not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{key}'")
        await profiles.set_field(requester, user_id, key, body.raw[key])
        return reply({})

    @bp.route(PREFIX + "<path:rest>", methods=["DELETE"])
    async def delete_field(rest: str) -> Response:
        """DELETE /_matrix/client/v3/profile/{userId}/{keyName} (spec: deleteProfileField)."""
        user_id, key = field_path(rest)
        requester = await authenticate(sessions, allow_guest=True)
        await profiles.delete_field(requester, user_id, key)
        return reply({})

    return bp
