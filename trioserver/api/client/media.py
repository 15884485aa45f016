"""The content repository (spec 1.28): uploads, authenticated and legacy downloads, thumbnails.

Uploads stream the request body into the blob store (never whole in memory); their size limit
is `media.max_upload_size`, not `max_request_body_bytes` (see `MediaAwareRequest` in app.py).
Downloads stream from the blob store with headers that keep served content from running as
part of any web page: a sandboxing CSP, nosniff, and `attachment` for all but safe types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from quart import Blueprint, Response, request

from trioserver.api.http import authenticate, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.media import Content, MediaRepository

LEGACY = "/_matrix/media/v3"
AUTHED = "/_matrix/client/v1/media"
UPLOAD_PATHS = (f"{LEGACY}/upload",)

CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
       "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")
# Served `inline` (a browser may render them); everything else is an `attachment`.
INLINE_TYPES = frozenset({
    "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})


def content_disposition(content_type: str, filename: str | None) -> str:
    """`inline` or `attachment`, with the filename per RFC 6266 / RFC 5987."""
    base = content_type.split(";", 1)[0].strip().lower()
    kind = "inline" if base in INLINE_TYPES else "attachment"
    if not filename:
        return kind
    parts = [kind]
    if filename.isascii() and filename.isprintable() and not any(c in filename for c in '"\\;'):
        parts.append(f'filename="{filename}"')
    parts.append(f"filename*=utf-8''{quote(filename, safe='')}")
    return "; ".join(parts)


def serve(media: MediaRepository, content: Content, filename: str | None = None) -> Response:
    body: AsyncIterator[bytes] = media.stream(content)
    response = Response(body, status=200, content_type=content.content_type)
    response.headers["Content-Length"] = str(content.size)
    response.headers["Content-Disposition"] = content_disposition(
        content.content_type, filename or content.filename)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


def int_arg(name: str, *, required: bool = False, default: int = 0) -> int:
    raw = request.args.get(name)
    if raw is None:
        if required:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{name}'")
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise MatrixError(400, Codes.INVALID_PARAM, f"'{name}' must be a non-negative integer")
    return int(raw)


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise MatrixError(400, Codes.INVALID_PARAM, f"'{name}' must be true or false")
    return raw == "true"


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("media", __name__)
    media = services.media
    sessions = services.sessions

    @bp.route(f"{LEGACY}/upload", methods=["POST"])
    async def upload() -> Response:
        """POST /_matrix/media/v3/upload (spec: uploadContent)."""
        requester = await authenticate(sessions)
        uri = await media.upload(requester.user_id, request.body,
                                 content_type=request.headers.get("Content-Type"),
                                 filename=request.args.get("filename"))
        return reply({"content_uri": uri})

    @bp.route(f"{LEGACY}/upload/<server_name>/<media_id>", methods=["PUT"])
    async def upload_to(server_name: str, media_id: str) -> Response:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId} (spec: uploadContentToMXC)."""
        requester = await authenticate(sessions)
        await media.upload_to(requester.user_id, server_name, media_id, request.body,
                              content_type=request.headers.get("Content-Type"),
                              filename=request.args.get("filename"))
        return reply({})

    @bp.route("/_matrix/media/v1/create", methods=["POST"])
    async def create() -> Response:
        """POST /_matrix/media/v1/create (spec: createContent)."""
        requester = await authenticate(sessions)
        uri, expires = await media.create(requester.user_id)
        return reply({"content_uri": uri, "unused_expires_at": expires})

    @bp.route(f"{AUTHED}/config", methods=["GET"])
    @bp.route(f"{LEGACY}/config", methods=["GET"])
    async def config() -> Response:
        """GET /_matrix/client/v1/media/config (getConfigAuthed), legacy v3 (getConfig)."""
        await authenticate(sessions, allow_guest=True)
        return reply(media.limits())

    async def download(server_name: str, media_id: str, file_name: str | None,
                       *, authed: bool) -> Response:
        if authed:
            await authenticate(sessions, allow_guest=True)
        row = await media.lookup(server_name, media_id, unauthenticated=not authed,
                                 timeout_ms=int_arg("timeout_ms", default=20_000))
        return serve(media, media.content(row), file_name)

    async def thumbnail(server_name: str, media_id: str, *, authed: bool) -> Response:
        if authed:
            await authenticate(sessions, allow_guest=True)
        width, height = int_arg("width", required=True), int_arg("height", required=True)
        method, animated = request.args.get("method", "scale"), _bool_arg("animated")
        row = await media.lookup(server_name, media_id, unauthenticated=not authed,
                                 timeout_ms=int_arg("timeout_ms", default=20_000))
        content = await media.thumbnail(row, width, height, method, animated)
        return serve(media, content)

    @bp.route(f"{AUTHED}/download/<server_name>/<media_id>", methods=["GET"])
    @bp.route(f"{AUTHED}/download/<server_name>/<media_id>/<file_name>", methods=["GET"])
    async def download_authed(server_name: str, media_id: str,
                              file_name: str | None = None) -> Response:
        """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]."""
        return await download(server_name, media_id, file_name, authed=True)

    @bp.route(f"{LEGACY}/download/<server_name>/<media_id>", methods=["GET"])
    @bp.route(f"{LEGACY}/download/<server_name>/<media_id>/<file_name>", methods=["GET"])
    async def download_legacy(server_name: str, media_id: str,
                              file_name: str | None = None) -> Response:
        """GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}] (deprecated)."""
        return await download(server_name, media_id, file_name, authed=False)

    @bp.route(f"{AUTHED}/thumbnail/<server_name>/<media_id>", methods=["GET"])
    async def thumbnail_authed(server_name: str, media_id: str) -> Response:
        """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId} (getContentThumbnail)."""
        return await thumbnail(server_name, media_id, authed=True)

    @bp.route(f"{LEGACY}/thumbnail/<server_name>/<media_id>", methods=["GET"])
    async def thumbnail_legacy(server_name: str, media_id: str) -> Response:
        """GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (deprecated)."""
        return await thumbnail(server_name, media_id, authed=False)

    return bp
