"""VoIP: TURN server credentials (spec: voip.yaml)."""

from __future__ import annotations

import time

from quart import Blueprint, Response

from trioserver.api.http import authenticate, reply
from trioserver.services.container import Services
from trioserver.services.turn import turn_credentials


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("voip", __name__)
    voip = services.config.voip

    @bp.route("/_matrix/client/v3/voip/turnServer", methods=["GET"])
    async def turn_server() -> Response:
        """GET /_matrix/client/v3/voip/turnServer (spec: getTurnServer).

        Without a configured TURN server the answer is `{}`, as Synapse's.
        """
        requester = await authenticate(services.sessions, allow_guest=True)
        creds = turn_credentials(
            user_id=requester.user_id, uris=voip.turn_uris, shared_secret=voip.turn_shared_secret,
            lifetime_s=voip.turn_user_lifetime_s, now_s=int(time.time()),
        )
        if creds is None:
            return reply({})
        return reply({"username": creds.username, "password": creds.password,
                      "uris": creds.uris, "ttl": creds.ttl_s})

    return bp
