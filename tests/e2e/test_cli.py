"""The command-line contract: serve, generate-config, register-user, media, --version."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import apsw
import httpx

from tests.server_process import start_server
from trioserver import __version__
from trioserver.config import Config, load

PASSWORD = "a long enough password"


def cli(*args: str, cwd: Path | None = None, stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trioserver", *args], input=stdin, capture_output=True,
        text=True, cwd=cwd, timeout=timeout, check=False,
    )


def test_version_is_printed_by_both_entry_points() -> None:
    out = cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"trioserver {__version__}"
    script = Path(sys.executable).parent / "trioserver"
    assert subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip() == f"trioserver {__version__}"


def test_no_command_prints_help_and_fails() -> None:
    out = cli()
    assert out.returncode == 2
    assert "serve" in out.stdout


def test_generate_config_round_trips(tmp_path: Path) -> None:
    out = cli("generate-config", "--server-name", "example.org")
    assert out.returncode == 0, out.stderr
    parsed = tomllib.loads(out.stdout)
    assert parsed["server_name"] == "example.org"
    path = tmp_path / "config.toml"
    path.write_text(out.stdout)
    config = load(path, environ={})
    defaults = Config()
    assert config.server_name == "example.org"
    assert config.registration == defaults.registration
    assert config.rate_limits == defaults.rate_limits
    # Every line that is not a comment or blank is a key = value or a [section].
    assert out.stdout.count("#") > 20


def test_bad_config_is_refused_with_the_key_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[registration]\nopen = \"yes\"\n")
    out = cli("serve", "--config", str(path), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2
    assert "registration.open" in out.stderr
    path.write_text("no_such_key = 1\n")
    out = cli("serve", "--config", str(path), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2
    assert "no_such_key" in out.stderr


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = cli("serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}")
    assert out.returncode == 1
    assert "cannot listen" in out.stderr


def test_serve_defaults_to_data_under_the_working_directory(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioserver", "serve", "--listen", "127.0.0.1:0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        assert "server name localhost" in line
        assert (tmp_path / "data" / "trioserver.db").exists()
        url = line.split(" listening on ", 1)[1].split()[0]
        # Registration is closed unless asked for.
        r = httpx.post(url + "/_matrix/client/v3/register", json={})
        assert r.status_code == 403
        assert r.json()["errcode"] == "M_FORBIDDEN"
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_register_user_offline_then_log_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    out = cli("register-user", "Alice", "--admin", "--password-file", str(pw),
              "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert '"user_id": "@alice:localhost"' in out.stdout
    out = cli("register-user", "bob", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr

    conn = apsw.Connection(str(data / "trioserver.db"))
    admins = {row[0]: row[1] for row in conn.execute("SELECT user_id, is_admin FROM users")}
    conn.close()
    assert admins == {"@alice:localhost": 1, "@bob:localhost": 0}

    srv = start_server(data)
    try:
        for user in ("alice", "@bob:localhost"):
            r = httpx.post(srv.url + "/_matrix/client/v3/login", json={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                "password": PASSWORD})
            assert r.status_code == 200, r.text
    finally:
        assert srv.stop() == 0


def test_register_user_refuses_bad_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok = cli("register-user", "carol", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert ok.returncode == 0
    taken = cli("register-user", "carol", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert taken.returncode == 1
    assert "M_USER_IN_USE" in taken.stderr
    invalid = cli("register-user", "not valid", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert invalid.returncode == 1
    assert "M_INVALID_USERNAME" in invalid.stderr
    weak = cli("register-user", "dave", "--data-dir", str(data), stdin="short\n")
    assert weak.returncode == 1
    assert "M_WEAK_PASSWORD" in weak.stderr
    missing = cli("register-user", "erin", "--data-dir", str(data),
                  "--password-file", str(tmp_path / "nope"))
    assert missing.returncode == 1


def test_serve_refuses_a_database_from_a_newer_release(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = apsw.Connection(str(data / "trioserver.db"))
    conn.execute("PRAGMA user_version = 9999")
    conn.close()
    out = cli("serve", "--data-dir", str(data), "--listen", "127.0.0.1:0")
    assert out.returncode == 1
    assert "newer release" in out.stderr
    assert "Traceback" not in out.stderr


def test_data_dir_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    out = cli("register-user", "frank", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert out.returncode == 0, out.stderr
    assert (data.stat().st_mode & 0o777) == 0o700
    assert ((data / "trioserver.db").stat().st_mode & 0o777) == 0o600


def test_media_stats_and_purge(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data, "--open-registration", "--no-rate-limits")
    try:
        r = httpx.post(srv.url + "/_matrix/client/v3/register", json={
            "username": "mia", "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        for body in (b"same bytes", b"same bytes", b"other bytes!"):
            r = httpx.post(srv.url + "/_matrix/media/v3/upload", content=body, headers=auth)
            assert r.status_code == 200, r.text
    finally:
        assert srv.stop() == 0

    out = cli("media", "stats", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "media": 3, "pending_uploads": 0, "media_bytes": 32, "thumbnails": 0,
        "thumbnail_bytes": 0, "uploaders": 1, "files": 2, "file_bytes": 22}
    # Nothing is older than 2000-01-01.
    out = cli("media", "purge", "--before", "2000-01-01", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"media_deleted": 0, "files_deleted": 0, "bytes_freed": 0}
    # Everything is older than the far future; files go with their last reference.
    out = cli("media", "purge", "--before", "2999-01-01", "--grace-s", "0",
              "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"media_deleted": 3, "files_deleted": 2, "bytes_freed": 22}
    assert not [p for p in (data / "media").glob("??/??/*") if p.is_file()]
    assert cli("media", "purge", "--before", "yesterday", "--data-dir", str(data)).returncode == 2
    assert cli("media", "--data-dir", str(data)).returncode == 2
