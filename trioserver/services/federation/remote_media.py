"""Fetching other servers' media on demand (Server-Server API "Content Repository").

The authenticated `/_matrix/federation/v1/media/download/{mediaId}` is asked first; a server
that does not know it (404/405/400 M_UNRECOGNIZED) is asked through the deprecated
unauthenticated `/_matrix/media/v3/download/{serverName}/{mediaId}`. The bytes stream into the
blob store under `media.max_upload_size`; the caller records the row (remote media are rows
whose server_name is the origin's, with no local uploader).

A server that cannot be reached is not asked again at once: for `FIRST_BACKOFF_S` after a
failure (doubling per further failure up to `MAX_BACKOFF_S`), its media answer 502 at once
instead of every avatar of a dead server holding a client request for the connect timeout. A
successful fetch from it ends the back-off.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote

import httpx
import trio

from trioserver.errors import Codes, MatrixError
from trioserver.services.federation.client import FederationClient, raise_for_error
from trioserver.services.federation.errors import FederationRequestError, FederationUnreachable
from trioserver.services.federation.multipart import MultipartError, boundary_of, read_file_part
from trioserver.storage.blob_store import Blob, BlobStore, BlobTooLarge

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 300.0
DOWNLOAD_WAIT_MS = 20_000
_UNRECOGNIZED_STATUSES = (400, 404, 405)
FIRST_BACKOFF_S = 30.0
MAX_BACKOFF_S = 600.0


@dataclass(frozen=True)
class Fetched:
    """A remote file now in the blob store, and how its origin described it."""

    blob: Blob
    content_type: str | None
    filename: str | None


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    msg = Message()
    msg["content-disposition"] = disposition
    name = msg.get_filename()
    return name if isinstance(name, str) else None


class RemoteMedia:
    def __init__(self, client: FederationClient, blobs: BlobStore, max_size: int, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self._client = client
        self._blobs = blobs
        self._max_size = max_size
        self._clock = clock
        # server -> (back off until, consecutive failures)
        self._down: dict[str, tuple[float, int]] = {}

    def _unreachable(self, server_name: str) -> None:
        _, failures = self._down.get(server_name, (0.0, 0))
        wait = min(FIRST_BACKOFF_S * 2 ** min(failures, 10), MAX_BACKOFF_S)
        self._down[server_name] = (self._clock() + wait, failures + 1)

    async def fetch(self, server_name: str, media_id: str) -> Fetched:
        """Download `mxc://server_name/media_id` into the blob store.

        Raises MatrixError: 404 if the origin has no such media, 502 if it cannot be reached,
        answers nonsense, or sends more than `max_size` bytes.
        """
        until, _ = self._down.get(server_name, (0.0, 0))
        if self._clock() < until:
            raise MatrixError(502, Codes.UNKNOWN, f"{server_name} could not be reached lately;"
                              f" trying again in {int(until - self._clock()) + 1} s")
        try:
            with trio.fail_after(FETCH_TIMEOUT_S):
                try:
                    fetched = await self._authenticated(server_name, media_id)
                except FederationRequestError as e:
                    if not (e.errcode == Codes.UNRECOGNIZED
                            and e.status in _UNRECOGNIZED_STATUSES):
                        raise
                    fetched = await self._legacy(server_name, media_id)
            self._down.pop(server_name, None)
            return fetched
        except FederationRequestError as e:
            self._down.pop(server_name, None)  # it answered: it is up
            if e.status == 404:
                raise MatrixError(404, Codes.NOT_FOUND, "Media not found") from None
            if e.errcode == Codes.TOO_LARGE:
                raise MatrixError(502, Codes.TOO_LARGE, str(e)) from None
            raise MatrixError(502, Codes.UNKNOWN,
                              f"{server_name} refused the media request: {e}") from None
        except (FederationUnreachable, trio.TooSlowError, httpx.HTTPError) as e:
            self._unreachable(server_name)
            raise MatrixError(502, Codes.UNKNOWN,
                              f"Could not fetch media from {server_name}: {e}") from None
        except MultipartError as e:
            raise MatrixError(502, Codes.UNKNOWN,
                              f"{server_name} sent an invalid media response: {e}") from None

    async def _authenticated(self, server_name: str, media_id: str) -> Fetched:
        path = f"/_matrix/federation/v1/media/download/{quote(media_id, safe='')}"
        async with self._client.stream(server_name, path,
                                       query={"timeout_ms": str(DOWNLOAD_WAIT_MS)}) as response:
            await raise_for_error(response, f"GET {server_name}{path}")
            part = await read_file_part(response.aiter_bytes(),
                                        boundary_of(response.headers.get("content-type", "")))
            if "location" in part.headers:
                # A redirect to a CDN: following it would mean fetching arbitrary URLs.
                raise MultipartError("redirects to a Location are not followed")
            blob = await self._store(part.body)
        return Fetched(blob, part.headers.get("content-type"),
                       _filename(part.headers.get("content-disposition")))

    async def _legacy(self, server_name: str, media_id: str) -> Fetched:
        path = (f"/_matrix/media/v3/download/{quote(server_name, safe='')}/"
                f"{quote(media_id, safe='')}")
        query = {"allow_remote": "false", "allow_redirect": "false",
                 "timeout_ms": str(DOWNLOAD_WAIT_MS)}
        async with self._client.stream(server_name, path, query=query, sign=False) as response:
            await raise_for_error(response, f"GET {server_name}{path}")
            blob = await self._store(response.aiter_bytes())
        return Fetched(blob, response.headers.get("content-type"),
                       _filename(response.headers.get("content-disposition")))

    async def _store(self, chunks: AsyncIterator[bytes]) -> Blob:
        try:
            return await self._blobs.write_stream(chunks, max_size=self._max_size)
        except BlobTooLarge:
            raise FederationRequestError(
                502, Codes.TOO_LARGE,
                f"remote media larger than {self._max_size} bytes") from None
