"""`make bench`: start-up time, memory, and throughput of the hot account paths.

Starts `trioserver serve` in a temp dir (or measures an already running server with --url and
--pid, e.g. a reference Synapse on the same box) and reports:
  - start-up: process start to first answered request
  - RSS after start and after the load
  - whoami req/s (the authenticated hot path: token lookup + JSON reply) and CPU ms per request
  - login/s and registration/s (bounded by Argon2id, by design)
Numbers are printed as a table and written to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

PASSWORD = "bench password 123"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start_server(data_dir: Path, *extra_args: str) -> tuple[subprocess.Popen[str], str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioserver", "serve", "--data-dir", str(data_dir), "--listen",
         "127.0.0.1:0", "--open-registration", "--no-rate-limits", "--metrics-listen", "",
         *extra_args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split(" listening on ", 1)[1].split()[0]
    with httpx.Client() as c:
        c.get(url + "/_matrix/client/versions").raise_for_status()
    return proc, url, time.perf_counter() - t0


async def register(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post("/_matrix/client/v3/register", json={
        "username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


async def run_load(url: str, n: int, concurrency: int, make_request: Any) -> float:
    """Run `n` requests with `concurrency` workers over several clients; return requests/s."""
    clients = [httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency))
               for _ in range(max(1, concurrency // 16))]
    counter = iter(range(n))
    t0 = time.perf_counter()

    async def worker(i: int) -> None:
        client = clients[i % len(clients)]
        for j in counter:
            r = await make_request(client, j)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text}")

    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(worker, i)
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.aclose()
    return n / elapsed


async def bench(url: str, pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    prefix = f"b{int(time.time())}"
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        token = await register(client, f"{prefix}main")
    headers = {"Authorization": f"Bearer {token}"}

    async def whoami(c: httpx.AsyncClient, _: int) -> httpx.Response:
        return await c.get("/_matrix/client/v3/account/whoami", headers=headers)

    async def versions(c: httpx.AsyncClient, _: int) -> httpx.Response:
        return await c.get("/_matrix/client/versions")

    async def login(c: httpx.AsyncClient, _: int) -> httpx.Response:
        return await c.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user",
                                                       "user": f"{prefix}main"},
            "password": PASSWORD})

    async def reg(c: httpx.AsyncClient, j: int) -> httpx.Response:
        return await c.post("/_matrix/client/v3/register", json={
            "username": f"{prefix}u{j}", "password": PASSWORD,
            "auth": {"type": "m.login.dummy"}, "inhibit_login": True})

    for name, fn, n in (("versions", versions, args.requests), ("whoami", whoami, args.requests),
                        ("login", login, args.slow_requests),
                        ("register", reg, args.slow_requests)):
        cpu0 = cpu_seconds(pid) if pid else 0.0
        rate = await run_load(url, n, args.concurrency, fn)
        cpu = (cpu_seconds(pid) - cpu0) if pid else float("nan")
        results[f"{name}_per_s"] = round(rate, 1)
        results[f"{name}_cpu_ms_per_request"] = round(cpu * 1000 / n, 3)
    if pid:
        results["rss_after_load_mib"] = round(rss_mib(pid), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="measure a running server instead of starting one")
    parser.add_argument("--pid", type=int, help="its process id (for CPU and memory)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--slow-requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    proc = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        tmp = tempfile.mkdtemp(prefix="trioserver-bench-")
        proc, url, startup = start_server(Path(tmp))
        pid = proc.pid
        results["startup_to_first_response_s"] = round(startup, 3)
        results["rss_after_start_mib"] = round(rss_mib(pid), 1)
    try:
        results.update(trio.run(bench, url, pid, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
