"""sd_notify over a fake NOTIFY_SOCKET: exact datagrams, no-ops outside systemd, the watchdog."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from trioserver import systemd_notify
from trioserver.systemd_notify import notify, run_watchdog, watchdog_interval


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def _received(sock: socket.socket) -> list[bytes]:
    """Every datagram queued on `sock`, without waiting."""
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # AF_UNIX paths are limited to ~108 bytes; pytest's tmp_path usually fits, but be safe.
    path = tmp_path / "notify"
    if len(bytes(path)) > 100:
        pytest.skip("tmp_path too long for an AF_UNIX socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"trioserver-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield sock


def test_path_socket_gets_one_newline_joined_datagram(path_socket: socket.socket) -> None:
    assert notify("READY=1", "STATUS=serving on 127.0.0.1:8008")
    assert notify("STOPPING=1")
    assert _received(path_socket) == [
        b"READY=1\nSTATUS=serving on 127.0.0.1:8008",
        b"STOPPING=1",
    ]


def test_abstract_socket(abstract_socket: socket.socket) -> None:
    assert notify("READY=1", f"MAINPID={os.getpid()}")
    assert _received(abstract_socket) == [f"READY=1\nMAINPID={os.getpid()}".encode()]


def test_status_is_sent_as_utf8(path_socket: socket.socket) -> None:
    assert notify("STATUS=démarré")
    assert _received(path_socket) == ["STATUS=démarré".encode()]


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_variable_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify("READY=1") is False


def test_no_states_sends_nothing(path_socket: socket.socket) -> None:
    assert notify() is False
    assert _received(path_socket) == []


@pytest.mark.parametrize(
    "value",
    [
        "/nonexistent-dir-for-trioserver-tests/notify",
        "@trioserver-test-nobody-listens-here-" + uuid.uuid4().hex,
        "vsock:2:1234",
        "relative/path",
    ],
)
def test_unreachable_or_unsupported_socket_returns_false(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify("READY=1") is False


def test_socket_that_is_not_a_socket_returns_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_file = tmp_path / "not-a-socket"
    plain_file.write_text("")
    monkeypatch.setenv("NOTIFY_SOCKET", str(plain_file))
    assert notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("", None, None),
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("20000", None, 0.01),
        ("30000000", "other", None),
        ("30000000", "not-a-pid", None),
        ("0", None, None),
        ("-5", None, None),
        ("thirty", None, None),
        ("1.5", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid == "self":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    elif pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert watchdog_interval() == expected


def test_watchdog_pid_of_the_parent_counts_only_when_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PyInstaller one-file: systemd's main process (WATCHDOG_PID) is the bootloader, whose
    # child runs Python. A plain interpreter started by some main process must not ping.
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1" if os.getppid() != 1 else "2")
    assert watchdog_interval() is None


async def test_watchdog_pings_every_half_timeout(
    path_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")  # WatchdogSec=30
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    async with trio.open_nursery() as nursery:
        await nursery.start(run_watchdog)
        # The first ping goes out at once, before anything else has run for long.
        assert _received(path_socket) == [b"WATCHDOG=1"]
        await trio.sleep(14.9)
        assert _received(path_socket) == []
        await trio.sleep(0.2)  # t = 15.1
        assert _received(path_socket) == [b"WATCHDOG=1"]
        await trio.sleep(30)  # t = 45.1: pings at 30 and 45
        assert _received(path_socket) == [b"WATCHDOG=1", b"WATCHDOG=1"]
        nursery.cancel_scope.cancel()
    await trio.sleep(100)
    assert _received(path_socket) == []


async def test_watchdog_without_configuration_returns_at_once(
    path_socket: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_watchdog)
    assert trio.current_time() == 0
    assert _received(path_socket) == []


async def test_watchdog_survives_a_vanished_socket(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    sent: list[tuple[str, ...]] = []

    def failing_notify(*states: str) -> bool:
        sent.append(states)
        return False

    monkeypatch.setattr(systemd_notify, "notify", failing_notify)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    with trio.move_on_after(3.5):
        await run_watchdog()
    assert sent == [("WATCHDOG=1",)] * 4  # t = 0, 1, 2, 3
