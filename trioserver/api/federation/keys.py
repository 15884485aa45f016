"""The key API: our signing keys, and the notary queries for other servers' keys.

Spec: Server-Server API, "Retrieving server keys" (`keys_server.yaml`, `keys_query.yaml`).
Unauthenticated, like every /_matrix/key endpoint.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, request

from trioserver.api.http import json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import is_valid_server_name
from trioserver.services.container import Services
from trioserver.services.federation.keys import KeyRing

# One POST may ask for this many servers; each may need an outbound fetch.
MAX_SERVERS_PER_QUERY = 100
MAX_CONCURRENT_FETCHES = 10


def _minimum_arg() -> int | None:
    raw = request.args.get("minimum_valid_until_ts")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise MatrixError(400, Codes.INVALID_PARAM, "minimum_valid_until_ts must be an integer")
    return int(raw)


def _criteria_minimum(criteria: Any) -> int | None:
    """The largest minimum_valid_until_ts asked for one server (None: none given)."""
    if not isinstance(criteria, dict):
        raise MatrixError(400, Codes.BAD_JSON, "server_keys values must be objects")
    found: list[int] = []
    for entry in criteria.values():
        if not isinstance(entry, dict):
            raise MatrixError(400, Codes.BAD_JSON, "query criteria must be objects")
        value = entry.get("minimum_valid_until_ts")
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise MatrixError(400, Codes.BAD_JSON, "minimum_valid_until_ts must be an integer")
        found.append(value)
    return max(found) if found else None


async def _query_many(keyring: KeyRing, wanted: dict[str, int | None]) -> list[dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {}
    limiter = trio.CapacityLimiter(MAX_CONCURRENT_FETCHES)

    async def one(server_name: str, minimum: int | None) -> None:
        async with limiter:
            results[server_name] = await keyring.notary_query(
                server_name, minimum_valid_until_ts=minimum)

    async with trio.open_nursery() as nursery:
        for server_name, minimum in wanted.items():
            nursery.start_soon(one, server_name, minimum)
    return [r for name in wanted for r in results.get(name, [])]


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_keys", __name__)
    keyring = services.keyring

    @bp.route("/_matrix/key/v2/server", methods=["GET"])
    @bp.route("/_matrix/key/v2/server/<key_id>", methods=["GET"])
    async def server_keys(key_id: str | None = None) -> Response:
        """GET /_matrix/key/v2/server (spec: getServerKey). The deprecated form with a key ID
        answers the same: all our keys."""
        return reply(keyring.own_key_response())

    @bp.route("/_matrix/key/v2/query/<server_name>", methods=["GET"])
    async def query_one(server_name: str) -> Response:
        """GET /_matrix/key/v2/query/{serverName} (spec: perspectivesKeyQuery)."""
        if not is_valid_server_name(server_name):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a valid server name")
        found = await keyring.notary_query(server_name, minimum_valid_until_ts=_minimum_arg())
        return reply({"server_keys": found})

    @bp.route("/_matrix/key/v2/query", methods=["POST"])
    async def query_many() -> Response:
        """POST /_matrix/key/v2/query (spec: bulkPerspectivesKeyQuery)."""
        body = await json_body()
        server_keys = body.opt_dict("server_keys")
        if server_keys is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'server_keys'")
        if len(server_keys) > MAX_SERVERS_PER_QUERY:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              f"At most {MAX_SERVERS_PER_QUERY} servers per query")
        wanted: dict[str, int | None] = {}
        for server_name, criteria in server_keys.items():
            if not is_valid_server_name(server_name):
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"{server_name!r} is not a server name")
            wanted[server_name] = _criteria_minimum(criteria)
        return reply({"server_keys": await _query_many(keyring, wanted)})

    return bp
