"""systemd readiness, status and watchdog notifications (`Type=notify`, `WatchdogSec=`).

The protocol (sd_notify(3)) is one datagram of newline-separated `KEY=VALUE` assignments
("READY=1", "STOPPING=1", "STATUS=...", "WATCHDOG=1", "MAINPID=...") sent to the AF_UNIX
SOCK_DGRAM socket whose address systemd puts in `$NOTIFY_SOCKET`: a filesystem path, or an
abstract socket name written with a leading '@' (which stands for the leading NUL byte of the
real address). That is a single `sendto`, so neither libsystemd nor a Python binding is needed,
and the one-file executable stays free of another native library.

Outside systemd (no `$NOTIFY_SOCKET`) every call is a cheap no-op. Sending never raises: a
notification that cannot be delivered is logged at debug level and reported as `False`, because
a supervisor hiccup must never take the homeserver down.

The watchdog: with `WatchdogSec=`, systemd sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`) and
restarts the service when no "WATCHDOG=1" arrives in time. `run_watchdog` pings from a trio
task, so the pings stop, and systemd steps in, exactly when the event loop stops running tasks.

The PyInstaller one-file executable runs as two processes: the bootloader (the service's main
process, which unpacks the bundle, forwards signals and waits) and the Python interpreter, its
child. So the unit says `NotifyAccess=all` (the child is not the main process), and a frozen
program also accepts a `$WATCHDOG_PID` naming its parent.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import trio

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | None:
    """The `socket` address for a `$NOTIFY_SOCKET` value, or None for kinds not supported
    here (e.g. systemd's `vsock:` addresses for virtual machines)."""
    if value.startswith("@"):
        # Abstract namespace (Linux): the '@' is a stand-in for the leading NUL byte.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(*states: str) -> bool:
    """Send `states` (e.g. "READY=1", "STATUS=serving") as one notification to systemd.

    Returns True when the datagram was sent; False, doing nothing, when `$NOTIFY_SOCKET` is
    unset or empty (not run by systemd) or no states were given; False, after a debug log, when
    sending failed. Never raises. A state should not contain a newline: the receiver would read
    the text after it as another assignment.
    """
    value = os.environ.get("NOTIFY_SOCKET", "")
    if not value or not states:
        return False
    address = _socket_address(value)
    if address is None:
        log.debug("unsupported NOTIFY_SOCKET address %r; notification dropped", value)
        return False
    message = "\n".join(states).encode("utf-8")
    try:
        # One short-lived socket per call: notifications are rare (start, stop, a watchdog ping
        # every few seconds), and nothing has to be reopened after a fork.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(message, address)
    except OSError as error:
        log.debug("systemd notification %r to %r failed: %s", states, value, error)
        return False
    return True


def _watchdog_pids() -> set[int]:
    """Process ids a `$WATCHDOG_PID` may name for this process to be the one to ping."""
    pids = {os.getpid()}
    if getattr(sys, "frozen", False):
        # PyInstaller one-file: systemd's main process is the bootloader, our parent.
        pids.add(os.getppid())
    return pids


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    recommends. None when the watchdog is off: the variable is unset, not a positive integer,
    or `$WATCHDOG_PID` is set to something other than this process's id (the variables were
    meant for another process and inherited), or its parent's id in a frozen program."""
    usec_text = os.environ.get("WATCHDOG_USEC", "")
    pid_text = os.environ.get("WATCHDOG_PID", "")
    try:
        usec = int(usec_text)
        if pid_text and int(pid_text) not in _watchdog_pids():
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


async def run_watchdog(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Send "WATCHDOG=1" now and then every `watchdog_interval()` seconds until cancelled.

    Reports started at once. When no watchdog is configured it returns right after reporting
    started, so starting it in a nursery costs nothing outside systemd.
    """
    interval = watchdog_interval()
    task_status.started()
    if interval is None:
        return
    log.debug("systemd watchdog: pinging every %.3f s", interval)
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)
