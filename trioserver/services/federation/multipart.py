"""multipart/mixed bodies of the federation media endpoints (Server-Server API, "Content
Repository"): a JSON metadata part, then the file part.

`encode` frames a file for our responses; `read_file_part` parses a peer's response as it
streams, yielding the file bytes without holding them whole in memory. Neither touches the
network: both work on async iterables of bytes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from email.message import Message

# Bounds for everything before the file bytes: a peer cannot make us buffer much.
MAX_HEADER_BYTES = 16 * 1024
MAX_METADATA_BYTES = 64 * 1024
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{1,70}")


class MultipartError(Exception):
    """The body is not the two-part multipart/mixed the spec describes."""


@dataclass(frozen=True)
class FilePart:
    """The headers of the file part (lower-cased names) and an iterator over its bytes."""

    headers: dict[str, str]
    body: AsyncIterator[bytes]


def new_boundary() -> str:
    return secrets.token_hex(16)


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart/mixed Content-Type; MultipartError otherwise."""
    msg = Message()
    msg["content-type"] = content_type
    if msg.get_content_type() != "multipart/mixed":
        raise MultipartError(f"not multipart/mixed: {content_type[:100]!r}")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY.fullmatch(boundary):
        raise MultipartError("missing or invalid boundary")
    return boundary


def frame(boundary: str, file_headers: dict[str, str]) -> tuple[bytes, bytes]:
    """(bytes before the file, bytes after it) of a response carrying `{}` as metadata."""
    head = "".join(f"{k}: {v}\r\n" for k, v in file_headers.items())
    before = (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
              f"--{boundary}\r\n{head}\r\n").encode()
    return before, f"\r\n--{boundary}--\r\n".encode()


class _Buffered:
    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._it = chunks.__aiter__()
        self.buf = bytearray()

    async def fill(self) -> bool:
        try:
            chunk = await self._it.__anext__()
        except StopAsyncIteration:
            return False
        self.buf += chunk
        return True

    async def until(self, marker: bytes, limit: int) -> bytes:
        """Bytes before `marker` (consumed along with it), at most `limit` of them."""
        start = 0
        while (i := self.buf.find(marker, start)) < 0:
            if len(self.buf) > limit + len(marker):
                raise MultipartError("part too large")
            start = max(0, len(self.buf) - len(marker) + 1)
            if not await self.fill():
                raise MultipartError("body ended early")
        data = bytes(self.buf[:i])
        del self.buf[:i + len(marker)]
        return data


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed part header")
        headers[name.strip().lower()] = value.strip()
    return headers


async def read_file_part(chunks: AsyncIterable[bytes], boundary: str) -> FilePart:
    """Skip the metadata part and return the file part, its body still streaming."""
    reader = _Buffered(chunks)
    delimiter = f"--{boundary}".encode()
    await reader.until(delimiter + b"\r\n", MAX_METADATA_BYTES)  # preamble
    await reader.until(b"\r\n\r\n", MAX_HEADER_BYTES)  # metadata headers (JSON, ignored)
    await reader.until(b"\r\n" + delimiter + b"\r\n", MAX_METADATA_BYTES)
    if reader.buf.startswith(b"\r\n"):  # a file part without headers
        del reader.buf[:2]
        headers: dict[str, str] = {}
    else:
        headers = _parse_headers(await reader.until(b"\r\n\r\n", MAX_HEADER_BYTES))
    return FilePart(headers, _body(reader, b"\r\n" + delimiter))


async def _body(reader: _Buffered, end: bytes) -> AsyncIterator[bytes]:
    # Everything but a possible partial `end` at the tail of the buffer is file content.
    while True:
        i = reader.buf.find(end)
        if i >= 0:
            if i:
                yield bytes(reader.buf[:i])
            return
        keep = len(end) - 1
        if len(reader.buf) > keep:
            data = bytes(reader.buf[:-keep])
            del reader.buf[:-keep]
            yield data
        if not await reader.fill():
            raise MultipartError("body ended before the closing boundary")
