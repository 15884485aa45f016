"""Run the real `python -m trioserver ...` CLI from async tests without blocking the event loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio


def cli_env() -> dict[str, str]:
    """The test process's environment without TRIOSERVER_* settings (as the server fixture)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIOSERVER_")}


async def run_cli(*args: str | Path, stdin: str | None = None,
                  limit_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `trioserver ARGS...`; return the finished process with text stdout and stderr."""
    with trio.fail_after(limit_s):
        done = await trio.run_process(
            [sys.executable, "-m", "trioserver", *map(str, args)],
            stdin=stdin.encode() if stdin is not None else b"",
            capture_stdout=True, capture_stderr=True, check=False, env=cli_env(),
        )
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode(), done.stderr.decode())


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """Assert the CLI failed with exit 1 and one `trioserver: ...` line; return that line."""
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("trioserver: "), out.stderr
    return lines[0]
