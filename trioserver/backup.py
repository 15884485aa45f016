"""`trioserver backup DEST`: a consistent copy of a data directory, taken while the server runs.

What goes where: DEST/trioserver.db (one snapshot of the database, via SQLite's online backup
API), DEST/signing.key, DEST/media/ (the blobs the snapshot refers to) and DEST/backup.json
(versions, time, counts and sizes).

Order matters: the database is snapshotted first and blobs are copied after. The media
repository commits a row only once its blob is on disk, so every blob the snapshot refers to
already exists when we look for it (a concurrent `media purge` is the one exception, reported).

DEST rules: it must be outside the data directory and either not exist, be an empty directory,
or hold an earlier backup (it has a backup.json). Everything is written to a sibling
DEST.tmp-XXXX first and renamed into place only once the copy passed `PRAGMA quick_check`, so
an interrupted run never leaves a half-written backup under DEST's name.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from trioserver import __version__
from trioserver.backup_files import (
    DATABASE,
    FORMAT,
    MANIFEST,
    MEDIA,
    SIGNING_KEY,
    BackupError,
    copy_blobs,
    copy_private,
    fsync_path,
    write_manifest,
)
from trioserver.config import Config
from trioserver.storage.blob_store import BlobStore
from trioserver.storage.migrations import current_version
from trioserver.storage.repositories import maintenance
from trioserver.storage.repositories import media as media_repo
from trioserver.storage.repositories import users as users_repo
from trioserver.storage.snapshot import SnapshotError, copy_database

DEST_HELP = """\
DEST must be outside the data directory and must not exist, be an empty directory, or hold an
earlier backup (a directory with backup.json), which is replaced. The backup is written to
DEST.tmp-XXXX beside DEST and renamed into place once it passed PRAGMA quick_check. Media files
are hard-linked when DEST is on the same filesystem as the data directory, copied otherwise.
The server may keep running."""


def _check_dest(config: Config, dest: Path) -> None:
    data_dir = config.data_dir.resolve()
    if dest == data_dir or data_dir in dest.parents:
        raise BackupError(f"{dest} is inside the data directory {data_dir}")
    if not dest.exists():
        if not dest.parent.is_dir():
            raise BackupError(f"{dest.parent} does not exist")
        return
    if not dest.is_dir():
        raise BackupError(f"{dest} exists and is not a directory")
    if any(dest.iterdir()) and not (dest / MANIFEST).is_file():
        raise BackupError(f"{dest} is not empty and holds no earlier backup (no {MANIFEST})")


def _check_server_name(conn: apsw.Connection, server_name: str) -> None:
    """Refuse to label a database with the wrong server name (a forgotten --config)."""
    uid = users_repo.any_user_id(conn)
    if uid is not None and not uid.endswith(":" + server_name):
        raise BackupError(
            f"the database's users look like {uid} but the server name is {server_name}:"
            " pass the server's --config (or --server-name)"
        )


def _describe(db_path: Path, server_name: str) -> tuple[dict[str, Any], set[str]]:
    """Counts and versions of the copied database, and the blobs it refers to."""
    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        _check_server_name(conn, server_name)
        info = {
            "schema_version": current_version(conn),
            "counts": maintenance.table_counts(conn),
        }
        hashes = media_repo.referenced_hashes(conn)
    finally:
        conn.close()
    return info, hashes


def _build(config: Config, staging: Path) -> dict[str, Any]:
    started = time.monotonic()
    now = datetime.now(UTC)
    db_copy = staging / DATABASE
    copy_database(config.database_path, db_copy)
    db_done = time.monotonic()
    info, hashes = _describe(db_copy, config.server_name)
    key = config.data_dir / SIGNING_KEY
    has_key = key.is_file()
    if has_key:
        copy_private(key, staging / SIGNING_KEY)
    blobs = copy_blobs(BlobStore(config.data_dir / MEDIA), BlobStore(staging / MEDIA), hashes)
    return {
        "format": FORMAT,
        "trioserver_version": __version__,
        "server_name": config.server_name,
        "created": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "created_ts": int(now.timestamp() * 1000),
        **info,
        "database_bytes": db_copy.stat().st_size,
        "quick_check": "ok",
        "signing_key": has_key,
        "media_files": blobs.files,
        "media_bytes": blobs.bytes,
        "media_hard_linked": blobs.linked and blobs.files > 0,
        "database_seconds": round(db_done - started, 3),
        "seconds": round(time.monotonic() - started, 3),
    }


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Rename the finished staging directory to DEST, replacing an empty dir or old backup."""
    old: Path | None = None
    if dest.exists():
        if any(dest.iterdir()):
            old = dest.with_name(f"{dest.name}.old-{secrets.token_hex(4)}")
            os.rename(dest, old)
        else:
            dest.rmdir()
    os.rename(staging, dest)
    fsync_path(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def create_backup(config: Config, dest: Path) -> dict[str, Any]:
    """Write a backup of `config`'s data directory to `dest`; return its manifest."""
    dest = dest.resolve()
    if not config.database_path.is_file():
        raise BackupError(f"no database at {config.database_path}")
    _check_dest(config, dest)
    staging = dest.with_name(f"{dest.name}.tmp-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700)
    try:
        manifest = _build(config, staging)
        write_manifest(staging, manifest)
        fsync_path(staging)
        _swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def run_backup(config: Config, args: argparse.Namespace) -> int:
    try:
        manifest = create_backup(config, args.dest)
    except (BackupError, SnapshotError, OSError, apsw.Error) as e:
        print(f"trioserver: backup failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"path": str(args.dest.resolve()), **manifest}))
    return 0
