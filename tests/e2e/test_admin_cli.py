"""Operator commands (reset-password, deactivate, list-users, make-admin) run as the real CLI,
against the data directory of a server that keeps running: its token cache must notice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.cli_process import one_line_error, run_cli
from tests.e2e.helpers import PASSWORD, assert_error, login, register, unique, whoami
from tests.server_process import ServerProcess

NEW_PASSWORD = "a brand new passphrase"
# The server polls the admin epoch every second; allow generous slack on a loaded machine.
NOTICE_WITHIN_S = 3.0


def _start(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--open-registration", "--no-rate-limits")


async def _users(srv: ServerProcess) -> dict[str, dict[str, Any]]:
    out = await run_cli("list-users", "--json", "--data-dir", srv.data_dir)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return {row["user_id"]: row for row in rows}


async def _wait_for_status(http: httpx.AsyncClient, token: str, status: int) -> float:
    """Poll whoami until it answers `status`; return how long that took."""
    start = trio.current_time()
    with trio.move_on_after(NOTICE_WITHIN_S + 2):
        while True:
            if (await whoami(http, token)).status_code == status:
                return trio.current_time() - start
            await trio.sleep(0.1)
    raise AssertionError(f"whoami did not answer {status} in time")


async def test_list_users_shows_registered_users(server_factory: ServerFactory) -> None:
    srv = _start(server_factory)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        alice = await register(http, unique("alice"))
        guest = (await http.post("/_matrix/client/v3/register?kind=guest", json={})).json()
    users = await _users(srv)
    assert users[alice["user_id"]] == {**users[alice["user_id"]], "admin": False,
                                       "deactivated": False, "guest": False}
    assert isinstance(users[alice["user_id"]]["created_ts"], int)
    if "user_id" in guest:
        assert users[guest["user_id"]]["guest"] is True
    table = await run_cli("list-users", "--data-dir", srv.data_dir)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:3] == ["USER", "ID", "ADMIN"]
    assert any(line.startswith(alice["user_id"] + " ") for line in lines)
    assert len(lines) == len(users)


async def test_make_admin_and_revoke(server_factory: ServerFactory) -> None:
    srv = _start(server_factory)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        uid = (await register(http, unique("boss")))["user_id"]
    localpart = uid[1:].split(":")[0]
    out = await run_cli("make-admin", localpart, "--data-dir", srv.data_dir)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"user_id": uid, "admin": True}
    assert (await _users(srv))[uid]["admin"] is True
    out = await run_cli("make-admin", uid, "--revoke", "--data-dir", srv.data_dir)
    assert json.loads(out.stdout) == {"user_id": uid, "admin": False}
    assert (await _users(srv))[uid]["admin"] is False


async def test_reset_password_while_running_logs_out_devices(
        server_factory: ServerFactory, tmp_path: Path) -> None:
    srv = _start(server_factory)
    pw = tmp_path / "pw"
    pw.write_text(NEW_PASSWORD + "\n")
    async with httpx.AsyncClient(base_url=srv.url) as http:
        reg = await register(http, unique("forgetful"))
        token = reg["access_token"]
        assert (await whoami(http, token)).status_code == 200  # now cached by the server
        out = await run_cli("reset-password", reg["user_id"], "--password-file", pw,
                            "--data-dir", srv.data_dir)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"user_id": reg["user_id"], "password_reset": True,
                                          "devices_logged_out": 1}
        took = await _wait_for_status(http, token, 401)
        assert took < NOTICE_WITHIN_S
        assert_error(await whoami(http, token), 401, "M_UNKNOWN_TOKEN")
        assert_error(await login(http, reg["user_id"], PASSWORD), 403, "M_FORBIDDEN")
        r = await login(http, reg["user_id"], NEW_PASSWORD)
        assert r.status_code == 200, r.text


async def test_reset_password_keep_devices(server_factory: ServerFactory) -> None:
    srv = _start(server_factory)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        reg = await register(http, unique("keeper"))
        token = reg["access_token"]
        assert (await whoami(http, token)).status_code == 200
        # The password may also come on stdin.
        out = await run_cli("reset-password", reg["user_id"], "--keep-devices",
                            "--data-dir", srv.data_dir, stdin=NEW_PASSWORD + "\n")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["devices_logged_out"] == 0
        await trio.sleep(NOTICE_WITHIN_S / 2)  # past a poll: the cache was cleared by now
        assert (await whoami(http, token)).status_code == 200
        assert (await login(http, reg["user_id"], NEW_PASSWORD)).status_code == 200


async def test_deactivate_while_running(server_factory: ServerFactory) -> None:
    srv = _start(server_factory)
    async with httpx.AsyncClient(base_url=srv.url) as http:
        reg = await register(http, unique("leaver"))
        token = reg["access_token"]
        second = (await login(http, reg["user_id"])).json()["access_token"]
        for t in (token, second):
            assert (await whoami(http, t)).status_code == 200
        out = await run_cli("deactivate", reg["user_id"], "--data-dir", srv.data_dir)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"user_id": reg["user_id"], "deactivated": True,
                                          "devices_deleted": 2}
        assert await _wait_for_status(http, token, 401) < NOTICE_WITHIN_S
        assert_error(await whoami(http, token), 401, "M_UNKNOWN_TOKEN")
        assert_error(await whoami(http, second), 401, "M_UNKNOWN_TOKEN")
        assert_error(await login(http, reg["user_id"]), 403, "M_USER_DEACTIVATED")
        r = await http.get(f"/_matrix/client/v3/profile/{reg['user_id']}/displayname")
        assert r.status_code == 404, r.text
    assert (await _users(srv))[reg["user_id"]]["deactivated"] is True
    # Deactivated accounts cannot get a new password.
    line = one_line_error(await run_cli("reset-password", reg["user_id"], "--data-dir",
                                        srv.data_dir, stdin=NEW_PASSWORD + "\n"))
    assert "deactivated" in line


async def test_unknown_and_foreign_users_are_refused(server_factory: ServerFactory) -> None:
    srv = _start(server_factory)
    for cmd in (["deactivate"], ["make-admin"], ["reset-password"]):
        line = one_line_error(await run_cli(*cmd, "nobody-here", "--data-dir", srv.data_dir,
                                            stdin=NEW_PASSWORD + "\n"))
        assert line == "trioserver: no such user: @nobody-here:localhost"
    line = one_line_error(await run_cli("deactivate", "@someone:elsewhere.example",
                                        "--data-dir", srv.data_dir))
    assert "not a user of this server" in line


async def test_missing_database_and_bad_config(tmp_path: Path) -> None:
    line = one_line_error(await run_cli("list-users", "--data-dir", tmp_path / "none"))
    assert "no database at" in line
    assert not (tmp_path / "none").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    out = await run_cli("make-admin", "x", "--config", bad, "--data-dir", tmp_path)
    assert out.returncode == 2
    assert "no_such_key" in out.stderr
