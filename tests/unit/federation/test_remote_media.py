"""Parsing peers' multipart/mixed media responses, and the fetch's fallbacks and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from trioserver.errors import MatrixError
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.errors import FederationUnreachable
from trioserver.services.federation.multipart import (
    MultipartError,
    boundary_of,
    frame,
    read_file_part,
)
from trioserver.services.federation.remote_media import FIRST_BACKOFF_S, RemoteMedia
from trioserver.storage.blob_store import BlobStore

FILE = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n--b0undar"
BOUNDARY = "b0undary"


def _body(file_headers: dict[str, str] | None = None, data: bytes = FILE) -> bytes:
    before, after = frame(BOUNDARY, file_headers or {"Content-Type": "image/png"})
    return before + data + after


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def _collect(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 10, 64, 1000, 100_000])
async def test_file_part_survives_any_chunking(chunk_size: int) -> None:
    part = await read_file_part(_chunks(_body(), chunk_size), BOUNDARY)
    assert part.headers == {"content-type": "image/png"}
    assert await _collect(part.body) == FILE


async def test_synapse_style_body_with_preamble_and_empty_file() -> None:
    body = (b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/json\r\n\r\n{}"
            b"\r\n--" + BOUNDARY.encode() + b"\r\nContent-Type: text/plain\r\n\r\n"
            b"\r\n--" + BOUNDARY.encode() + b"--\r\n")
    part = await read_file_part(_chunks(body, 5), BOUNDARY)
    assert await _collect(part.body) == b""


async def test_truncated_body_is_an_error() -> None:
    part = await read_file_part(_chunks(_body()[:-20], 50), BOUNDARY)
    with pytest.raises(MultipartError):
        await _collect(part.body)


def test_boundary_of() -> None:
    assert boundary_of('multipart/mixed; boundary="abc-1"') == "abc-1"
    for bad in ("application/json", "multipart/mixed", "multipart/mixed; boundary=\"a\x00\""):
        with pytest.raises(MultipartError):
            boundary_of(bad)


class FakeClient:
    """FederationClient.stream over canned responses, one per path; records the calls."""

    def __init__(self, responses: dict[str, httpx.Response]) -> None:
        self.responses = responses
        self.calls: list[tuple[str, bool]] = []

    @asynccontextmanager
    async def stream(self, destination: str, path: str, *, query: Any = None,
                     sign: bool = True) -> AsyncIterator[httpx.Response]:
        self.calls.append((path, sign))
        yield self.responses.get(path, httpx.Response(404, json={"errcode": "M_NOT_FOUND"}))


def _remote(tmp_path: Path, responses: dict[str, httpx.Response],
            max_size: int = 1 << 20) -> tuple[RemoteMedia, FakeClient, BlobStore]:
    fake = FakeClient(responses)
    blobs = BlobStore(tmp_path)
    return RemoteMedia(cast(FederationClient, fake), blobs, max_size), fake, blobs


NEW = "/_matrix/federation/v1/media/download/abc"
OLD = "/_matrix/media/v3/download/remote.example/abc"


def _multipart(headers: dict[str, str], data: bytes = FILE) -> httpx.Response:
    return httpx.Response(200, content=_body(headers, data), headers={
        "Content-Type": f"multipart/mixed; boundary={BOUNDARY}"})


async def test_fetch_through_the_authenticated_endpoint(tmp_path: Path) -> None:
    remote, fake, blobs = _remote(tmp_path, {NEW: _multipart({
        "Content-Type": "image/png",
        "Content-Disposition": "inline; filename*=utf-8''caf%C3%A9.png"})})
    fetched = await remote.fetch("remote.example", "abc")
    assert (fetched.content_type, fetched.filename) == ("image/png", "café.png")
    assert blobs.read_bytes(fetched.blob.sha256) == FILE
    assert fake.calls == [(NEW, True)]


async def test_unrecognized_falls_back_to_the_unauthenticated_endpoint(tmp_path: Path) -> None:
    remote, fake, blobs = _remote(tmp_path, {
        NEW: httpx.Response(404, json={"errcode": "M_UNRECOGNIZED"}),
        OLD: httpx.Response(200, content=b"old style", headers={
            "Content-Type": "text/plain", "Content-Disposition": 'attachment; filename="a.txt"'}),
    })
    fetched = await remote.fetch("remote.example", "abc")
    assert blobs.read_bytes(fetched.blob.sha256) == b"old style"
    assert fetched.filename == "a.txt"
    assert fake.calls == [(NEW, True), (OLD, False)]


async def test_not_found_is_not_retried(tmp_path: Path) -> None:
    remote, fake, _ = _remote(tmp_path, {})
    with pytest.raises(MatrixError) as e:
        await remote.fetch("remote.example", "abc")
    assert e.value.status == 404
    assert fake.calls == [(NEW, True)]


async def test_too_large_is_refused_and_nothing_kept(tmp_path: Path) -> None:
    remote, _, blobs = _remote(tmp_path, {NEW: _multipart({"Content-Type": "image/png"})},
                               max_size=len(FILE) - 1)
    with pytest.raises(MatrixError) as e:
        await remote.fetch("remote.example", "abc")
    assert (e.value.status, e.value.errcode) == (502, "M_TOO_LARGE")
    assert list(blobs.iter_blobs()) == []


async def test_location_redirects_are_not_followed(tmp_path: Path) -> None:
    remote, _, _ = _remote(tmp_path, {NEW: _multipart(
        {"Location": "https://cdn.example/x"}, data=b"")})
    with pytest.raises(MatrixError) as e:
        await remote.fetch("remote.example", "abc")
    assert e.value.status == 502


class DownClient:
    """A server that cannot be reached, then can."""

    def __init__(self) -> None:
        self.calls = 0
        self.up = False

    @asynccontextmanager
    async def stream(self, destination: str, path: str, *, query: Any = None,
                     sign: bool = True) -> AsyncIterator[httpx.Response]:
        self.calls += 1
        if not self.up:
            raise FederationUnreachable(destination, "connection refused")
        yield _multipart({"Content-Type": "image/png"})


async def test_an_unreachable_server_is_backed_off(tmp_path: Path) -> None:
    """After a failure its media answer 502 at once (no request) for FIRST_BACKOFF_S, then
    doubling; a success ends the back-off."""
    now = [100.0]
    down = DownClient()
    remote = RemoteMedia(cast(FederationClient, down), BlobStore(tmp_path), 1 << 20,
                         clock=lambda: now[0])

    async def status() -> int:
        try:
            await remote.fetch("down.example", "abc")
        except MatrixError as e:
            return e.status
        return 200

    assert await status() == 502
    assert down.calls == 1
    assert await status() == 502  # backed off: not asked
    assert down.calls == 1
    now[0] += FIRST_BACKOFF_S
    assert await status() == 502  # asked again, fails: now twice as long
    assert down.calls == 2
    now[0] += FIRST_BACKOFF_S
    assert await status() == 502
    assert down.calls == 2
    now[0] += FIRST_BACKOFF_S
    down.up = True
    assert await status() == 200
    assert await status() == 200
    assert down.calls == 4
    # The success ended the back-off: the next failure is asked at once.
    down.up = False
    assert await status() == 502
    assert down.calls == 5
    # Another server is not held up by this one's back-off.
    with pytest.raises(MatrixError):
        await remote.fetch("other.example", "abc")
    assert down.calls == 6
