"""The built-in TLS front on a real server: PQ negotiation, pq_only, HTTP/2, bad certificates."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from OpenSSL import SSL

from tests.conftest import ServerFactory
from tests.e2e.helpers import register, unique
from tests.server_process import ServerProcess
from tests.tls_certs import make_cert
from tests.tls_client import http_get, tls_request


def _tls_config(tmp_path: Path, *, pq_only: bool = False, extra: str = "") -> str:
    files = make_cert(tmp_path / "certs")
    return (f'[tls]\ncert = "{files.cert}"\nkey = "{files.key}"\nlisten = "127.0.0.1:0"\n'
            f"pq_only = {str(pq_only).lower()}\n{extra}")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _body(response: bytes) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    parsed: dict[str, object] = json.loads(body)
    return parsed


async def _metric_lines(srv: ServerProcess, needle: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(srv.listener_url("metrics"))).text
    return [line for line in text.splitlines() if line.startswith(needle)]


async def test_pq_only_client_negotiates_x25519mlkem768(server_factory: ServerFactory,
                                                         tmp_path: Path) -> None:
    srv = server_factory("--open-registration", config_text=_tls_config(tmp_path))
    host, port = _host_port(srv.listener_url("tls"))
    # A real Matrix round trip over the TLS front: register on the plain listener, then
    # whoami over TLS with a client that offers nothing but the hybrid group.
    async with httpx.AsyncClient(base_url=srv.url) as http:
        user = await register(http, unique("tls"))
    auth = f"Authorization: Bearer {user['access_token']}\r\n"
    result = await trio.to_thread.run_sync(lambda: tls_request(
        host, port, "X25519MLKEM768", http_get("/_matrix/client/v3/account/whoami", auth)))
    assert result.group == "X25519MLKEM768"
    assert result.version == "TLSv1.3"
    assert _body(result.response)["user_id"] == user["user_id"]
    # A classical-only client still gets in when pq_only is off.
    classic = await trio.to_thread.run_sync(lambda: tls_request(
        host, port, "X25519", http_get("/_matrix/client/versions")))
    assert classic.group == "x25519"
    assert "versions" in _body(classic.response)
    counted = await _metric_lines(srv, "trioserver_tls_handshakes_total{")
    assert 'trioserver_tls_handshakes_total{group="X25519MLKEM768",version="TLSv1.3"} 1' in counted
    assert 'trioserver_tls_handshakes_total{group="x25519",version="TLSv1.3"} 1' in counted


async def test_pq_only_refuses_a_classical_client(server_factory: ServerFactory,
                                                  tmp_path: Path) -> None:
    srv = server_factory(config_text=_tls_config(tmp_path, pq_only=True))
    host, port = _host_port(srv.listener_url("tls"))
    with pytest.raises(SSL.Error):
        await trio.to_thread.run_sync(lambda: tls_request(
            host, port, "X25519:secp256r1:secp384r1", http_get("/_matrix/client/versions")))
    ok = await trio.to_thread.run_sync(lambda: tls_request(
        host, port, "X25519MLKEM768", http_get("/_matrix/client/versions")))
    assert ok.group == "X25519MLKEM768"
    # The server is unharmed by the refused handshake.
    async with httpx.AsyncClient(base_url=srv.url) as http:
        assert (await http.get("/health")).text == "OK"


async def test_http2_by_alpn_and_http11_fallback(server_factory: ServerFactory,
                                                 tmp_path: Path) -> None:
    srv = server_factory(config_text=_tls_config(tmp_path))
    url = srv.listener_url("tls")
    # httpx runs on the system OpenSSL (classical groups): the fallback path, over HTTP/2.
    async with httpx.AsyncClient(base_url=url, http2=True, verify=False) as h2:
        r = await h2.get("/_matrix/client/versions")
        assert r.status_code == 200
        assert r.http_version == "HTTP/2"
        assert "versions" in r.json()
    async with httpx.AsyncClient(base_url=url, verify=False) as h1:
        r = await h1.get("/_matrix/client/versions")
        assert r.http_version == "HTTP/1.1"
        assert r.status_code == 200


def _serve_fails(tmp_path: Path, config: str) -> str:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "c.toml").write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "trioserver", "serve", "--data-dir", str(data), "--listen",
         "127.0.0.1:0", "--metrics-listen", "", "--config", str(data / "c.toml")],
        capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "listening on" not in proc.stdout
    return proc.stderr.strip().splitlines()[-1]


def test_bad_certificates_refuse_to_start(tmp_path: Path) -> None:
    files = make_cert(tmp_path / "ok")
    other = make_cert(tmp_path / "other")
    expired = make_cert(tmp_path / "old", days_valid=1, days_offset=-30)
    cases = {
        f'cert = "{tmp_path}/missing.pem"\nkey = "{files.key}"': "tls.cert: cannot read",
        f'cert = "{files.cert}"\nkey = "{other.key}"': "does not match the certificate",
        f'cert = "{expired.cert}"\nkey = "{expired.key}"': "expired on",
    }
    for body, message in cases.items():
        line = _serve_fails(tmp_path, f'[tls]\n{body}\nlisten = "127.0.0.1:0"\n')
        assert line.startswith("trioserver: "), line
        assert message in line, line


def test_half_configured_tls_is_a_config_error(tmp_path: Path) -> None:
    files = make_cert(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "c.toml").write_text(f'[tls]\ncert = "{files.cert}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "trioserver", "serve", "--data-dir", str(data),
         "--config", str(data / "c.toml")],
        capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert "tls: set both cert and key" in proc.stderr


async def test_sighup_reloads_a_renewed_certificate(server_factory: ServerFactory,
                                                    tmp_path: Path) -> None:
    """`systemctl reload` (SIGHUP) loads a renewed certificate for new connections without a
    restart; a broken one is refused and the one in use kept; the server never stops."""
    srv = server_factory(config_text=_tls_config(tmp_path))
    host, port = _host_port(srv.listener_url("tls"))

    async def fingerprint() -> str:
        result = await trio.to_thread.run_sync(lambda: tls_request(
            host, port, "X25519MLKEM768", http_get("/_matrix/client/versions")))
        assert "versions" in _body(result.response)
        return result.peer_sha256

    first = await fingerprint()
    make_cert(tmp_path / "certs")  # the renewal: new key and certificate, same paths
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log("SIGHUP: TLS certificate and key reloaded")
    second = await fingerprint()
    assert second != first
    # A renewal caught half-written: refused, the current certificate stays.
    (tmp_path / "certs" / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log("keeping the certificate in use")
    assert await fingerprint() == second
    assert srv.proc.poll() is None


async def test_sighup_without_tls_is_harmless(server_factory: ServerFactory) -> None:
    srv = server_factory()
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log("SIGHUP: no TLS listener, nothing to reload")
    async with httpx.AsyncClient(base_url=srv.url) as http:
        assert (await http.get("/_matrix/client/versions")).status_code == 200
    assert srv.stop() == 0
