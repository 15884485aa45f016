"""Content-addressed files: `<root>/ab/cd/<sha256>`, written via tmp + fsync + rename.

A blob's name is the sha256 of its bytes, so identical content is stored once and a name can
never point outside the store (callers pass hashes read from the database, and `path_for`
refuses anything that is not 64 lowercase hex digits). Writes stream: bytes are hashed and
written in a worker thread a buffer at a time, never held whole in memory. A write that fails
or goes over its size limit leaves no file behind.

Blob deletion is the caller's business (the media repository knows which hashes are still
referenced); `sweep` removes files no longer wanted, sparing ones younger than a grace period so
a blob written just before its database row is inserted is never swept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import trio

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Bytes handed to the worker thread at once: large enough to amortise the thread hop, small
# enough that many concurrent uploads stay cheap.
WRITE_BUFFER = 1024 * 1024
READ_CHUNK = 256 * 1024


class BlobTooLarge(Exception):
    """The stream went over the size limit; nothing was stored."""


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _PendingBlob:
    """A temp file being written and hashed; finished by `commit` or thrown away by `discard`."""

    def __init__(self, tmp_dir: Path) -> None:
        self.path = tmp_dir / f"upload-{secrets.token_hex(8)}.tmp"
        self.file: BinaryIO = open(self.path, "xb")  # noqa: SIM115 - closed by commit/discard
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)
        self.size += len(data)

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"

    def ensure_dirs(self) -> None:
        self.tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    # -- writes ---------------------------------------------------------------------------

    async def write_stream(self, chunks: AsyncIterable[bytes], *, max_size: int) -> Blob:
        """Store the bytes of `chunks`; `BlobTooLarge` (nothing kept) past `max_size` bytes."""
        await trio.to_thread.run_sync(self.ensure_dirs)
        pending = await trio.to_thread.run_sync(_PendingBlob, self.tmp_dir)
        try:
            buffer = bytearray()
            received = 0
            async for chunk in chunks:
                received += len(chunk)
                if received > max_size:
                    raise BlobTooLarge
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    data, buffer = bytes(buffer), bytearray()
                    await trio.to_thread.run_sync(pending.write, data)
            if buffer:
                await trio.to_thread.run_sync(pending.write, bytes(buffer))
            with trio.CancelScope(shield=True):
                blob = await trio.to_thread.run_sync(self._commit, pending)
            return blob
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(pending.discard)
            raise

    def write_bytes(self, data: bytes) -> Blob:
        """Blocking write of a small blob (thumbnails, from a worker thread)."""
        self.ensure_dirs()
        pending = _PendingBlob(self.tmp_dir)
        try:
            pending.write(data)
            return self._commit(pending)
        except BaseException:
            pending.discard()
            raise

    def _commit(self, pending: _PendingBlob) -> Blob:
        pending.file.flush()
        os.fsync(pending.file.fileno())
        pending.file.close()
        blob = Blob(pending.hash.hexdigest(), pending.size)
        target = self.path_for(blob.sha256)
        if target.exists():
            # Identical content is already stored: keep one copy, and refresh its mtime so a
            # concurrent sweep's grace period protects it until this upload's row exists.
            pending.discard()
            os.utime(target)
            return blob
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Concurrent writers of the same bytes both rename onto the same name: either wins.
        os.replace(pending.path, target)
        _fsync_dir(target.parent)
        return blob

    # -- reads ----------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def read_bytes(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    async def stream(self, sha256: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """The blob's bytes, a chunk at a time, read in a worker thread."""
        f = await trio.to_thread.run_sync(open, self.path_for(sha256), "rb")
        try:
            while True:
                data: bytes = await trio.to_thread.run_sync(f.read, chunk_size)
                if not data:
                    return
                yield data
        finally:
            f.close()

    # -- housekeeping ---------------------------------------------------------------------

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """(sha256, size) of every stored blob."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/??/*"):
            if _SHA256.fullmatch(path.name) and path.is_file():
                yield path.name, path.stat().st_size

    def sweep(self, keep: Callable[[str], bool], *, grace_s: float = 3600.0) -> tuple[int, int]:
        """Delete blobs for which `keep(sha)` is false and older than `grace_s`; (files, bytes)."""
        cutoff = time.time() - grace_s
        files = freed = 0
        for sha, size in list(self.iter_blobs()):
            path = self.path_for(sha)
            if keep(sha) or path.stat().st_mtime > cutoff:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                files += 1
                freed += size
        # Temp files of uploads that died with their process.
        if self.tmp_dir.is_dir():
            for tmp in self.tmp_dir.iterdir():
                if tmp.stat().st_mtime < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
        return files, freed
