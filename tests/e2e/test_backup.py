"""`trioserver backup` while the server serves and a writer keeps sending, then `restore` into
a fresh data directory and a server started on it: the snapshot's messages and media are there.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.cli_process import one_line_error, run_cli
from tests.e2e.helpers import bearer, create_room, login, register, room_path, send_text, unique
from tests.server_process import ServerProcess

MEDIA = "/_matrix/client/v1/media"


async def _upload(http: httpx.AsyncClient, token: str, data: bytes) -> str:
    r = await http.post("/_matrix/media/v3/upload", content=data,
                        headers={**bearer(token), "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    uri: str = r.json()["content_uri"]
    return uri.removeprefix("mxc://")


async def _message_bodies(http: httpx.AsyncClient, token: str, room_id: str) -> list[str]:
    """Every m.room.message body in the room, oldest first, across /messages pages."""
    bodies: list[str] = []
    params: dict[str, Any] = {"dir": "f", "limit": 500,
                              "filter": json.dumps({"types": ["m.room.message"]})}
    while True:
        r = await http.get(room_path(room_id, "messages"), params=params, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        bodies += [e["content"]["body"] for e in body["chunk"]]
        if "end" not in body or not body["chunk"]:
            return bodies
        params["from"] = body["end"]


def _leftovers(directory: Path) -> list[Path]:
    """Staging (DEST.tmp-*) or replaced (DEST.old-*) directories a backup left behind."""
    return [p for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _populated_server(server_factory: ServerFactory
                            ) -> tuple[ServerProcess, dict[str, Any], str]:
    srv = server_factory("--open-registration", "--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        alice = await register(http, unique("alice"))
        room_id = await create_room(http, alice["access_token"], name="backed up")
    return srv, alice, room_id


async def test_backup_while_writing_then_restore_and_serve(
        server_factory: ServerFactory, tmp_path: Path) -> None:
    srv, alice, room_id = await _populated_server(server_factory)
    token = alice["access_token"]
    blobs = {"big": os.urandom(600_000), "small": b"hello backup"}
    acknowledged: list[str] = []  # bodies the server confirmed, in order
    dest = tmp_path / "backup"
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        media = {name: await _upload(http, token, data) for name, data in blobs.items()}

        async def writer(stop: trio.Event, warmed_up: trio.Event) -> None:
            n = 0
            while not stop.is_set():
                await send_text(http, token, room_id, f"message {n}")
                acknowledged.append(f"message {n}")
                n += 1
                if n == 20:
                    warmed_up.set()

        stop, warmed_up = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, stop, warmed_up)
            await warmed_up.wait()
            before_backup = len(acknowledged)
            out = await run_cli("backup", dest, "--data-dir", srv.data_dir)
            after_backup = len(acknowledged)
            await trio.sleep(0.3)
            stop.set()
    assert out.returncode == 0, out.stderr
    assert after_backup > before_backup, "the writer should have kept sending during the backup"
    manifest = json.loads(out.stdout)
    assert manifest == {**json.loads((dest / "backup.json").read_text()),
                        "path": str(dest.resolve())}
    assert manifest["quick_check"] == "ok"
    assert manifest["signing_key"] is True
    assert manifest["media_files"] == 2
    assert manifest["media_bytes"] == sum(len(d) for d in blobs.values())
    assert manifest["counts"]["users"] == 1
    assert manifest["schema_version"] >= 11
    print(f"\nbackup: {manifest['seconds']}s (database {manifest['database_seconds']}s),"
          f" database {manifest['database_bytes']} bytes, media {manifest['media_bytes']} bytes,"
          f" {manifest['counts']['events']} events")
    assert not _leftovers(tmp_path)

    fresh = tmp_path / "restored"
    out = await run_cli("restore", dest, "--data-dir", fresh)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["media_files"] == 2
    assert _mode(fresh) == 0o700
    assert _mode(fresh / "trioserver.db") == 0o600
    assert _mode(fresh / "signing.key") == 0o600
    assert (fresh / "signing.key").read_bytes() == (srv.data_dir / "signing.key").read_bytes()

    restored = server_factory("--no-rate-limits", data_dir=fresh)
    async with httpx.AsyncClient(base_url=restored.url, timeout=30) as http:
        r = await login(http, alice["user_id"])
        assert r.status_code == 200, r.text
        new_token = r.json()["access_token"]
        bodies = await _message_bodies(http, new_token, room_id)
        # Everything confirmed before the backup began is in it, in order, and nothing else
        # than what was sent: one consistent prefix of the history.
        assert bodies == acknowledged[:len(bodies)]
        assert len(bodies) >= before_backup
        for name, media_id in media.items():
            r = await http.get(f"{MEDIA}/download/{media_id}", headers=bearer(new_token))
            assert r.status_code == 200, r.text
            assert hashlib.sha256(r.content).digest() == hashlib.sha256(blobs[name]).digest()
        # The restored server carries on: the room accepts new events.
        await send_text(http, new_token, room_id, "after restore")
        assert (await _message_bodies(http, new_token, room_id))[-1] == "after restore"


async def test_restore_refuses_an_existing_database(
        server_factory: ServerFactory, tmp_path: Path) -> None:
    srv, _, _ = await _populated_server(server_factory)
    dest = tmp_path / "backup"
    assert (await run_cli("backup", dest, "--data-dir", srv.data_dir)).returncode == 0
    line = one_line_error(await run_cli("restore", dest, "--data-dir", srv.data_dir))
    assert "already has a database" in line
    assert "--force" in line
    # Even with --force, not while the server has the database open.
    line = one_line_error(await run_cli("restore", dest, "--data-dir", srv.data_dir, "--force"))
    assert "in use" in line
    assert srv.stop() == 0
    out = await run_cli("restore", dest, "--data-dir", srv.data_dir, "--force")
    assert out.returncode == 0, out.stderr
    assert not (srv.data_dir / "trioserver.db-wal").exists()


async def test_backup_destination_rules(server_factory: ServerFactory, tmp_path: Path) -> None:
    srv, _, _ = await _populated_server(server_factory)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    line = one_line_error(await run_cli("backup", junk, "--data-dir", srv.data_dir))
    assert "not empty" in line
    assert (junk / "notes.txt").read_text() == "mine"
    line = one_line_error(await run_cli("backup", srv.data_dir / "bk", "--data-dir",
                                        srv.data_dir))
    assert "inside the data directory" in line
    # An earlier backup is replaced; so is an empty directory.
    dest = tmp_path / "bk"
    dest.mkdir()
    first = await run_cli("backup", dest, "--data-dir", srv.data_dir)
    assert first.returncode == 0, first.stderr
    second = await run_cli("backup", dest, "--data-dir", srv.data_dir)
    assert second.returncode == 0, second.stderr
    assert json.loads((dest / "backup.json").read_text())["created_ts"] \
        == json.loads(second.stdout)["created_ts"]
    assert not _leftovers(tmp_path)


async def test_corrupted_backup_is_refused(server_factory: ServerFactory,
                                           tmp_path: Path) -> None:
    srv, _, _ = await _populated_server(server_factory)
    dest = tmp_path / "backup"
    assert (await run_cli("backup", dest, "--data-dir", srv.data_dir)).returncode == 0
    db = dest / "trioserver.db"
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)
    target = tmp_path / "target"
    line = one_line_error(await run_cli("restore", dest, "--data-dir", target))
    assert "damaged" in line
    assert not (target / "trioserver.db").exists()
    (dest / "backup.json").unlink()
    line = one_line_error(await run_cli("restore", dest, "--data-dir", target))
    assert "not a trioserver backup" in line
