"""`trioserver restore SRC`: put a backup made by `trioserver backup` back into a data directory.

The backup is verified first: its manifest is readable, its database passes
`PRAGMA quick_check`, its schema is not newer than this build knows, it was taken for the server
name configured here, and every media file its database refers to is present.

A data directory that already has a database is refused unless --force; even with --force it is
refused while another process (a running server) has that database open, detected by failing to
take an exclusive SQLite lock at once. Files land with restrictive modes: the data directory
0700, the database and signing key 0600. The database is moved in last, so an interrupted
restore leaves no database behind and can simply be run again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import apsw

from trioserver.backup_files import (
    DATABASE,
    MEDIA,
    SIGNING_KEY,
    BackupError,
    copy_blobs,
    copy_private,
    fsync_path,
    read_manifest,
)
from trioserver.config import Config
from trioserver.storage.blob_store import BlobStore
from trioserver.storage.migrations import MigrationError, current_version, load_migrations
from trioserver.storage.repositories import maintenance
from trioserver.storage.repositories import media as media_repo
from trioserver.storage.snapshot import database_in_use

RESTORE_HELP = """\
Verifies SRC first (PRAGMA quick_check, schema not newer than this build, same server name,
every referenced media file present). Refuses a data directory that already has a database
unless --force, and refuses even with --force while a server (or any other process) has that
database open: stop it first. Installs media, then the signing key, then the database, with
modes 0700 (data directory) and 0600 (database, signing key). Existing media files are kept
(unreferenced ones are removed by the next `media purge`)."""


def verify_backup(src: Path, server_name: str) -> tuple[dict[str, Any], set[str]]:
    """Check the backup at `src`; return its manifest and the blobs its database refers to."""
    manifest = read_manifest(src)
    db_path = src / DATABASE
    if not db_path.is_file():
        raise BackupError(f"{src} has no {DATABASE}")
    if manifest.get("server_name") != server_name:
        raise BackupError(
            f"the backup is of server {manifest.get('server_name')!r} but the server name here"
            f" is {server_name!r}: pass the server's --config (or --server-name)"
        )
    try:
        conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            problems = maintenance.quick_check(conn)
            if problems != ["ok"]:
                raise BackupError(f"the backup database is damaged: {'; '.join(problems[:3])}")
            version = current_version(conn)
            hashes = media_repo.referenced_hashes(conn)
        finally:
            conn.close()
    except apsw.Error as e:
        raise BackupError(f"the backup database is damaged: {e}") from None
    latest = load_migrations()[-1].version
    if version > latest:
        raise BackupError(
            f"the backup has schema version {version} but this trioserver knows only {latest}:"
            " restore it with the release that made it (or a newer one)"
        )
    store = BlobStore(src / MEDIA)
    missing = [sha for sha in hashes if not store.exists(sha)]
    if missing:
        raise BackupError(f"the backup is incomplete: {len(missing)} media file(s) are missing"
                          f" from {store.root} (first: {missing[0]})")
    if version != manifest.get("schema_version"):
        raise BackupError(f"the backup database has schema version {version}, its manifest says"
                          f" {manifest.get('schema_version')}: the backup is inconsistent")
    return manifest, hashes


def _check_target(config: Config, force: bool) -> None:
    db = config.database_path
    leftovers = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    if not leftovers:
        return
    if not force:
        raise BackupError(f"{config.data_dir} already has a database; pass --force to replace it")
    if db.exists() and database_in_use(db):
        raise BackupError(f"{db} is in use (is the server running?); stop it first")


def _install_database(src: Path, config: Config) -> None:
    db = config.database_path
    tmp = db.with_name(f".{db.name}.restore-{secrets.token_hex(4)}")
    copy_private(src, tmp)
    try:
        # An old -wal beside the new file would be replayed into it: remove it first.
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                db.with_name(db.name + suffix).unlink()
        os.replace(tmp, db)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_path(db.parent)


def _install_signing_key(src: Path, config: Config) -> None:
    key = config.data_dir / SIGNING_KEY
    tmp = key.with_name(f".{key.name}.restore-{secrets.token_hex(4)}")
    copy_private(src, tmp)
    os.replace(tmp, key)


def restore_backup(config: Config, src: Path, *, force: bool) -> dict[str, Any]:
    src = src.resolve()
    if not src.is_dir():
        raise BackupError(f"{src} is not a directory")
    manifest, hashes = verify_backup(src, config.server_name)
    _check_target(config, force)
    data_dir = config.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    blobs = copy_blobs(BlobStore(src / MEDIA), BlobStore(data_dir / MEDIA), hashes)
    if (data_dir / MEDIA).is_dir():
        (data_dir / MEDIA).chmod(0o700)
    has_key = (src / SIGNING_KEY).is_file()
    if has_key:
        _install_signing_key(src / SIGNING_KEY, config)
    _install_database(src / DATABASE, config)
    return {
        "restored": str(src),
        "data_dir": str(data_dir.resolve()),
        "backup_created": manifest.get("created"),
        "schema_version": manifest.get("schema_version"),
        "counts": manifest.get("counts"),
        "signing_key": has_key,
        "media_files": blobs.files,
        "media_bytes": blobs.bytes,
    }


def run_restore(config: Config, args: argparse.Namespace) -> int:
    try:
        result = restore_backup(config, args.src, force=args.force)
    except (BackupError, MigrationError) as e:
        print(f"trioserver: restore refused: {e}", file=sys.stderr)
        return 1
    except (OSError, apsw.Error) as e:
        print(f"trioserver: restore failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
