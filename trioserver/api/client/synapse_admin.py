"""A Synapse-compatible admin API subset under /_synapse/admin (admins only, else 403)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.client.register import session_json
from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.synapse_admin import UserChange, UserQuery
from trioserver.storage.repositories.account_admin import AdminUserRow
from trioserver.storage.repositories.admin_rooms import AdminRoomRow

PREFIX = "/_synapse/admin"


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise MatrixError(400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be a"
                          " non-negative integer")
    return int(raw)


def _bool_arg(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise MatrixError(400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be a boolean")
    return raw == "true"


def _user_json(u: AdminUserRow) -> dict[str, Any]:
    return {"name": u.user_id, "admin": u.is_admin, "is_guest": u.is_guest,
            "deactivated": u.deactivated, "locked": u.locked, "suspended": u.suspended,
            "displayname": u.displayname, "creation_ts": u.created_ts, "user_type": None,
            "shadow_banned": False, "erased": False}


def _room_json(r: AdminRoomRow) -> dict[str, Any]:
    return {"room_id": r.room_id, "version": r.version, "creator": r.creator,
            "creation_ts": r.created_ts, "public": r.public, "joined_members": r.joined_members,
            "joined_local_members": r.joined_local_members, "state_events": r.state_events}


def _opt_bool(body: Any, name: str) -> bool | None:
    return body.opt_bool(name) if name in body else None


def _opt_count(raw: dict[str, Any], name: str) -> int | None:
    """A non-negative integer field that may be null or absent."""
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name}: a non-negative integer or null")
    return value


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("synapse_admin", __name__)
    sessions = services.sessions
    admin = services.synapse_admin

    @bp.route(f"{PREFIX}/v2/users", methods=["GET"])
    async def list_users() -> Response:
        """GET /_synapse/admin/v2/users (Synapse admin API: list accounts, paged by `from`)."""
        requester = await authenticate(sessions)
        offset, limit = _int_arg("from", 0), _int_arg("limit", 100)
        users, total = await admin.list_users(requester, UserQuery(
            offset=offset, limit=limit, guests=_bool_arg("guests", True),
            deactivated=_bool_arg("deactivated", False), name=request.args.get("name")))
        out: dict[str, Any] = {"users": [_user_json(u) for u in users], "total": total}
        if offset + len(users) < total:
            out["next_token"] = str(offset + len(users))
        return reply(out)

    @bp.route(f"{PREFIX}/v2/users/<user_id>", methods=["GET"])
    async def get_user(user_id: str) -> Response:
        """GET /_synapse/admin/v2/users/{userId} (Synapse admin API: query user account)."""
        requester = await authenticate(sessions)
        row = await admin.get_user(requester, user_id)
        return reply({**_user_json(row), "threepids": [], "external_ids": []})

    @bp.route(f"{PREFIX}/v2/users/<user_id>", methods=["PUT"])
    async def put_user(user_id: str) -> Response:
        """PUT /_synapse/admin/v2/users/{userId}: password, admin, locked, deactivated; a user
        that does not exist is created (201), with `displayname` if given."""
        requester = await authenticate(sessions)
        body = await json_body()
        change = UserChange(
            password=body.opt_str("password", max_len=4096),
            logout_devices=body.opt_bool("logout_devices", default=True),
            deactivated=_opt_bool(body, "deactivated"), admin=_opt_bool(body, "admin"),
            locked=_opt_bool(body, "locked"),
            displayname=body.opt_str("displayname", max_len=256))
        row, created = await admin.change_user(requester, user_id, change)
        return reply({**_user_json(row), "threepids": [], "external_ids": []},
                     201 if created else 200)

    @bp.route(f"{PREFIX}/v1/rooms", methods=["GET"])
    async def list_rooms() -> Response:
        """GET /_synapse/admin/v1/rooms (Synapse admin API: list rooms, paged by `from`)."""
        requester = await authenticate(sessions)
        offset, limit = _int_arg("from", 0), _int_arg("limit", 100)
        rooms, total = await admin.list_rooms(requester, offset=offset, limit=limit)
        out: dict[str, Any] = {"rooms": [_room_json(r) for r in rooms], "offset": offset,
                               "total_rooms": total}
        if offset + len(rooms) < total:
            out["next_batch"] = offset + len(rooms)
        return reply(out)

    @bp.route(f"{PREFIX}/v1/rooms/<room_id>/members", methods=["GET"])
    async def room_members(room_id: str) -> Response:
        """GET /_synapse/admin/v1/rooms/{roomId}/members (Synapse admin API)."""
        requester = await authenticate(sessions)
        members = await admin.room_members(requester, room_id)
        return reply({"members": members, "total": len(members)})

    @bp.route(f"{PREFIX}/v1/rooms/<room_id>", methods=["DELETE"])
    async def delete_room(room_id: str) -> Response:
        """DELETE /_synapse/admin/v1/rooms/{roomId}: local members leave, the room is unlisted
        and loses its local aliases (no purge of history)."""
        requester = await authenticate(sessions)
        await json_body(optional=True)
        return reply(await admin.delete_room(requester, room_id))

    @bp.route(f"{PREFIX}/v1/media/delete", methods=["POST"])
    async def delete_media() -> Response:
        """POST /_synapse/admin/v1/media/delete?before_ts=: local media created before then."""
        requester = await authenticate(sessions)
        before = request.args.get("before_ts")
        if before is None or not before.isdigit():
            raise MatrixError(400, Codes.MISSING_PARAM, "before_ts (ms) is required")
        total = await admin.delete_media_before(requester, int(before))
        return reply({"deleted_media": [], "total": total})

    @bp.route(f"{PREFIX}/v1/register", methods=["GET"])
    async def shared_secret_nonce() -> Response:
        """GET /_synapse/admin/v1/register: a nonce for shared-secret registration."""
        return reply({"nonce": services.accounts.shared_secret_nonce()})

    @bp.route(f"{PREFIX}/v1/register", methods=["POST"])
    async def shared_secret_register() -> Response:
        """POST /_synapse/admin/v1/register (Synapse's shared-secret registration, as used by
        register_new_matrix_user): no access token, an HMAC of the shared secret instead."""
        body = await json_body()
        admin_flag = body.opt_bool("admin") or False
        result = await services.accounts.register_shared_secret(
            body.req_str("nonce", max_len=128), body.req_str("username", max_len=255),
            body.req_str("password", max_len=4096), admin_flag,
            body.opt_str("user_type", max_len=64), body.req_str("mac", max_len=128),
            body.opt_str("displayname", max_len=256))
        return reply(session_json(result, services.config.server_name))

    @bp.route(f"{PREFIX}/v1/registration_tokens", methods=["GET"])
    async def registration_tokens() -> Response:
        """GET /_synapse/admin/v1/registration_tokens[?valid=]: the config's tokens (unlimited,
        read-only) and those made here."""
        requester = await authenticate(sessions)
        valid = _bool_arg("valid", True) if "valid" in request.args else None
        rows = await admin.registration_tokens(requester, valid)
        return reply({"registration_tokens": [r.to_json() for r in rows]})

    @bp.route(f"{PREFIX}/v1/registration_tokens/new", methods=["POST"])
    async def new_registration_token() -> Response:
        """POST /_synapse/admin/v1/registration_tokens/new: token (or a random one of
        `length`), uses_allowed, expiry_time (ms)."""
        requester = await authenticate(sessions)
        body = await json_body(optional=True)
        length = body.raw.get("length", 16)
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= 64:
            raise MatrixError(400, Codes.INVALID_PARAM, "length: an integer from 1 to 64")
        row = await admin.create_registration_token(
            requester, body.opt_str("token"), length, _opt_count(body.raw, "uses_allowed"),
            _opt_count(body.raw, "expiry_time"))
        return reply(row.to_json())

    @bp.route(f"{PREFIX}/v1/registration_tokens/<token>", methods=["GET"])
    async def get_registration_token(token: str) -> Response:
        requester = await authenticate(sessions)
        return reply((await admin.registration_token(requester, token)).to_json())

    @bp.route(f"{PREFIX}/v1/registration_tokens/<token>", methods=["PUT"])
    async def update_registration_token(token: str) -> Response:
        """PUT /_synapse/admin/v1/registration_tokens/{token}: uses_allowed, expiry_time
        (null: unlimited / never)."""
        requester = await authenticate(sessions)
        body = await json_body()
        changes: dict[str, int | None] = {
            key: _opt_count(body.raw, key) for key in ("uses_allowed", "expiry_time")
            if key in body.raw}
        row = await admin.update_registration_token(requester, token, changes)
        return reply(row.to_json())

    @bp.route(f"{PREFIX}/v1/registration_tokens/<token>", methods=["DELETE"])
    async def delete_registration_token(token: str) -> Response:
        requester = await authenticate(sessions)
        await admin.delete_registration_token(requester, token)
        return reply({})

    return bp
