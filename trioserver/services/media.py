"""The media repository (spec 1.28 "Content repository"): uploads, downloads, thumbnails.

Bytes go to the content-addressed blob store; metadata (who, what type, which sha256) to the
`media` table. A client's media id only ever selects a database row; the file is found by the
sha256 in that row, so no client string becomes a path.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import apsw
import trio

from trioserver.concurrency import KeyedSerializer
from trioserver.config import Media as MediaConfig
from trioserver.errors import Codes, MatrixError, forbidden
from trioserver.identifiers import is_valid_server_name
from trioserver.services import thumbnails
from trioserver.services.clock import now_ms
from trioserver.storage.blob_store import BlobStore, BlobTooLarge
from trioserver.storage.db import Database
from trioserver.storage.repositories import media as media_repo
from trioserver.storage.repositories.media import MediaExists, MediaRow, ThumbnailRow

if TYPE_CHECKING:
    from trioserver.services.federation.remote_media import Fetched

# Downloads `mxc://{server}/{id}` of another server into the blob store.
RemoteFetch = Callable[[str, str], Awaitable["Fetched"]]

MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
MAX_FILENAME = 255
MAX_CONTENT_TYPE = 255
MAX_WAIT_MS = 60_000
# Thumbnails decode whole images: few at a time keeps memory bounded.
THUMBNAIL_WORKERS = 2


@dataclass(frozen=True)
class Content:
    """What a download or thumbnail serves: a blob and how to describe it."""

    sha256: str
    size: int
    content_type: str
    filename: str | None


def not_found() -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, "Media not found")


def check_media_id(media_id: str) -> None:
    if not MEDIA_ID.fullmatch(media_id):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid media id")


def check_server_name(server_name: str) -> None:
    if not is_valid_server_name(server_name):
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid server name")


class MediaRepository:
    def __init__(self, server_name: str, config: MediaConfig, db: Database, blobs: BlobStore,
                 serializer: KeyedSerializer) -> None:
        self.server_name = server_name
        self.config = config
        self.db = db
        self.blobs = blobs
        self.serializer = serializer
        self.started_ms = now_ms()
        self._thumb_limiter = trio.CapacityLimiter(THUMBNAIL_WORKERS)
        # Downloads waiting for an async upload: event and number of waiters, per id.
        self._uploaded: dict[str, tuple[trio.Event, int]] = {}
        # Set by the composition root when federation is on.
        self.remote_fetch: RemoteFetch | None = None
        thumbnails.configure(config.max_image_pixels)

    def mxc(self, media_id: str) -> str:
        return f"mxc://{self.server_name}/{media_id}"

    def limits(self) -> dict[str, int]:
        """GET /_matrix/client/v1/media/config."""
        return {"m.upload.size": self.config.max_upload_size}

    # -- uploads --------------------------------------------------------------------------

    async def _store(self, user_id: str, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
        limit = self.config.max_upload_size
        quota_left: int | None = None
        if self.config.user_quota_bytes:
            used = await self.db.read(partial(media_repo.bytes_used, uploader=user_id))
            quota_left = max(0, self.config.user_quota_bytes - used)
        try:
            blob = await self.blobs.write_stream(
                chunks, max_size=limit if quota_left is None else min(limit, quota_left))
        except BlobTooLarge:
            if quota_left is not None and quota_left < limit:
                raise forbidden("Media storage quota exceeded") from None
            raise MatrixError(413, Codes.TOO_LARGE,
                              f"Uploads are limited to {limit} bytes") from None
        return blob.sha256, blob.size

    @staticmethod
    def _describe(content_type: str | None, filename: str | None) -> tuple[str, str | None]:
        content_type = (content_type or "application/octet-stream").strip()
        if len(content_type) > MAX_CONTENT_TYPE or not content_type.isprintable():
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid Content-Type")
        if filename is not None and (len(filename) > MAX_FILENAME or not filename.isprintable()
                                     or "/" in filename):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid filename")
        return content_type, filename or None

    async def upload(self, user_id: str, chunks: AsyncIterable[bytes], *,
                     content_type: str | None, filename: str | None) -> str:
        """POST /_matrix/media/v3/upload: store the body under a new id; its mxc:// URI."""
        content_type, filename = self._describe(content_type, filename)
        sha256, size = await self._store(user_id, chunks)
        media_id = secrets.token_urlsafe(18)
        await self.db.write(partial(media_repo.insert, row=MediaRow(
            self.server_name, media_id, user_id, content_type, filename, size, sha256, now_ms(),
            None)))
        return self.mxc(media_id)

    async def stored_bytes(self) -> int:
        """Bytes of media and thumbnails the repository holds (for metrics)."""
        s = await self.db.read(media_repo.stats)
        return s.media_bytes + s.thumbnail_bytes

    async def create(self, user_id: str) -> tuple[str, int]:
        """POST /_matrix/media/v1/create: reserve an id; (mxc URI, unused_expires_at)."""
        now = now_ms()
        expires = now + self.config.unused_expires_s * 1000
        media_id = secrets.token_urlsafe(18)
        limit = self.config.max_pending_per_user

        def txn(conn: apsw.Connection) -> None:
            media_repo.delete_expired_pending(conn, now)
            if media_repo.count_pending(conn, user_id, now) >= limit:
                raise MatrixError(429, Codes.LIMIT_EXCEEDED,
                                  "Too many media ids waiting for an upload",
                                  retry_after_ms=60_000)
            media_repo.insert(conn, MediaRow(self.server_name, media_id, user_id, None, None,
                                             None, None, now, expires))

        await self.db.write(txn)
        return self.mxc(media_id), expires

    async def upload_to(self, user_id: str, server_name: str, media_id: str,
                        chunks: AsyncIterable[bytes], *, content_type: str | None,
                        filename: str | None) -> None:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: fill a created id, once."""
        check_media_id(media_id)
        content_type, filename = self._describe(content_type, filename)
        row = await self._row(server_name, media_id)
        if row is None or (row.expires_ts is not None and row.expires_ts <= now_ms()):
            raise not_found()
        if row.uploader != user_id:
            raise forbidden("This media id was created by another user")
        if row.uploaded:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")
        sha256, size = await self._store(user_id, chunks)
        filled = await self.db.write(partial(
            media_repo.fill_pending, server_name=server_name, media_id=media_id,
            content_type=content_type, filename=filename, size=size, sha256=sha256))
        if not filled:
            raise MatrixError(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")
        waiting = self._uploaded.pop(f"{server_name}/{media_id}", None)
        if waiting is not None:
            waiting[0].set()

    # -- downloads ------------------------------------------------------------------------

    async def _row(self, server_name: str, media_id: str) -> MediaRow | None:
        return await self.db.read(partial(media_repo.get, server_name=server_name,
                                          media_id=media_id))

    async def _remote_row(self, server_name: str, media_id: str) -> MediaRow | None:
        """The cached copy of another server's media, fetched from it on first request."""
        row = await self._row(server_name, media_id)
        if row is not None or self.remote_fetch is None:
            return row
        # One fetch per id however many clients ask at once; the others find the row.
        async with self.serializer.hold(f"remote_media:{server_name}/{media_id}"):
            row = await self._row(server_name, media_id)
            if row is not None:
                return row
            fetched = await self.remote_fetch(server_name, media_id)
            content_type, filename = self._describe_remote(fetched.content_type,
                                                           fetched.filename)
            row = MediaRow(server_name, media_id, "", content_type, filename, fetched.blob.size,
                           fetched.blob.sha256, now_ms(), None)
            with contextlib.suppress(MediaExists):
                await self.db.write(partial(media_repo.insert, row=row))
            return row

    @classmethod
    def _describe_remote(cls, content_type: str | None,
                         filename: str | None) -> tuple[str, str | None]:
        # A peer's description is kept only where it passes the checks uploads get.
        try:
            content_type, _ = cls._describe(content_type, None)
        except MatrixError:
            content_type = "application/octet-stream"
        try:
            _, filename = cls._describe(None, filename)
        except MatrixError:
            filename = None
        return content_type, filename

    async def lookup(self, server_name: str, media_id: str, *, timeout_ms: int = 20_000,
                     unauthenticated: bool = False) -> MediaRow:
        """The uploaded row behind an mxc URI, waiting up to `timeout_ms` for a pending upload.

        Another server's media is fetched over federation, except for unauthenticated
        requests while those are frozen (MSC3916): they see only what is already cached.
        """
        check_media_id(media_id)
        if server_name != self.server_name:
            check_server_name(server_name)
            if unauthenticated and self.config.freeze_unauthenticated:
                row = await self._row(server_name, media_id)
            else:
                row = await self._remote_row(server_name, media_id)
            if row is None or row.sha256 is None:
                raise not_found()
            return row
        row = await self._row(server_name, media_id)
        if row is not None and not row.uploaded:
            await self._wait_for_upload(f"{server_name}/{media_id}", timeout_ms)
            row = await self._row(server_name, media_id)
            if row is not None and not row.uploaded:
                if row.expires_ts is not None and row.expires_ts <= now_ms():
                    raise not_found()
                raise MatrixError(504, Codes.NOT_YET_UPLOADED, "Media has not been uploaded yet")
        if row is None or row.sha256 is None:
            raise not_found()
        if (unauthenticated and self.config.freeze_unauthenticated
                and row.created_ts >= self.started_ms):
            raise not_found()
        return row

    async def _wait_for_upload(self, key: str, timeout_ms: int) -> None:
        event, waiters = self._uploaded.get(key, (trio.Event(), 0))
        self._uploaded[key] = (event, waiters + 1)
        try:
            with trio.move_on_after(min(max(timeout_ms, 0), MAX_WAIT_MS) / 1000):
                await event.wait()
        finally:
            # The last waiter to leave forgets the event, so ids never uploaded do not pile up.
            current = self._uploaded.get(key)
            if current is not None and current[0] is event:
                if current[1] <= 1:
                    del self._uploaded[key]
                else:
                    self._uploaded[key] = (event, current[1] - 1)

    @staticmethod
    def content(row: MediaRow) -> Content:
        assert row.sha256 is not None
        assert row.size is not None
        return Content(row.sha256, row.size, row.content_type or "application/octet-stream",
                       row.filename)

    def stream(self, content: Content) -> AsyncIterator[bytes]:
        return self.blobs.stream(content.sha256)

    async def thumbnail(self, row: MediaRow, width: int, height: int, method: str,
                        animated: bool) -> Content:
        """A cached thumbnail of `row`, rendered once (in a worker thread) on first request."""
        if method not in thumbnails.METHODS:
            raise MatrixError(400, Codes.INVALID_PARAM, "method must be crop or scale")
        if width < 1 or height < 1:
            raise MatrixError(400, Codes.INVALID_PARAM, "width and height must be positive")
        width, height = min(width, thumbnails.MAX_DIMENSION), min(height, thumbnails.MAX_DIMENSION)
        original = self.content(row)
        if original.content_type not in thumbnails.THUMBNAIL_TYPES:
            raise MatrixError(400, Codes.UNKNOWN, "This content type cannot be thumbnailed")
        key = (row.server_name, row.media_id, width, height, method, animated)
        lookup = partial(media_repo.get_thumbnail, server_name=key[0], media_id=key[1],
                         width=width, height=height, method=method, animated=animated)
        async with self.serializer.hold("thumbnail:" + "/".join(map(str, key))):
            cached = await self.db.read(lookup)
            if cached is None:
                async with self._thumb_limiter:
                    cached = await trio.to_thread.run_sync(
                        self._render, original, width, height, method, animated)
                await self.db.write(partial(
                    media_repo.insert_thumbnail, server_name=key[0], media_id=key[1],
                    width=width, height=height, method=method, animated=animated,
                    thumb=cached))
        return Content(cached.sha256, cached.size, cached.content_type, None)

    def _render(self, original: Content, width: int, height: int, method: str,
                animated: bool) -> ThumbnailRow:
        source = self.blobs.path_for(original.sha256)
        max_pixels = self.config.max_image_pixels
        if (animated and original.size <= self.config.max_animated_thumbnail_bytes
                and thumbnails.is_animated(source, original.content_type, max_pixels)):
            return ThumbnailRow(original.content_type, original.size, original.sha256)
        thumb = thumbnails.render(source, original.content_type, width, height, method,
                                  max_pixels)
        blob = self.blobs.write_bytes(thumb.data)
        return ThumbnailRow(thumb.content_type, blob.size, blob.sha256)
