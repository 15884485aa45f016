"""The real server speaks systemd's notify protocol to a fake NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.server_process import start_server


def _datagrams(sock: socket.socket, until: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    try:
        srv = start_server(tmp_path / "srv",
                           env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
        try:
            seen = _datagrams(receiver, time.monotonic() + 1.0)
            ready = [d for d in seen if "READY=1" in d.splitlines()]
            assert len(ready) == 1, seen
            assert f"STATUS=serving localhost on {srv.url}" in ready[0].splitlines()
            # Pings every WATCHDOG_USEC/2 = 0.1 s: about ten in a second.
            pings = [d for d in seen if d == "WATCHDOG=1"]
            assert len(pings) >= 4, seen
            srv.proc.send_signal(signal.SIGTERM)
            after = _datagrams(receiver, time.monotonic() + 3.0)
            assert "STOPPING=1" in after, after
            assert srv.proc.wait(timeout=10) == 0
        finally:
            srv.stop()
    finally:
        receiver.close()


def test_no_notify_socket_is_fine(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv", env={"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})
    assert srv.stop() == 0
