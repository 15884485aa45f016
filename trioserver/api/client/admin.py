"""Server administration (spec: admin.yaml): whois, account suspension and locking (v1.18)."""

from __future__ import annotations

import re

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.account_admin import require_not_suspended
from trioserver.services.container import Services

# What a suspended account may not do (the spec's recommended list, and room creation):
# (method, path pattern). Reading, leaving, redacting its own events, keys and devices stay open.
_SUSPENDED_FORBIDDEN: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (method, re.compile(pattern)) for method, pattern in (
        ("POST", r"^/_matrix/client/v3/createRoom$"),
        ("POST", r"^/_matrix/client/v3/(join|knock)/"),
        ("POST", r"^/_matrix/client/v3/rooms/[^/]+/(join|invite|kick|ban|unban|upgrade)$"),
        ("PUT", r"^/_matrix/client/v3/rooms/[^/]+/send/(?!m\.room\.redaction/)"),
        ("PUT", r"^/_matrix/client/v3/rooms/[^/]+/state/"),
        ("PUT", r"^/_matrix/client/v3/profile/"),
        ("DELETE", r"^/_matrix/client/v3/profile/"),
        ("POST", r"^/_matrix/media/v3/upload"),
        ("PUT", r"^/_matrix/media/v3/upload/"),
        ("POST", r"^/_matrix/media/v1/create$"),
    )
)


def _suspension_applies(method: str, path: str) -> bool:
    return any(m == method and p.match(path) for m, p in _SUSPENDED_FORBIDDEN)


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("admin", __name__)
    sessions = services.sessions
    admin = services.account_admin

    @bp.before_app_request
    async def _refuse_suspended() -> None:
        """403 M_USER_SUSPENDED for the actions above, before any servlet runs.

        One guard here rather than a check in every servlet: the list stays in one place.
        """
        if not _suspension_applies(request.method, request.path):
            return
        try:
            requester = await authenticate(sessions, allow_guest=True)
        except MatrixError:
            return  # the servlet itself answers the missing or bad token
        require_not_suspended(requester)

    @bp.route("/_matrix/client/v3/admin/whois/<user_id>", methods=["GET"])
    async def whois(user_id: str) -> Response:
        """GET /_matrix/client/v3/admin/whois/{userId} (spec: getWhoIs): admins or oneself."""
        requester = await authenticate(sessions)
        found = await admin.whois(requester, user_id)
        devices = {
            s.device_id: {"sessions": [{"connections": [
                {k: v for k, v in (("ip", s.last_seen_ip), ("last_seen", s.last_seen_ts),
                                   ("user_agent", s.user_agent)) if v is not None}
            ]}]}
            for s in found.sessions
        }
        return reply({"user_id": found.user_id, "devices": devices})

    @bp.route("/_matrix/client/v1/admin/suspend/<user_id>", methods=["GET"])
    async def get_suspended(user_id: str) -> Response:
        """GET /_matrix/client/v1/admin/suspend/{userId} (spec: getAdminSuspendUser)."""
        requester = await authenticate(sessions)
        return reply({"suspended": await admin.suspended(requester, user_id)})

    @bp.route("/_matrix/client/v1/admin/suspend/<user_id>", methods=["PUT"])
    async def put_suspended(user_id: str) -> Response:
        """PUT /_matrix/client/v1/admin/suspend/{userId} (spec: setAdminSuspendUser)."""
        requester = await authenticate(sessions)
        value = await _required_bool("suspended")
        await admin.set_suspended(requester, user_id, value)
        return reply({"suspended": value})

    @bp.route("/_matrix/client/v1/admin/lock/<user_id>", methods=["GET"])
    async def get_locked(user_id: str) -> Response:
        """GET /_matrix/client/v1/admin/lock/{userId} (spec: getAdminLockUser)."""
        requester = await authenticate(sessions)
        return reply({"locked": await admin.locked(requester, user_id)})

    @bp.route("/_matrix/client/v1/admin/lock/<user_id>", methods=["PUT"])
    async def put_locked(user_id: str) -> Response:
        """PUT /_matrix/client/v1/admin/lock/{userId} (spec: setAdminLockUser)."""
        requester = await authenticate(sessions)
        value = await _required_bool("locked")
        await admin.set_locked(requester, user_id, value)
        return reply({"locked": value})

    return bp


async def _required_bool(name: str) -> bool:
    body = await json_body()
    if name not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, f"Missing {name}")
    return body.opt_bool(name)
