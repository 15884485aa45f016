"""Authentication of federation requests at the HTTP edge (X-Matrix, Server-Server API
"Request Authentication")."""

from __future__ import annotations

from quart import request

from trioserver.api.observe import USER_KEY, annotate
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.federation.errors import FederationAuthError
from trioserver.services.federation.request_auth import verify_request


def request_target() -> str:
    """The request target as the client sent it: raw path, then `?` and the query string.

    The signature covers these bytes, so they are taken from the ASGI scope undecoded.
    """
    scope = request.scope
    raw_path = scope.get("raw_path") or request.path.encode()
    query = scope.get("query_string") or b""
    target = raw_path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def authenticate_origin(services: Services) -> str:
    """The server name that signed the current request; 401 M_UNAUTHORIZED otherwise.

    Reads the method, the raw request target, every Authorization header and the body (kept
    cached: the endpoint can still read it). With federation disabled every authenticated
    federation endpoint answers 404 M_UNRECOGNIZED, as if it did not exist.
    """
    if not services.config.federation.enabled:
        raise MatrixError(404, Codes.UNRECOGNIZED, "Federation is disabled on this server")
    body = await request.get_data(True, False, False)  # cached: the endpoint reads it too
    try:
        origin = await verify_request(
            services.keyring,
            method=request.method,
            uri=request_target(),
            headers=request.headers.items(),
            content=body or None,
            our_server_name=services.config.server_name,
        )
    except FederationAuthError as e:
        raise MatrixError(401, Codes.UNAUTHORIZED, str(e)) from None
    annotate(request.scope, USER_KEY, origin)  # the access log names the origin server
    # One busy or hostile server cannot take all of this server's time.
    services.limiter.check("federation", origin, services.config.rate_limits.federation_per_origin)
    return origin
