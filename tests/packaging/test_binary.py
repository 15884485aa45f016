"""The one-file executable, dist/trioserver, run under `env -i` from a temporary directory.

The checks live in packaging/smoke_binary.py (`make smoke` runs them as a script); here each is a
test. Skipped, with the reason, when the binary is missing or older than a source file: `make
binary` (or `make smoke`) builds it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "trioserver"
SOURCES = (ROOT / "trioserver", ROOT / "schema", ROOT / "packaging" / "trioserver.spec",
           ROOT / "packaging" / "entry.py")


def _load_smoke() -> ModuleType:
    # Loaded by path: a `packaging` package name would clash with the PyPI `packaging` library.
    name = "trioserver_smoke_binary"
    spec = importlib.util.spec_from_file_location(name, ROOT / "packaging" / "smoke_binary.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _why_not_run() -> str | None:
    if not BINARY.is_file():
        return f"{BINARY.relative_to(ROOT)} is not built (make binary)"
    built = BINARY.stat().st_mtime
    for source in SOURCES:
        files = [source] if source.is_file() else source.rglob("*")
        for path in files:
            if (path.is_file() and "__pycache__" not in path.parts
                    and path.stat().st_mtime > built):
                return (f"{BINARY.relative_to(ROOT)} is older than {path.relative_to(ROOT)} "
                        "(make binary)")
    return None


_REASON = _why_not_run()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]
smoke: Any = _load_smoke()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("binary")


@pytest.fixture(scope="module")
def offline_user(work: Path) -> str:
    user_id: str = smoke.check_register_user(BINARY, work, work / "data", "offline")
    return user_id


@pytest.fixture(scope="module")
def tls_files(work: Path) -> tuple[Path, Path]:
    """(config enabling the TLS listener, its self-signed certificate)."""
    tls: tuple[Path, Path] | None = smoke.tls_config(BINARY, work)
    assert tls is not None, "this build has a [tls] section and the venv has cryptography"
    return tls


@pytest.fixture(scope="module")
def serve_args(work: Path, tls_files: tuple[Path, Path]) -> list[str]:
    """Metrics listener off; the TLS listener on."""
    flags: list[str] = smoke.serve_flags(BINARY, work)
    return [*flags, "--config", str(tls_files[0])]


@pytest.fixture(scope="module")
def server(work: Path, offline_user: str, serve_args: list[str]) -> Iterator[Any]:
    """One `serve` on the data dir where `register-user` created `offline_user`."""
    with smoke.serving(BINARY, work, work / "data", *serve_args) as running:
        yield running
        running.stop()


def test_version(work: Path) -> None:
    assert smoke.check_version(BINARY, work).startswith("trioserver ")


def test_generate_config(work: Path) -> None:
    smoke.check_generate_config(BINARY, work)


def test_unpacks_into_tmpdir_and_cleans_up(work: Path, tmp_path: Path) -> None:
    smoke.check_tmpdir_honoured(BINARY, work, tmp_path)


def test_versions(server: Any) -> None:
    smoke.check_versions(server)


def test_bundle_contents(server: Any) -> None:
    smoke.check_bundle_contents(BINARY, server.unpack_dir)


def test_tls_listener_negotiates_post_quantum(server: Any, tls_files: tuple[Path, Path]) -> None:
    # The venv has pyOpenSSL, so the client offers X25519MLKEM768 alone.
    assert smoke.check_tls(server, tls_files[1]) == "TLSv1.3, X25519MLKEM768"


def test_sighup_to_the_bootloader_reloads_tls(server: Any, tls_files: tuple[Path, Path]
                                              ) -> None:
    """systemd's ExecReload signals the main process, the bootloader: it must forward SIGHUP
    to the server, which reloads the certificate and goes on serving."""
    os.kill(server.pids[0], signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "SIGHUP: TLS certificate and key reloaded" not in server.stderr_path.read_text():
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.05)
    smoke.check_versions(server)
    assert smoke.check_tls(server, tls_files[1]) == "TLSv1.3, X25519MLKEM768"


def test_offline_user_logs_in(server: Any, offline_user: str) -> None:
    smoke.check_login(server, offline_user)


def test_png_thumbnail(server: Any) -> None:
    token = smoke.check_register(server, "pngowner")
    smoke.check_thumbnail(server, token, smoke.png_rgb(64, 48), "image/png", (32, 24))


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/gif", "image/webp"])
def test_pillow_formats_thumbnail(server: Any, content_type: str) -> None:
    images = {ctype: (data, size) for ctype, data, size in smoke.pillow_images()}
    assert content_type in images, "Pillow is a runtime dependency, so the venv has it"
    token = smoke.check_register(server, f"owner{content_type.split('/')[1]}")
    data, expected = images[content_type]
    smoke.check_thumbnail(server, token, data, content_type, expected)


def test_sigterm_exits_0_and_removes_unpack_dir(work: Path) -> None:
    flags = smoke.serve_flags(BINARY, work)
    with smoke.serving(BINARY, work, work / "stopping", *flags) as running:
        smoke.check_versions(running)
        assert running.unpack_dir is not None
        assert running.unpack_dir.is_dir()
        smoke.check_stop(running)


def test_sigterm_to_every_process_exits_0(work: Path) -> None:
    """systemd signals the bootloader and the server at once (KillMode=control-group)."""
    flags = smoke.serve_flags(BINARY, work)
    with smoke.serving(BINARY, work, work / "stopping-all", *flags) as running:
        smoke.check_versions(running)
        assert len(running.pids) == 2, "one-file: the bootloader and the server it starts"
        smoke.check_stop(running, every_process=True)
