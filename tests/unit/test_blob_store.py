"""The blob store: content addressing, streaming writes, limits, sweeping."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trioserver.storage.blob_store import WRITE_BUFFER, BlobStore, BlobTooLarge


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def files(store: BlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


async def test_write_is_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "media")
    data = os.urandom(WRITE_BUFFER * 2 + 17)
    sha = hashlib.sha256(data).hexdigest()
    first = await store.write_stream(chunks(data[:1000], data[1000:]), max_size=len(data))
    second = await store.write_stream(chunks(data), max_size=len(data))
    assert first == second
    assert first.sha256 == sha
    assert first.size == len(data)
    assert files(store) == [tmp_path / "media" / sha[:2] / sha[2:4] / sha]
    assert store.read_bytes(sha) == data
    streamed = b"".join([part async for part in store.stream(sha, chunk_size=4096)])
    assert streamed == data


async def test_over_the_limit_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "media")
    with pytest.raises(BlobTooLarge):
        await store.write_stream(chunks(b"x" * 10, b"y" * 10), max_size=15)
    assert files(store) == []


async def test_a_failing_stream_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "media")

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await store.write_stream(broken(), max_size=100)
    assert files(store) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "AB" * 32, "a" * 63, "", "g" * 64])
def test_only_hex_digests_name_files(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        BlobStore(tmp_path).path_for(name)


def test_sweep_keeps_referenced_and_recent_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "media")
    keep, drop = store.write_bytes(b"keep"), store.write_bytes(b"drop")
    assert store.sweep(lambda sha: sha == keep.sha256) == (0, 0)  # both younger than grace
    assert store.sweep(lambda sha: sha == keep.sha256, grace_s=0) == (1, 4)
    assert [sha for sha, _ in store.iter_blobs()] == [keep.sha256]
    assert not store.exists(drop.sha256)
