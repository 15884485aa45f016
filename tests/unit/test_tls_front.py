"""The TLS front in-process: context checks, group negotiation, pq_only, and data transfer."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio
from OpenSSL import SSL

from tests.tls_certs import make_cert
from tests.tls_client import tls_request
from trioserver.net.tls_context import (
    PQ_GROUPS,
    TLSSetupError,
    build_server_context,
    server_groups,
    supported_groups,
)
from trioserver.net.tls_stream import TLSListener, TLSStream


def test_this_openssl_has_the_hybrid_group() -> None:
    assert "X25519MLKEM768" in supported_groups(PQ_GROUPS)
    assert server_groups(pq_only=False)[0] == "X25519MLKEM768"
    assert "X25519" in server_groups(pq_only=False)
    assert all("MLKEM" in g for g in server_groups(pq_only=True))


def test_missing_certificate_is_named(tmp_path: Path) -> None:
    with pytest.raises(TLSSetupError, match=r"tls\.cert: cannot read .*nope\.pem"):
        build_server_context(tmp_path / "nope.pem", tmp_path / "key.pem")


def test_garbage_certificate_is_refused(tmp_path: Path) -> None:
    files = make_cert(tmp_path)
    files.cert.write_text("not a certificate\n")
    with pytest.raises(TLSSetupError, match="is not a PEM certificate"):
        build_server_context(files.cert, files.key)


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    files = make_cert(tmp_path, days_valid=1, days_offset=-10)
    with pytest.raises(TLSSetupError, match="expired on"):
        build_server_context(files.cert, files.key)


def test_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    one = make_cert(tmp_path / "one")
    two = make_cert(tmp_path / "two")
    with pytest.raises(TLSSetupError, match="does not match the certificate"):
        build_server_context(one.cert, two.key)


def test_missing_or_garbage_key_is_refused(tmp_path: Path) -> None:
    files = make_cert(tmp_path)
    with pytest.raises(TLSSetupError, match=r"tls\.key: cannot read"):
        build_server_context(files.cert, tmp_path / "missing.pem")
    files.key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(TLSSetupError, match=r"tls\.key: .* cannot be used"):
        build_server_context(files.cert, files.key)


async def _echo(stream: TLSStream) -> None:
    """Answer each request line with the bytes received, as one HTTP-ish response."""
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        chunk = await stream.receive_some()
        if not chunk:
            return
        received += chunk
    length = int(received.split(b" ", 2)[1].lstrip(b"/") or b"0")
    await stream.send_all(b"x" * length)
    await stream.aclose()


async def _serve_once(context: SSL.Context, handshakes: list[tuple[str, str]],
                      task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    sockets = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = TLSListener(sockets[0], context, lambda g, v: handshakes.append((g, v)))
    task_status.started(sockets[0].socket.getsockname()[1])

    async def handle(stream: TLSStream) -> None:
        try:
            await _echo(stream)
        except trio.BrokenResourceError:
            await stream.aclose()

    await trio.serve_listeners(handle, [listener])


async def _start(tmp_path: Path, nursery: trio.Nursery, *, pq_only: bool
                 ) -> tuple[int, list[tuple[str, str]]]:
    files = make_cert(tmp_path)
    handshakes: list[tuple[str, str]] = []
    ctx = build_server_context(files.cert, files.key, pq_only=pq_only)
    port: int = await nursery.start(_serve_once, ctx, handshakes)
    return port, handshakes


@pytest.mark.parametrize(
    ("offered", "negotiated"),
    [("X25519MLKEM768", "X25519MLKEM768"),
     ("X25519:X25519MLKEM768", "X25519MLKEM768"),  # the server's preference wins
     ("X25519", "x25519"),
     ("secp256r1", "secp256r1")],
)
async def test_groups_negotiated(tmp_path: Path, offered: str, negotiated: str) -> None:
    async with trio.open_nursery() as nursery:
        port, handshakes = await _start(tmp_path, nursery, pq_only=False)
        result = await trio.to_thread.run_sync(
            lambda: tls_request("127.0.0.1", port, offered, b"GET /5 HTTP/1.1\r\n\r\n"))
        assert result.group == negotiated
        assert result.version == "TLSv1.3"
        assert result.response == b"xxxxx"
        assert handshakes == [(negotiated, "TLSv1.3")]
        nursery.cancel_scope.cancel()


async def test_pq_only_refuses_classical_and_tls12(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        port, handshakes = await _start(tmp_path, nursery, pq_only=True)
        for groups, max_version in (("X25519:secp256r1", None),
                                    ("X25519MLKEM768:X25519", SSL.TLS1_2_VERSION)):
            with pytest.raises(SSL.Error):
                await trio.to_thread.run_sync(partial(
                    tls_request, "127.0.0.1", port, groups, b"GET /1 HTTP/1.1\r\n\r\n",
                    max_version=max_version))
        ok = await trio.to_thread.run_sync(
            lambda: tls_request("127.0.0.1", port, "X25519MLKEM768", b"GET /3 HTTP/1.1\r\n\r\n"))
        assert ok.group == "X25519MLKEM768"
        assert ok.response == b"xxx"
        assert handshakes == [("X25519MLKEM768", "TLSv1.3")]
        nursery.cancel_scope.cancel()


async def test_large_response_and_tls12_fallback(tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 17  # many records, more than any socket buffer
    async with trio.open_nursery() as nursery:
        port, _ = await _start(tmp_path, nursery, pq_only=False)
        big = await trio.to_thread.run_sync(lambda: tls_request(
            "127.0.0.1", port, "X25519MLKEM768", f"GET /{size} HTTP/1.1\r\n\r\n".encode()))
        assert len(big.response) == size
        old = await trio.to_thread.run_sync(lambda: tls_request(
            "127.0.0.1", port, "X25519:secp256r1", b"GET /2 HTTP/1.1\r\n\r\n",
            max_version=SSL.TLS1_2_VERSION))
        assert old.version == "TLSv1.2"
        assert old.response == b"xx"
        nursery.cancel_scope.cancel()


async def test_plaintext_client_is_dropped(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        port, handshakes = await _start(tmp_path, nursery, pq_only=False)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
        # At most a TLS alert record (content type 21), never an HTTP answer.
        assert not data or data[0] == 21
        assert handshakes == []
        await stream.aclose()
        nursery.cancel_scope.cancel()
