"""`trioserver rotate-signing-key`: replace the server's signing key (offline).

The new key becomes the one in <data_dir>/signing.key; the old key's public half is kept in
the database (old_signing_keys) with expired_ts = now, and the server publishes it in
`old_verify_keys` from its next start on, so other servers can still check events it signed
before. Only the public half is kept: the old key signs nothing any more.

Refused while a server has the database open: a running server signs with the key it loaded
at start-up and would go on using the retired one. The database is written first and the key
file replaced after; if the command is interrupted between the two, the server ignores an
"old" key that is still its current one, and the command can simply be run again.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

from trioserver.backup_files import SIGNING_KEY, fsync_path
from trioserver.config import Config
from trioserver.services.events.signing import (
    SigningKey,
    SigningKeyError,
    load_or_create_signing_key,
)
from trioserver.storage.db import Database, DatabaseError
from trioserver.storage.migrations import MigrationError
from trioserver.storage.repositories import server_keys as repo
from trioserver.storage.snapshot import database_in_use


class RotationError(Exception):
    """A refusal, shown to the operator as one line."""


def rotate_signing_key(config: Config, *, now_ms: int | None = None
                       ) -> tuple[SigningKey, SigningKey, int]:
    """Retire the current key; return (old key, new key, expired_ts)."""
    key_path = config.data_dir / SIGNING_KEY
    if not key_path.exists():
        raise RotationError(f"no signing key at {key_path}: nothing to rotate (the server "
                            "creates one at its first start)")
    old = load_or_create_signing_key(key_path)
    expired_ts = int(time.time() * 1000) if now_ms is None else now_ms
    if config.database_path.exists() and database_in_use(config.database_path):
        raise RotationError(f"{config.database_path} is in use (is the server running?); "
                            "stop it first")
    db = Database.open(config.database_path, readers=1,
                       synchronous=config.database.synchronous, check=False)
    try:
        db.write_sync(lambda conn: repo.add_old_signing_key(
            conn, old.key_id, old.verify_key_bytes, expired_ts))
    finally:
        db.close()
    new = _install_new_key(key_path, old)
    return old, new, expired_ts


def _install_new_key(key_path: Path, old: SigningKey) -> SigningKey:
    while True:
        staging = key_path.with_name(f".{key_path.name}.{secrets.token_hex(6)}.new")
        # Creates the file (0600, fsynced) with a fresh key.
        new = load_or_create_signing_key(staging)
        if new.key_id != old.key_id:
            break
        staging.unlink()  # the same random version twice: draw again
    try:
        os.replace(staging, key_path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    fsync_path(key_path.parent)
    return new


def run_rotate_signing_key(config: Config, args: argparse.Namespace) -> int:
    try:
        old, new, expired_ts = rotate_signing_key(config)
    except (RotationError, SigningKeyError, DatabaseError, MigrationError, OSError) as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"old_key_id": old.key_id, "new_key_id": new.key_id,
                      "expired_ts": expired_ts}))
    return 0
