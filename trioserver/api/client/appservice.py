"""Client-Server API endpoints only application services call (spec: Application Service API).

POST /_matrix/client/v1/appservice/{appserviceId}/ping and
PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}.
"""

from __future__ import annotations

import time

import httpx
from quart import Blueprint, Response

from trioserver.api.http import authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError, forbidden
from trioserver.services.appservice.registration import Registration
from trioserver.services.container import Services
from trioserver.services.rooms.service import check_room_id
from trioserver.services.sessions import Requester

PING_TIMEOUT_S = 15.0
MAX_ERROR_BODY = 4096


def _own_appservice(services: Services, requester: Requester) -> Registration:
    reg = (services.appservices.by_id(requester.appservice_id)
           if requester.appservice_id else None)
    if reg is None:
        raise forbidden("Only application services may use this endpoint")
    return reg


async def ping_appservice(reg: Registration, transaction_id: str | None,
                          *, timeout_s: float = PING_TIMEOUT_S) -> int:
    """Call the appservice's POST /_matrix/app/v1/ping; the round trip in milliseconds."""
    if reg.url is None:
        raise MatrixError(400, "M_URL_NOT_SET", "Application service has no URL")
    body = {} if transaction_id is None else {"transaction_id": transaction_id}
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            r = await client.post(f"{reg.url}/_matrix/app/v1/ping", json=body,
                                  headers={"Authorization": f"Bearer {reg.hs_token}"})
    except httpx.TimeoutException:
        raise MatrixError(504, "M_CONNECTION_TIMEOUT", "Ping timed out") from None
    except httpx.HTTPError as e:
        raise MatrixError(502, "M_CONNECTION_FAILED", f"Ping failed: {type(e).__name__}") from None
    duration_ms = int((time.monotonic() - started) * 1000)
    if not 200 <= r.status_code < 300:
        error = MatrixError(502, "M_BAD_STATUS", f"Ping returned status {r.status_code}")
        # Set after construction: `status` is also MatrixError's own first parameter.
        error.extra.update(status=r.status_code, body=r.text[:MAX_ERROR_BODY])
        raise error
    return duration_ms


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("appservice", __name__)
    sessions = services.sessions

    @bp.route("/_matrix/client/v1/appservice/<appservice_id>/ping", methods=["POST"])
    async def ping(appservice_id: str) -> Response:
        """POST /_matrix/client/v1/appservice/{appserviceId}/ping (spec: appservicePing)."""
        requester = await authenticate(sessions)
        reg = _own_appservice(services, requester)
        if reg.id != appservice_id:
            raise forbidden("The access token does not belong to this application service")
        body = await json_body(optional=True)
        duration = await ping_appservice(reg, body.opt_str("transaction_id", max_len=255))
        # It is reachable: transactions held back by a failure back-off go out now.
        services.appservice_delivery.retry_now(reg.id)
        return reply({"duration_ms": duration})

    @bp.route("/_matrix/client/v3/directory/list/appservice/<network_id>/<room_id>",
              methods=["PUT"])
    async def network_visibility(network_id: str, room_id: str) -> Response:
        """PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}
        (spec: updateAppserviceRoomDirectoryVisibility).

        Records the room on the appservice's list for that network (persisted), separate from
        the server's own list as in Synapse: /publicRooms shows it with that network's
        third_party_instance_id ("{appservice id}|{networkId}") or include_all_networks.
        """
        requester = await authenticate(sessions)
        reg = _own_appservice(services, requester)
        room_id = check_room_id(room_id)
        body = await json_body()
        visibility = body.req_str("visibility")
        if visibility not in ("public", "private"):
            raise MatrixError(400, Codes.INVALID_PARAM, "visibility must be public or private")
        # The appservice acts for its network, not as a room member: no power-level check.
        # An unknown room is 404 M_NOT_FOUND (the list refers to rooms of this server).
        await services.directory.set_network_published(reg.id, network_id, room_id,
                                                       visibility == "public")
        return reply({})

    return bp
