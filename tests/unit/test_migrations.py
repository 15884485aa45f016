"""Schema migrations: file naming, ordering, atomic application, PRAGMA user_version."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from trioserver.storage.migrations import (
    MigrationError,
    current_version,
    load_migrations,
    migrate,
    schema_dir,
)


def tables(conn: apsw.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }


def write_schema(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


def test_real_schema_files_are_found() -> None:
    migrations = load_migrations()
    files = sorted(schema_dir().glob("*.sql"))
    assert len(migrations) == len(files) >= 1
    assert [m.version for m in migrations] == list(range(1, len(files) + 1))
    assert [m.name for m in migrations] == [f.name for f in files]
    assert migrations[0].name == "0001_init.sql"
    assert "CREATE TABLE users" in migrations[0].sql


def test_real_schema_applies_and_is_idempotent() -> None:
    conn = apsw.Connection(":memory:")
    migrations = load_migrations()
    assert current_version(conn) == 0
    applied = migrate(conn, migrations)
    assert applied == [m.name for m in migrations]
    assert current_version(conn) == len(migrations)
    assert {"users", "devices", "refresh_tokens", "access_tokens", "profile_fields"} <= tables(conn)
    before = tables(conn)
    assert migrate(conn, migrations) == []
    assert current_version(conn) == len(migrations)
    assert tables(conn) == before
    assert not conn.in_transaction


def test_real_schema_on_file_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = apsw.Connection(str(path))
    migrate(conn, load_migrations())
    conn.close()
    conn = apsw.Connection(str(path))
    assert current_version(conn) == len(load_migrations())
    assert migrate(conn, load_migrations()) == []
    assert "users" in tables(conn)


def test_applies_only_newer_migrations(tmp_path: Path) -> None:
    d = write_schema(tmp_path / "s", {"0001_a.sql": "CREATE TABLE a (x);"})
    conn = apsw.Connection(":memory:")
    assert migrate(conn, load_migrations(d)) == ["0001_a.sql"]
    write_schema(d, {"0002_b.sql": "CREATE TABLE b (x);\nCREATE TABLE c (y);"})
    assert migrate(conn, load_migrations(d)) == ["0002_b.sql"]
    assert current_version(conn) == 2
    assert tables(conn) == {"a", "b", "c"}


def test_failing_migration_is_rolled_back_entirely(tmp_path: Path) -> None:
    d = write_schema(
        tmp_path / "s",
        {
            "0001_ok.sql": "CREATE TABLE one (x INTEGER);\nINSERT INTO one VALUES (1);",
            "0002_broken.sql": (
                "CREATE TABLE two (x INTEGER);\n"
                "INSERT INTO one VALUES (2);\n"
                "CREATE TABLEE three (x INTEGER);\n"
            ),
        },
    )
    path = tmp_path / "db.sqlite"
    conn = apsw.Connection(str(path))
    with pytest.raises(apsw.SQLError, match="TABLEE"):
        migrate(conn, load_migrations(d))
    assert current_version(conn) == 1
    assert tables(conn) == {"one"}
    assert conn.execute("SELECT x FROM one").fetchall() == [(1,)]
    assert not conn.in_transaction
    conn.close()

    # Same on disk, and the database can be migrated once the file is fixed.
    conn = apsw.Connection(str(path))
    assert current_version(conn) == 1
    assert tables(conn) == {"one"}
    write_schema(d, {"0002_broken.sql": "CREATE TABLE two (x INTEGER);"})
    assert migrate(conn, load_migrations(d)) == ["0002_broken.sql"]
    assert current_version(conn) == 2
    assert tables(conn) == {"one", "two"}


def test_statement_returning_rows_does_not_stop_migration(tmp_path: Path) -> None:
    # A data migration may contain a statement that yields rows (SELECT, RETURNING, some
    # PRAGMAs); every statement after it must still run before user_version is bumped.
    d = write_schema(
        tmp_path / "s",
        {
            "0001_a.sql": (
                "CREATE TABLE a (x INTEGER);\n"
                "INSERT INTO a VALUES (1) RETURNING x;\n"
                "CREATE TABLE b (y INTEGER);\n"
            )
        },
    )
    conn = apsw.Connection(":memory:")
    migrate(conn, load_migrations(d))
    assert current_version(conn) == 1
    assert tables(conn) == {"a", "b"}


@pytest.mark.parametrize(
    "names",
    [
        ["0001_a.sql", "0003_c.sql"],  # gap
        ["0002_b.sql"],  # does not start at 1
        ["0001_a.sql", "0001_b.sql"],  # duplicate number
    ],
)
def test_gaps_are_rejected(tmp_path: Path, names: list[str]) -> None:
    d = write_schema(tmp_path / "s", {n: "SELECT 1;" for n in names})
    with pytest.raises(MigrationError, match="expected migration number"):
        load_migrations(d)


@pytest.mark.parametrize(
    "bad", ["1_init.sql", "0002-init.sql", "0002_Init.sql", "0002.sql", "00002_x.sql", "abcd_x.sql"]
)
def test_bad_names_are_rejected(tmp_path: Path, bad: str) -> None:
    d = write_schema(tmp_path / "s", {"0001_a.sql": "SELECT 1;", bad: "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(d)


def test_non_sql_files_are_ignored(tmp_path: Path) -> None:
    d = write_schema(tmp_path / "s", {"0001_a.sql": "SELECT 1;", "README.md": "notes"})
    assert [m.name for m in load_migrations(d)] == ["0001_a.sql"]


def test_empty_directory_is_rejected(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(MigrationError, match="no migrations"):
        load_migrations(d)


def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    d = write_schema(tmp_path / "s", {"0001_a.sql": "CREATE TABLE a (x);"})
    conn = apsw.Connection(":memory:")
    conn.execute("PRAGMA user_version = 5")
    with pytest.raises(MigrationError, match="newer release"):
        migrate(conn, load_migrations(d))
    assert current_version(conn) == 5
    assert tables(conn) == set()
