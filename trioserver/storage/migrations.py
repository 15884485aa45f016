"""Forward-only schema migrations: `schema/NNNN_name.sql`, tracked by `PRAGMA user_version`.

Each file runs in its own transaction together with the `user_version` bump, so a crash leaves
the database either before or after a migration, never half-way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import apsw

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class MigrationError(Exception):
    """The schema directory or the database is not in a state we can migrate from."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def schema_dir() -> Path:
    """The packaged `trioserver/schema`, or the repository's `schema/` when run from source."""
    packaged = Path(str(resources.files("trioserver"))) / "schema"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "schema"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or schema_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.fullmatch(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), path.name, path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"{migration.name}: expected migration number {expected:04d}")
    if not found:
        raise MigrationError(f"no migrations found in {directory}")
    return found


def current_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: apsw.Connection, migrations: list[Migration]) -> list[str]:
    """Apply every migration newer than the database; return the names applied."""
    version = current_version(conn)
    latest = migrations[-1].version
    if version > latest:
        raise MigrationError(
            f"the database is at schema version {version} but this trioserver only knows "
            f"{latest}: it was written by a newer release"
        )
    applied: list[str] = []
    for migration in migrations[version:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Exhaust the cursor: apsw stops at a statement that returns rows until it is read,
            # and the statements after it would silently not run.
            for _ in conn.execute(migration.sql):
                pass
            conn.execute(f"PRAGMA user_version = {migration.version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.name)
    return applied
