"""The executable needs no Python on the machine: run it with every Python install hidden.

A private mount namespace (`unshare -m`, root only) covers each Python installation with an
empty tmpfs and each `python*` executable with /dev/null, then `env -i` runs the binary. Skipped
where mount namespaces are not allowed.
"""

from __future__ import annotations

import glob
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.packaging.test_binary import _REASON, BINARY

pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def _python_places() -> tuple[list[str], list[str]]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            *glob.glob("/usr/lib/python3*"), *glob.glob("/usr/local/lib/python3*")}
    files = {*glob.glob("/usr/bin/python*"), *glob.glob("/usr/local/bin/python*")}
    return sorted(d for d in dirs if Path(d).is_dir()), sorted(f for f in files
                                                               if Path(f).is_file())


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="no mount namespaces here (needs root)")
def test_serves_with_no_python_installed(tmp_path: Path) -> None:
    dirs, files = _python_places()
    hide = [f"mount -t tmpfs none {shlex.quote(d)}" for d in dirs]
    hide += [f"mount --bind /dev/null {shlex.quote(f)}" for f in files]
    # Inside: prove Python is gone, then become the server (exec keeps the PID for signals).
    script = " && ".join([
        *hide,
        "! python3 -c 'print(1)' 2>/dev/null",
        f"test ! -e {shlex.quote(sys.executable)} -o ! -s {shlex.quote(sys.executable)}",
        f"cd {shlex.quote(str(tmp_path))}",
        f"exec env -i {shlex.quote(str(BINARY))} serve --server-name example.org "
        "--data-dir data --listen 127.0.0.1:0 --metrics-listen ''",
    ])
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert " listening on http://" in line, (line, proc.stderr.read() if proc.stderr else "")
        url = line.split(" listening on ", 1)[1].split()[0]
        r = httpx.get(f"{url}/_matrix/client/versions", timeout=10)
        assert r.status_code == 200
        assert "v1.19" in r.json()["versions"]
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "data" / "trioserver.db").is_file()
