"""Server discovery: versions, .well-known, capabilities (spec 1.1)."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.api.http import authenticate, reply
from trioserver.errors import not_found
from trioserver.services.container import Services
from trioserver.services.events.room_versions import CREATABLE_VERSIONS

SPEC_VERSIONS = [f"v1.{n}" for n in range(1, 20)]


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("discovery", __name__)
    config = services.config

    @bp.route("/_matrix/client/versions", methods=["GET"])
    async def versions() -> Response:
        """GET /_matrix/client/versions (spec: getVersions)."""
        return reply({"versions": SPEC_VERSIONS, "unstable_features": {
            # Simplified Sliding Sync (MSC4186) at its unstable path, as Element X expects.
            "org.matrix.simplified_msc3575": True,
            # Dehydrated devices (MSC3814, unstable prefix): clients look for this flag.
            "org.matrix.msc3814": True,
        }})

    @bp.route("/.well-known/matrix/client", methods=["GET"])
    async def wellknown_client() -> Response:
        """GET /.well-known/matrix/client (spec: getWellknown)."""
        base = config.well_known.client_base_url or services.info.base_url
        return reply({"m.homeserver": {"base_url": base}})

    @bp.route("/.well-known/matrix/server", methods=["GET"])
    async def wellknown_server() -> Response:
        """GET /.well-known/matrix/server (Server-Server API: delegation)."""
        if not config.well_known.server:
            raise not_found("No federation delegation is configured")
        return reply({"m.server": config.well_known.server})

    @bp.route("/_matrix/client/v3/capabilities", methods=["GET"])
    async def capabilities() -> Response:
        """GET /_matrix/client/v3/capabilities (spec: getCapabilities)."""
        requester = await authenticate(services.sessions, allow_guest=True)
        moderation: dict[str, object] = {}
        if not requester.is_guest and await services.account_admin.is_admin(requester.user_id):
            # Omitted for everyone else, as the spec asks when both would be false.
            moderation["m.account_moderation"] = {"suspend": True, "lock": True}
        return reply({
            "capabilities": {
                **moderation,
                "m.change_password": {"enabled": True},
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": not requester.is_guest},
                "m.profile_fields": {"enabled": True},
                "m.room_versions": {
                    "default": config.rooms.default_room_version,
                    "available": {v: "stable" for v in CREATABLE_VERSIONS},
                },
            }
        })

    return bp
