"""Interoperability: matrix-js-sdk clients on Simplified Sliding Sync (interop/js/sliding_sync.mjs).

The clients sync with `SlidingSync` (POST /_matrix/client/unstable/org.matrix.simplified_msc3575/
sync) instead of /v3/sync: a 20-room window of 25 rooms, opening a room (room subscription with a
larger timeline_limit) and paginating back, then an encrypted room between two Rust-crypto
clients with the to_device/e2ee/typing/receipts extensions. Node and matrix-js-sdk come from
interop/js/node_modules, installed like the /v3/sync interop test does (fail, not skip, without
npm).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.e2e.test_interop_js import JS_DIR, NODE, _describe, _ensure_node_modules
from tests.server_process import ServerProcess

SCRIPT = JS_DIR / "sliding_sync.mjs"
SCRIPT_TIMEOUT_S = 60

# Steps that must pass against trioserver.
LIST_STEPS = ["register", "create_rooms", "room_list", "open_room", "scrollback", "start_bob"]
# encrypted_room/decrypt/reply_decrypt need every state change in `required_state`, including
# state events that are also in the timeline: matrix-js-sdk 43 (like matrix-rust-sdk) takes
# room state from `required_state` only.
E2EE_STEPS = ["encrypted_room", "decrypt", "reply_decrypt", "typing", "receipt"]

@pytest.fixture(scope="module")
def sliding_result(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, Any]:
    _ensure_node_modules()
    http_log = tmp_path_factory.mktemp("interop_js_sliding") / "http.log"
    cmd = [str(NODE), str(SCRIPT), server.url, str(http_log)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
                              cwd=JS_DIR, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"{SCRIPT.name} did not finish in {SCRIPT_TIMEOUT_S}s; output tail:\n"
                    f"{(out or '')[-4000:]}\nHTTP log: {http_log}\n"
                    f"server log: {server.log_path}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("INTEROP_SUMMARY ")]
    if not lines:
        pytest.fail(f"{SCRIPT.name} printed no summary (rc={proc.returncode}):\n"
                    f"stdout tail:\n{proc.stdout[-4000:]}\nstderr tail:\n{proc.stderr[-4000:]}")
    summary: dict[str, Any] = json.loads(lines[-1].split(" ", 1)[1])
    summary["_rc"] = proc.returncode
    summary["_http_log"] = str(http_log)
    summary["_server_log"] = str(server.log_path)
    return summary


def _failed(summary: dict[str, Any], steps: list[str]) -> list[str]:
    return [s for s in steps if not summary["steps"].get(s, {}).get("ok")]


def test_js_sdk_sliding_sync_room_list(sliding_result: dict[str, Any]) -> None:
    failed = _failed(sliding_result, LIST_STEPS)
    assert not failed, f"steps failed: {failed}\n{_describe(sliding_result)}"
    assert sliding_result["_rc"] == 0, _describe(sliding_result)
    steps = sliding_result["steps"]
    assert steps["room_list"]["detail"]["count"] == 25
    assert isinstance(sliding_result["first_list_ms"], int)
    assert steps["open_room"]["detail"]["wire"]["unstable_expanded_timeline"] is True
    assert steps["scrollback"]["detail"]["first"] == "m.room.create"


def test_js_sdk_sliding_sync_e2ee_typing_receipts(sliding_result: dict[str, Any]) -> None:
    failed = _failed(sliding_result, E2EE_STEPS)
    assert not failed, f"steps failed: {failed}\n{_describe(sliding_result)}"
    steps = sliding_result["steps"]
    assert steps["decrypt"]["detail"]["body"] == "hello over sliding sync"
    assert steps["decrypt"]["detail"]["wireType"] == "m.room.encrypted"
    assert "m.room.encrypted" in steps["decrypt"]["detail"]["bobToDeviceTypes"]


def test_js_sdk_sliding_sync_no_http_errors(sliding_result: dict[str, Any]) -> None:
    """No request of either client got an unexpected error status (once a membership-cache
    race in RoomLister.build gave intermittent 500s here)."""
    assert not sliding_result["http_failures"], _describe(sliding_result)
