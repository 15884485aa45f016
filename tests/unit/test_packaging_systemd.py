"""packaging/trioserver.service and packaging/install.sh: the unit verifies, is hardened, and
the installer stages the right files with the right modes without ever replacing a config."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from trioserver.config import load

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = PACKAGING / "trioserver.service"
INSTALL_SH = PACKAGING / "install.sh"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value assigned, in order (keys like SystemCallFilter= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"continuation lines are not expected: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"assignment outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def unit_copy_with_existing_executable(directory: Path) -> Path:
    """The unit, with ExecStart= pointing at an executable that exists on this machine."""
    text = UNIT.read_text(encoding="utf-8")
    text, count = re.subn(
        r"(?m)^ExecStart=/usr/local/bin/trioserver ", f"ExecStart={sys.executable} ", text
    )
    assert count == 1
    path = directory / "trioserver.service"
    path.write_text(text, encoding="utf-8")
    return path


# ---- the unit -----------------------------------------------------------------------------


def test_unit_is_a_notify_service_with_a_watchdog(service: dict[str, list[str]]) -> None:
    assert service["Type"] == ["notify"]
    # `all`, not `main`: the PyInstaller bootloader is the main process, its child notifies.
    assert service["NotifyAccess"] == ["all"]
    assert service["WatchdogSec"] == ["30"]
    assert service["Restart"] == ["on-failure"]
    assert service["TimeoutStopSec"] == ["30"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]
    assert service["LimitNOFILE"] == ["65536"]


def test_unit_runs_the_installed_binary_on_the_installed_config(
    service: dict[str, list[str]],
) -> None:
    assert service["ExecStart"] == ["/usr/local/bin/trioserver serve --config %d/config.toml"]
    assert service["LoadCredential"] == ["config.toml:/etc/trioserver/config.toml"]
    assert service["DynamicUser"] == ["yes"]
    assert service["StateDirectory"] == ["trioserver"]
    assert service["StateDirectoryMode"] == ["0700"]
    assert service["ConfigurationDirectory"] == ["trioserver"]
    assert service["UMask"] == ["0077"]


@pytest.mark.parametrize(
    "key",
    [
        "NoNewPrivileges", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectHome",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictNamespaces",
        "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
    ],
)
def test_unit_hardening_switches_are_on(service: dict[str, list[str]], key: str) -> None:
    assert service[key] == ["yes"]


def test_unit_hardening_values(service: dict[str, list[str]]) -> None:
    assert service["ProtectSystem"] == ["strict"]
    assert service["ProtectProc"] == ["invisible"]
    assert service["ProcSubset"] == ["pid"]
    assert service["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert service["SystemCallArchitectures"] == ["native"]
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert service["SystemCallErrorNumber"] == ["EPERM"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["AmbientCapabilities"] == [""]
    # Left out on purpose: cffi's ffi.callback() (pyOpenSSL's TLS callbacks) needs W+X memory.
    assert "MemoryDenyWriteExecute" not in service


def test_unit_installs_into_multi_user_target() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert unit["Unit"]["After"] == ["network-online.target"]
    assert unit["Unit"]["Wants"] == ["network-online.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    path = unit_copy_with_existing_executable(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_LOG_COLOR": "0"},
    )
    output = (result.stdout + result.stderr).splitlines()
    # Lines about other units (the host's own, in odd containers) are not ours to fix.
    ours = [line for line in output if "trioserver" in line]
    assert ours == []
    assert result.returncode == 0, output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_security_exposure_stays_low(tmp_path: Path) -> None:
    path = unit_copy_with_existing_executable(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline unavailable: {result.stderr.strip()}")
    assert float(found.group(1)) <= 2.0, result.stdout  # 1.4 when written; 10 is unhardened


# ---- install.sh ---------------------------------------------------------------------------

needs_install = pytest.mark.skipif(
    shutil.which("install") is None or shutil.which("awk") is None,
    reason="needs install(1) and awk",
)


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    """A stand-in for dist/trioserver: runs this checkout's CLI (generate-config is used)."""
    path = tmp_path / "trioserver-build"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trioserver "$@"\n', encoding="utf-8")
    path.chmod(0o755)
    return path


def run_install(
    *args: str | Path, path_prefix: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(INSTALL_SH), *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_install
def test_install_stages_binary_unit_and_config(tmp_path: Path, fake_binary: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = run_install("--root", root, "--binary", fake_binary, "--server-name", "example.org")
    assert result.returncode == 0, result.stderr

    binary = root / "usr/local/bin/trioserver"
    unit = root / "etc/systemd/system/trioserver.service"
    config = root / "etc/trioserver/config.toml"
    assert mode(binary) == 0o755
    assert binary.read_bytes() == fake_binary.read_bytes()
    assert mode(unit) == 0o644
    assert unit.read_bytes() == UNIT.read_bytes()
    assert mode(config) == 0o640
    table = tomllib.loads(config.read_text(encoding="utf-8"))
    assert table["data_dir"] == "/var/lib/trioserver"
    assert table["server_name"] == "example.org"
    # The whole generated config is still valid, and data_dir is the unit's state directory.
    loaded = load(config, environ={})
    assert loaded.data_dir == Path("/var/lib/trioserver")
    state_directory = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]["StateDirectory"]
    assert loaded.data_dir == Path("/var/lib") / state_directory[0]
    # Nothing else: no temporary files left behind.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "etc/systemd/system/trioserver.service",
        "etc/trioserver/config.toml",
        "usr/local/bin/trioserver",
    ]
    assert "systemctl was not run" in result.stdout


@needs_install
def test_install_never_overwrites_an_existing_config(tmp_path: Path, fake_binary: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = run_install("--root", root, "--binary", fake_binary, "--server-name", "example.org")
    assert first.returncode == 0, first.stderr
    config = root / "etc/trioserver/config.toml"
    edited = config.read_text(encoding="utf-8").replace("open = false", "open = true")
    config.write_text(edited, encoding="utf-8")
    config.chmod(0o600)

    # An upgrade: a new binary; --server-name is not needed once the config exists.
    fake_binary.write_text(fake_binary.read_text(encoding="utf-8") + "# v2\n", encoding="utf-8")
    for extra in ((), ("--server-name", "other.example")):
        again = run_install("--root", root, "--binary", fake_binary, *extra)
        assert again.returncode == 0, again.stderr
        assert "kept the existing" in again.stdout
        assert config.read_text(encoding="utf-8") == edited
        assert mode(config) == 0o600
    assert (root / "usr/local/bin/trioserver").read_bytes() == fake_binary.read_bytes()


@needs_install
def test_install_destdir_is_the_default_root(tmp_path: Path, fake_binary: Path) -> None:
    root = tmp_path / "destdir"
    root.mkdir()
    env = {**os.environ, "DESTDIR": str(root)}
    result = subprocess.run(
        [str(INSTALL_SH), "--binary", str(fake_binary), "--server-name", "example.org"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (root / "etc/trioserver/config.toml").is_file()


@needs_install
def test_install_needs_a_server_name_for_a_new_config(tmp_path: Path, fake_binary: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = run_install("--root", root, "--binary", fake_binary)
    assert result.returncode != 0
    assert "--server-name" in result.stderr
    assert list(root.iterdir()) == []  # refused before installing anything


@needs_install
def test_install_with_an_invalid_server_name_leaves_no_config(
    tmp_path: Path, fake_binary: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = run_install("--root", root, "--binary", fake_binary, "--server-name", "not valid")
    assert result.returncode != 0
    assert "generate-config failed" in result.stderr
    assert list((root / "etc/trioserver").iterdir()) == []


def test_install_refuses_to_install_into_slash_as_non_root(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_id = fake_bin / "id"
    fake_id.write_text('#!/bin/sh\n[ "$1" = -u ] && echo 1000 && exit 0\nexec /usr/bin/id "$@"\n')
    fake_id.chmod(0o755)
    # A binary that does not exist: even if the check were broken, nothing would be installed.
    missing = tmp_path / "missing"
    for args in ((), ("--root", "/")):
        result = run_install(*args, "--binary", missing, "--server-name", "example.org",
                             path_prefix=fake_bin)
        assert result.returncode != 0
        assert "needs root" in result.stderr
        assert "--root DIR" in result.stderr


def test_install_rejects_start_with_root_and_unknown_arguments(tmp_path: Path) -> None:
    result = run_install("--root", tmp_path, "--start")
    assert result.returncode != 0
    assert "--start" in result.stderr
    result = run_install("--root", tmp_path, "--frobnicate")
    assert result.returncode != 0
    assert "unknown argument: --frobnicate" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_install_help() -> None:
    result = run_install("--help")
    assert result.returncode == 0
    for option in ("--server-name", "--binary", "--root", "--start"):
        assert option in result.stdout
    assert os.access(INSTALL_SH, os.X_OK)
