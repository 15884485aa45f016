"""create_app(services): the QuartTrio application, its blueprints and its one error handler."""

from __future__ import annotations

import logging
import secrets

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from trioserver.api.client import (
    account,
    account_data,
    admin,
    appservice,
    dehydrated_devices,
    devices,
    directory,
    discovery,
    health,
    hierarchy,
    key_backup,
    keys,
    login,
    login_token,
    media,
    openid,
    presence,
    profile,
    push_rules,
    pushers,
    receipts,
    register,
    relations,
    room_events,
    rooms,
    search,
    sliding_sync,
    status,
    synapse_admin,
    sync,
    thirdparty,
    threepid,
    to_device,
    typing_notifications,
    user_directory,
    voip,
)
from trioserver.api.federation import events as federation_events
from trioserver.api.federation import keys as federation_keys
from trioserver.api.federation import keys_e2ee as federation_keys_e2ee
from trioserver.api.federation import media as federation_media
from trioserver.api.federation import query as federation_query
from trioserver.api.federation import rooms as federation_rooms
from trioserver.api.federation import version as federation_version
from trioserver.api.http import reply
from trioserver.api.observe import ROUTE_KEY, annotate
from trioserver.api.routing import RawPathMap, restore_slashes
from trioserver.api.streaming import BackPressureHTTPConnection, media_aware_request
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services

log = logging.getLogger("trioserver.http")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}

BODY_GRACE_S = 0.05
SEND_TIMEOUT_S = 30.0



def _http_error(e: HTTPException) -> MatrixError:
    status = e.code or 500
    if status == 404:
        return MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    if status == 405:
        return MatrixError(405, Codes.UNRECOGNIZED, "Unrecognized request: method not allowed")
    if status == 413:
        return MatrixError(413, Codes.TOO_LARGE, "Request body too large")
    return MatrixError(status, Codes.UNKNOWN, e.description or "Bad request")


class _App(QuartTrio):
    url_map_class = RawPathMap


def create_app(services: Services) -> QuartTrio:
    app = _App("trioserver")
    app.url_value_preprocessor(restore_slashes)
    # Identifiers in paths (device IDs, keys in base64) may begin or end with '/', which
    # arrives percent-encoded; merging the decoded "//" would redirect instead of routing.
    app.url_map.merge_slashes = False
    app.request_class = media_aware_request(media.UPLOAD_PATHS,
                                            services.config.media.max_upload_size)
    app.asgi_http_class = BackPressureHTTPConnection
    app.config["MAX_CONTENT_LENGTH"] = services.config.max_request_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["BODY_TIMEOUT"] = 60
    for module in (health, discovery, register, login, account, devices, profile, rooms,
                   room_events, directory, sync, sliding_sync, status, keys,
                   account_data, typing_notifications, presence, to_device, receipts,
                   push_rules, key_backup, dehydrated_devices, media, openid, hierarchy,
                   relations):
        app.register_blueprint(module.create_blueprint(services))
    for module in (pushers, user_directory):
        app.register_blueprint(module.create_blueprint(services))
    for module in (admin, login_token, voip, threepid, synapse_admin):
        app.register_blueprint(module.create_blueprint(services))
    for module in (federation_keys, federation_version, federation_rooms, federation_events,
                   federation_keys_e2ee):
        app.register_blueprint(module.create_blueprint(services))
    for module in (federation_media, federation_query):
        app.register_blueprint(module.create_blueprint(services))
    app.register_blueprint(search.create_blueprint(services))
    app.register_blueprint(appservice.create_blueprint(services))
    app.register_blueprint(thirdparty.create_blueprint(services))

    @app.before_request
    async def _start() -> Response | None:
        g.request_id = secrets.token_hex(6)
        if request.url_rule is not None:
            annotate(request.scope, ROUTE_KEY, request.url_rule.rule)  # the metrics' label
        if request.method == "OPTIONS":
            # CORS preflight: answered for every path, known or not.
            return reply({})
        return None

    @app.after_request
    async def _cors(response: Response) -> Response:
        response.headers.update(CORS_HEADERS)
        return response

    @app.errorhandler(Exception)
    async def _error(e: Exception) -> Response:
        if isinstance(e, HTTPException):
            e = _http_error(e)
        if isinstance(e, MatrixError):
            response = reply(e.to_json(), e.status)
            retry_ms = e.extra.get("retry_after_ms")
            if e.status == 429 and isinstance(retry_ms, int):
                # Spec v1.10 (MSC4041): the header too, in whole seconds, rounded up.
                response.headers["Retry-After"] = str(max(1, -(-retry_ms // 1000)))
            return response
        request_id = getattr(g, "request_id", "-")
        log.exception("request %s %s %s failed", request_id, request.method, request.path)
        return reply({"errcode": Codes.UNKNOWN, "error": f"Internal error (request {request_id})"},
                     500)

    return app


def shield_send(app: ASGIFramework) -> ASGIFramework:
    """Wrap an ASGI app so its `send` cannot be cancelled half-way.

    Without this, a response with `Connection: close` is sent but hypercorn's close of the
    socket is cancelled together with the request scope, leaving the client waiting.
    """

    async def wrapped(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        # HTTP/1.x: a response that starts before the request body has all arrived (a 401 or
        # 413 answered early, a GET that carries a body) makes hypercorn close the connection
        # afterwards; say so in the response, or a client reusing the connection sees its next
        # request fail ("server disconnected"). A body already on its way gets a moment to
        # arrive first, so the usual early 401 keeps its connection.
        body_done = trio.Event()
        if scope.get("type") != "http" or scope.get("http_version") not in ("1.0", "1.1"):
            body_done.set()

        async def tracking() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.disconnect" or (
                    message["type"] == "http.request" and not message.get("more_body", False)):
                body_done.set()
            return message

        async def shielded(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not body_done.is_set():
                with trio.move_on_after(BODY_GRACE_S):
                    await body_done.wait()
                if not body_done.is_set():
                    headers = list(message.get("headers", ()))
                    if not any(name.lower() == b"connection" for name, _ in headers):
                        headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
            # Shielded from the request's cancellation, but bounded: a client that stops
            # reading cannot pin this task forever.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + SEND_TIMEOUT_S):
                await send(message)

        await app(scope, tracking, shielded)

    return wrapped
