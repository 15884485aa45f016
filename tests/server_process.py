"""Start the real `trioserver serve` as a subprocess on a random loopback port."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0


@dataclass
class ServerProcess:
    url: str
    data_dir: Path
    server_name: str
    proc: subprocess.Popen[str]
    log_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    def listener_url(self, name: str, timeout: float = 10.0) -> str:
        """The first URL of another listener ("tls", "metrics") from the start-up lines."""
        prefix = f"{name} listening on "
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while True:
            for line in self.stdout_lines:
                if line.startswith(prefix):
                    return line[len(prefix):].split(",")[0].strip()
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name!r} listener line in {self.stdout_lines!r}")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"server stdout ended: {self.stdout_lines!r}")
            self.stdout_lines.append(line.rstrip("\n"))

    def wait_log(self, needle: str, timeout: float = 5.0) -> str:
        """The log once it contains `needle` (lines such as the access log are written just
        after the response has been sent, so a client can be faster than the line)."""
        deadline = time.monotonic() + timeout
        while needle not in (text := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the server log:\n{text}")
            time.sleep(0.02)
        return text

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Ask the server to stop; return its exit code (killing it if it does not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not stop within {timeout}s") from None
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.stdout_lines.extend(self.proc.stdout.read().splitlines())
            self.proc.stdout.close()
        return self.proc.returncode


def start_server(
    data_dir: Path,
    *args: str,
    config_text: str | None = None,
    server_name: str = "localhost",
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Run `python -m trioserver serve` and wait for its "listening on" line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "trioserver", "serve", "--data-dir", str(data_dir),
           "--listen", "127.0.0.1:0", "--server-name", server_name,
           "--metrics-listen", "127.0.0.1:0"]
    if config_text is not None:
        config_path = data_dir / "test-config.toml"
        config_path.write_text(config_text, encoding="utf-8")
        cmd += ["--config", str(config_path)]
    cmd += list(args)
    log_path = data_dir / "server.log"
    log_file = log_path.open("w", encoding="utf-8")
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOSERVER_")}
    proc_env.update(env or {})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=proc_env)
    log_file.close()
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT_S
    lines: list[str] = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if " listening on http://" in line:
            url = line.split(" listening on ", 1)[1].split()[0]
            selector.close()
            return ServerProcess(url, data_dir, server_name, proc, log_path, lines)
    selector.close()
    proc.kill()
    proc.wait()
    raise AssertionError(
        f"server did not start: stdout={lines!r}\nlog:\n{log_path.read_text(errors='replace')}"
    )
