"""Operator commands on the data directory's database: reset-password, deactivate, list-users,
make-admin.

They work whether or not the server runs: SQLite in WAL mode lets this process write beside it.
Every change also bumps `admin_epoch` in the same transaction; a running server polls it (see
`services.admin_watch`) and drops its token cache within about a second, so a deactivated or
logged-out user's token stops working promptly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from trioserver.config import Config
from trioserver.errors import MatrixError
from trioserver.identifiers import split_user_id
from trioserver.identifiers import user_id as make_user_id
from trioserver.services.accounts import MAX_PASSWORD_LENGTH
from trioserver.services.passwords import PasswordHasher
from trioserver.storage.db import Database, DatabaseError
from trioserver.storage.migrations import MigrationError
from trioserver.storage.repositories import admin_epoch as epoch_repo
from trioserver.storage.repositories import deactivation as deactivation_repo
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import e2ee_keys as keys_repo
from trioserver.storage.repositories import users as users_repo

ADMIN_COMMANDS = ("reset-password", "deactivate", "list-users", "make-admin")
PasswordReader = Callable[[Path | None], str]


class AdminError(Exception):
    """A refusal, shown to the operator as one line."""


def _open(config: Config) -> Database:
    if not config.database_path.is_file():
        raise AdminError(f"no database at {config.database_path}")
    # No integrity check: it reads the whole file, and the server checks at start-up.
    return Database.open(config.database_path, readers=1,
                         synchronous=config.database.synchronous, check=False)


def _candidates(name: str, server_name: str) -> list[str]:
    """User IDs `name` may mean: a full MXID of this server, or a localpart (as typed, then
    lower-cased as registration does)."""
    if name.startswith("@"):
        parts = split_user_id(name)
        if parts is None:
            raise AdminError(f"{name!r} is not a valid user ID")
        if parts[1] != server_name:
            raise AdminError(f"{name} is not a user of this server ({server_name})")
        ids = [name, make_user_id(parts[0].lower(), server_name)]
    else:
        ids = [make_user_id(name, server_name), make_user_id(name.lower(), server_name)]
    return list(dict.fromkeys(ids))


def _find(conn: apsw.Connection, candidates: list[str]) -> users_repo.UserRow:
    for uid in candidates:
        user = users_repo.get_user(conn, uid)
        if user is not None:
            return user
    raise AdminError(f"no such user: {candidates[0]}")


def _check_password(config: Config, password: str) -> None:
    minimum = config.registration.min_password_length
    if len(password) < minimum:
        raise AdminError(f"the password must be at least {minimum} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AdminError("the password is too long")


def reset_password(config: Config, db: Database, name: str, password_file: Path | None,
                   read_password: PasswordReader, *, keep_devices: bool) -> dict[str, Any]:
    ids = _candidates(name, config.server_name)
    user = db.read_sync(lambda c: _find(c, ids))
    if user.deactivated:
        raise AdminError(f"{user.user_id} is deactivated")
    password = read_password(password_file)
    _check_password(config, password)
    hasher = PasswordHasher(opslimit=config.auth.password_hash_opslimit,
                            memlimit_kib=config.auth.password_hash_memlimit_kib, concurrency=1)
    new_hash = hasher.hash_sync(password)

    def txn(conn: apsw.Connection) -> list[str]:
        uid = _find(conn, [user.user_id]).user_id
        users_repo.set_password_hash(conn, uid, new_hash)
        logged_out = [] if keep_devices else devices_repo.delete_all_devices(conn, uid)
        keys_repo.record_offline_deletions(conn, uid, logged_out)
        epoch_repo.bump(conn)
        return logged_out

    logged_out = db.write_sync(txn)
    return {"user_id": user.user_id, "password_reset": True, "devices_logged_out": len(logged_out)}


def deactivate(config: Config, db: Database, name: str) -> dict[str, Any]:
    """The in-server deactivation's effects: devices and tokens, profile, pushers, the flag;
    the user's rooms are queued, and a running server (woken by the epoch) or the next start
    leaves them."""
    ids = _candidates(name, config.server_name)

    def txn(conn: apsw.Connection) -> tuple[str, list[str]]:
        uid = _find(conn, ids).user_id
        deleted = deactivation_repo.deactivate(conn, uid, erase=False,
                                               now_ms=int(time.time() * 1000))
        keys_repo.record_offline_deletions(conn, uid, deleted)
        epoch_repo.bump(conn)
        return uid, deleted

    uid, deleted = db.write_sync(txn)
    return {"user_id": uid, "deactivated": True, "devices_deleted": len(deleted)}


def make_admin(config: Config, db: Database, name: str, *, revoke: bool) -> dict[str, Any]:
    ids = _candidates(name, config.server_name)

    def txn(conn: apsw.Connection) -> str:
        uid = _find(conn, ids).user_id
        users_repo.set_admin(conn, uid, not revoke)
        epoch_repo.bump(conn)
        return uid

    return {"user_id": db.write_sync(txn), "admin": not revoke}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_users(users: list[users_repo.UserRow], *, as_json: bool) -> str:
    if as_json:
        return "".join(json.dumps({"user_id": u.user_id, "admin": u.is_admin,
                                   "deactivated": u.deactivated, "guest": u.is_guest,
                                   "created_ts": u.created_ts}) + "\n" for u in users)
    rows = [("USER ID", "ADMIN", "DEACTIVATED", "GUEST", "CREATED (UTC)")]
    rows += [(u.user_id, _yes(u.is_admin), _yes(u.deactivated), _yes(u.is_guest),
              _iso(u.created_ts)) for u in users]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                   for r in rows)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def run_admin_command(config: Config, args: argparse.Namespace,
                      read_password: PasswordReader) -> int:
    try:
        db = _open(config)
    except (AdminError, DatabaseError, MigrationError) as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    try:
        if args.command == "list-users":
            sys.stdout.write(format_users(db.read_sync(users_repo.list_users),
                                          as_json=args.json))
            return 0
        if args.command == "reset-password":
            result = reset_password(config, db, args.user, args.password_file, read_password,
                                    keep_devices=args.keep_devices)
        elif args.command == "deactivate":
            result = deactivate(config, db, args.user)
        else:
            result = make_admin(config, db, args.user, revoke=args.revoke)
    except (AdminError, OSError, ValueError, apsw.Error) as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    except MatrixError as e:
        print(f"trioserver: {e.errcode}: {e.message}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(json.dumps(result))
    return 0
