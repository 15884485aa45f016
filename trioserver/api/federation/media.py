"""Federation media endpoints (Server-Server API "Content Repository"): our media, served to
other servers as multipart/mixed (a JSON metadata part, then the file)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Blueprint, Response, request

from trioserver.api.client.media import CSP, content_disposition, int_arg
from trioserver.api.federation.auth import authenticate_origin
from trioserver.services.container import Services
from trioserver.services.federation.multipart import frame, new_boundary
from trioserver.services.media import Content, MediaRepository

PREFIX = "/_matrix/federation/v1/media"


def multipart(media: MediaRepository, content: Content) -> Response:
    boundary = new_boundary()
    before, after = frame(boundary, {
        "Content-Type": content.content_type,
        "Content-Disposition": content_disposition(content.content_type, content.filename),
    })

    async def body() -> AsyncIterator[bytes]:
        yield before
        async for chunk in media.stream(content):
            yield chunk
        yield after

    response = Response(body(), status=200,
                        content_type=f"multipart/mixed; boundary={boundary}")
    response.headers["Content-Length"] = str(len(before) + content.size + len(after))
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("federation_media", __name__)
    media = services.media
    ours = services.config.server_name

    @bp.route(f"{PREFIX}/download/<media_id>", methods=["GET"])
    async def download(media_id: str) -> Response:
        """GET /_matrix/federation/v1/media/download/{mediaId} (spec: getContent)."""
        await authenticate_origin(services)
        row = await media.lookup(ours, media_id,
                                 timeout_ms=int_arg("timeout_ms", default=20_000))
        return multipart(media, media.content(row))

    @bp.route(f"{PREFIX}/thumbnail/<media_id>", methods=["GET"])
    async def thumbnail(media_id: str) -> Response:
        """GET /_matrix/federation/v1/media/thumbnail/{mediaId} (spec: getContentThumbnail)."""
        await authenticate_origin(services)
        width, height = int_arg("width", required=True), int_arg("height", required=True)
        method = request.args.get("method", "scale")
        animated = request.args.get("animated", "false") == "true"
        row = await media.lookup(ours, media_id,
                                 timeout_ms=int_arg("timeout_ms", default=20_000))
        return multipart(media, await media.thumbnail(row, width, height, method, animated))

    return bp
