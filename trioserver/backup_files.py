"""File plumbing shared by `trioserver backup` and `restore`: the manifest, private copies,
and moving content-addressed blobs by hard link or copy."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trioserver.storage.blob_store import BlobStore

MANIFEST = "backup.json"
DATABASE = "trioserver.db"
SIGNING_KEY = "signing.key"
MEDIA = "media"
FORMAT = 1

# Hard links are refused across filesystems (EXDEV) and by some filesystems (EPERM, ENOTSUP).
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK}


class BackupError(Exception):
    """What went wrong, as one line for the operator."""


@dataclass
class BlobCopy:
    files: int = 0
    bytes: int = 0
    linked: bool = True  # every file was hard-linked (False once one had to be copied)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_private(src: Path, dst: Path) -> None:
    """Copy a file to a new `dst` readable only by its owner (0600), fsynced."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
        shutil.copyfileobj(inp, out, 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())


def copy_blobs(source: BlobStore, dest: BlobStore, hashes: Iterable[str]) -> BlobCopy:
    """Put each blob of `hashes` from `source` into `dest`: hard links where the filesystem
    allows (blobs are immutable, so sharing an inode is safe), copies otherwise.

    Blobs already in `dest` are kept (same name, same bytes). Raises BackupError naming how
    many blobs were missing from `source`.
    """
    result = BlobCopy()
    missing: list[str] = []
    touched_dirs: set[Path] = set()
    try_link = True
    for sha in sorted(hashes):
        src, dst = source.path_for(sha), dest.path_for(sha)
        if not src.is_file():
            missing.append(sha)
            continue
        for directory in (dest.root, dst.parent.parent, dst.parent):
            directory.mkdir(mode=0o700, exist_ok=True)
        touched_dirs.add(dst.parent)
        result.files += 1
        result.bytes += src.stat().st_size
        if dst.exists():
            continue
        if try_link:
            try:
                os.link(src, dst)
                continue
            except OSError as e:
                if e.errno not in _NO_LINK:
                    raise
                try_link = False
        result.linked = False
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        fsync_path(tmp)
        os.replace(tmp, dst)
    for directory in touched_dirs:
        fsync_path(directory)
    if missing:
        raise BackupError(
            f"{len(missing)} media file(s) are missing from {source.root} (first: {missing[0]});"
            " was a media purge running? try again"
        )
    return result


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    path = directory / MANIFEST
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{directory} is not a trioserver backup (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BackupError(f"{path} is unreadable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: not a backup manifest this trioserver understands")
    return manifest
