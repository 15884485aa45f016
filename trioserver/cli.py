"""Command line: `trioserver serve | generate-config | register-user | media | --version`, the
admin commands (reset-password, deactivate, list-users, make-admin), backup | restore and
rotate-signing-key."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from trioserver import __version__
from trioserver.config import Config, ConfigError, load, sample_config
from trioserver.errors import MatrixError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trioserver", description="A Matrix homeserver.")
    p.add_argument("--version", action="version", version=f"trioserver {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
        sp.add_argument("--server-name", metavar="NAME", help="server name (default localhost)")
        sp.add_argument("--data-dir", type=Path, metavar="DIR", help="data directory (./data)")

    serve = sub.add_parser("serve", help="run the homeserver")
    common(serve)
    serve.add_argument("--listen", metavar="HOST:PORT", help="client listener (127.0.0.1:8008)")
    serve.add_argument("--open-registration", action="store_true",
                       help="let anyone register an account")
    serve.add_argument("--no-rate-limits", action="store_true", help="turn rate limits off")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT",
                       help='metrics listener (127.0.0.1:9008; "" turns it off)')
    serve.add_argument("--appservice-registration", action="append", default=[], metavar="FILE",
                       help="an application-service registration YAML file (repeatable)")

    check_as = sub.add_parser("check-appservice",
                              help="validate application-service registration files")
    check_as.add_argument("files", nargs="+", type=Path, metavar="FILE")

    gen = sub.add_parser("generate-config", help="print a complete, commented TOML config")
    gen.add_argument("--server-name", metavar="NAME", default="localhost")

    reg = sub.add_parser("register-user", help="create an account (offline, on the data dir)")
    common(reg)
    reg.add_argument("username")
    reg.add_argument("--admin", action="store_true", help="make the user a server admin")
    reg.add_argument("--password-file", type=Path, metavar="F",
                     help="read the password from F (first line); default: prompt or stdin")
    media = sub.add_parser("media", help="media repository housekeeping (offline)")
    media_sub = media.add_subparsers(dest="media_command", metavar="ACTION", required=True)
    purge = media_sub.add_parser("purge", help="delete media uploaded before a date")
    common(purge)
    purge.add_argument("--before", required=True, metavar="YYYY-MM-DD",
                       help="delete media created before this day (UTC)")
    purge.add_argument("--grace-s", type=float, default=3600.0, metavar="S",
                       help="spare unreferenced files younger than S seconds (default 3600)")
    stats = media_sub.add_parser("stats", help="print media counts and sizes as JSON")
    common(stats)
    _admin_parsers(sub, common)
    rotate = sub.add_parser(
        "rotate-signing-key", help="replace the server's signing key (offline)",
        description="Stop the server first. The new key becomes current; the old one is kept "
                    "as an old verify key (expired now), published in old_verify_keys.")
    common(rotate)
    return p


def _admin_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Admin and backup commands: offline tools that also work beside a running server."""
    from trioserver.backup import DEST_HELP
    from trioserver.restore import RESTORE_HELP

    user_help = "a localpart or a full user ID of this server"
    reset = sub.add_parser("reset-password", help="set a user's password (logs out devices)")
    common(reset)
    reset.add_argument("user", metavar="USER", help=user_help)
    reset.add_argument("--password-file", type=Path, metavar="F",
                       help="read the password from F (first line); default: prompt or stdin")
    reset.add_argument("--keep-devices", action="store_true",
                       help="keep the user's devices and access tokens")
    deact = sub.add_parser("deactivate", help="deactivate an account (devices, profile, login)")
    common(deact)
    deact.add_argument("user", metavar="USER", help=user_help)
    users = sub.add_parser("list-users", help="list accounts as a table (or JSON lines)")
    common(users)
    users.add_argument("--json", action="store_true", help="one JSON object per line")
    admin = sub.add_parser("make-admin", help="make a user a server admin")
    common(admin)
    admin.add_argument("user", metavar="USER", help=user_help)
    admin.add_argument("--revoke", action="store_true", help="remove admin rights instead")
    backup = sub.add_parser("backup", help="copy the data dir to DEST while the server runs",
                            description=DEST_HELP)
    common(backup)
    backup.add_argument("dest", type=Path, metavar="DEST", help="backup directory (see above)")
    restore = sub.add_parser("restore", help="restore a backup into the data dir",
                             description=RESTORE_HELP)
    common(restore)
    restore.add_argument("src", type=Path, metavar="SRC", help="a directory made by backup")
    restore.add_argument("--force", action="store_true",
                         help="replace an existing database (never one a server has open)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.server_name:
        out["server_name"] = args.server_name
    if args.data_dir:
        out["data_dir"] = str(args.data_dir)
    if getattr(args, "listen", None):
        out["listen"] = args.listen
    if getattr(args, "open_registration", False):
        out["registration.open"] = True
    if getattr(args, "no_rate_limits", False):
        out["rate_limits.enabled"] = False
    if getattr(args, "metrics_listen", None) is not None:
        out["metrics.listen"] = args.metrics_listen
    return out


def _check_appservices(files: list[Path]) -> int:
    from trioserver.services.appservice.registration import (
        RegistrationError,
        load_registrations,
        summary,
    )

    try:
        regs = load_registrations(files)
    except RegistrationError as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    print("\n".join(summary(r) for r in regs))
    return 0


def _serve(config: Config) -> int:
    from trioserver.net.serve import ListenError
    from trioserver.services.appservice.registration import RegistrationError, load_registrations

    try:
        load_registrations(config.appservice_registrations)  # refuse bad files before binding
    except RegistrationError as e:
        print(f"trioserver: configuration error: {e}", file=sys.stderr)
        return 2
    from trioserver.net.tls_context import TLSSetupError
    from trioserver.server import configure_logging, main
    from trioserver.services.events.signing import SigningKeyError
    from trioserver.storage.db import DatabaseError
    from trioserver.storage.migrations import MigrationError

    configure_logging(config.log_level)
    try:
        trio.run(main, config)
    except KeyboardInterrupt:
        pass
    except (DatabaseError, MigrationError, SigningKeyError, ListenError, TLSSetupError) as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    except (OSError, BaseExceptionGroup) as e:
        # Binding the listener fails inside the server's nursery, so it arrives grouped.
        error = _first_os_error(e)
        if error is None:
            raise
        print(f"trioserver: cannot listen on {config.listen}: {error.strerror or error}",
              file=sys.stderr)
        return 1
    return 0


def _first_os_error(e: BaseException) -> OSError | None:
    if isinstance(e, OSError):
        return e
    if isinstance(e, BaseExceptionGroup):
        for inner in e.exceptions:
            found = _first_os_error(inner)
            if found is not None:
                return found
    return None


def _read_password(path: Path | None) -> str:
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Confirm password: ") != first:
            raise ValueError("passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _register_user(config: Config, username: str, admin: bool, password_file: Path | None) -> int:
    from trioserver.services.accounts import register_offline
    from trioserver.storage.db import DatabaseError
    from trioserver.storage.migrations import MigrationError

    try:
        password = _read_password(password_file)
        uid = register_offline(config, username, password, admin=admin)
    except (OSError, ValueError, DatabaseError, MigrationError) as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    except MatrixError as e:
        print(f"trioserver: {e.errcode}: {e.message}", file=sys.stderr)
        return 1
    print(json.dumps({"user_id": uid, "admin": admin}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "check-appservice":
        return _check_appservices(args.files)
    try:
        if args.command == "generate-config":
            config = load(None, overrides={"server_name": args.server_name}, environ={})
            sys.stdout.write(sample_config(config.server_name))
            return 0
        config = load(args.config, overrides=_overrides(args))
    except ConfigError as e:
        print(f"trioserver: configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        extra = tuple(str(f) for f in args.appservice_registration)
        return _serve(replace(config, appservice_registrations=(
            config.appservice_registrations + extra)))
    if args.command == "media":
        from trioserver.media_admin import run_media_command

        return run_media_command(config, args)
    if args.command in ("reset-password", "deactivate", "list-users", "make-admin"):
        from trioserver.admin_commands import run_admin_command

        return run_admin_command(config, args, _read_password)
    if args.command == "backup":
        from trioserver.backup import run_backup

        return run_backup(config, args)
    if args.command == "rotate-signing-key":
        from trioserver.key_rotation import run_rotate_signing_key

        return run_rotate_signing_key(config, args)
    if args.command == "restore":
        from trioserver.restore import run_restore

        return run_restore(config, args)
    return _register_user(config, args.username, args.admin, args.password_file)
