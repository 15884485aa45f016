"""`make bench` (application services): how fast events reach a bridge.

Starts `trioserver serve` with one registration whose URL is a minimal appservice in this
process (HTTP/1.1 keep-alive, answers 200 at once), with a namespaced user in the room, and
measures:
  - latency: one message at a time, send -> the transaction carrying it arrives (p50/p99)
  - live throughput: messages from 20 concurrent senders, events/s delivered, events per txn
  - backlog: with the appservice answering 503, a backlog is built; once it answers 200 again,
    the time to drain it (events/s) and the server's CPU ms per delivered event
Writes bench/results/appservice.json.

`--synapse DATA_DIR` runs the same measurements against a reference Synapse instead: DATA_DIR is
a data directory made by ../shared/tools/synapse.sh (with a stopped server); its
homeserver.yaml gets the registration added and Synapse is started from its venv
(`--synapse-python`), so both servers meet the same appservice and the same load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.run import cpu_seconds, start_server

LATENCY_MESSAGES = 200
LIVE_MESSAGES = 3000
LIVE_SENDERS = 20
BACKLOG_MESSAGES = 5000
AS_TOKEN = "bench-as-token"
HS_TOKEN = "bench-hs-token"


class Appservice:
    """Records when each event ID arrived; answers `status` to every transaction."""

    def __init__(self) -> None:
        self.port = 0
        self.status = 200
        self.arrived: dict[str, float] = {}
        self.transactions = 0
        self.changed = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = await stream.receive_some(1 << 16)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    chunk = await stream.receive_some(1 << 16)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                status = self.status
                if status == 200 and body:
                    now = time.perf_counter()
                    self.transactions += 1
                    for event in json.loads(body).get("events", []):
                        self.arrived.setdefault(event["event_id"], now)
                    self.changed.set()
                await stream.send_all(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n"
                                      "Content-Type: application/json\r\n\r\n{}".encode())

    async def until(self, event_ids: list[str], within_s: float = 300) -> None:
        with trio.fail_after(within_s):
            while not all(e in self.arrived for e in event_ids):
                self.changed = trio.Event()
                await self.changed.wait()


async def _send(http: httpx.AsyncClient, token: str, room_id: str, n: int) -> str:
    r = await http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{n}",
                       json={"msgtype": "m.text", "body": f"message {n}"},
                       headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return str(r.json()["event_id"])


async def bench(url: str, pid: int, service: Appservice) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        r = await http.post("/_matrix/client/v3/register", json={
            "username": "alice", "password": "bench password 123",
            "auth": {"type": "m.login.dummy"}})
        r.raise_for_status()
        token = r.json()["access_token"]
        r = await http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                            headers={"Authorization": f"Bearer {token}"})
        room_id = r.json()["room_id"]
        as_auth = {"Authorization": f"Bearer {AS_TOKEN}"}
        r = await http.post("/_matrix/client/v3/register", headers=as_auth, json={
            "type": "m.login.application_service", "username": "bridged_bob",
            "inhibit_login": True})
        r.raise_for_status()
        r = await http.post(f"/_matrix/client/v3/rooms/{room_id}/join", json={},
                            headers=as_auth, params={"user_id": r.json()["user_id"]})
        r.raise_for_status()
        latencies = []
        for counter in range(1, LATENCY_MESSAGES + 1):
            t0 = time.perf_counter()
            event_id = await _send(http, token, room_id, counter)
            await service.until([event_id])
            latencies.append((service.arrived[event_id] - t0) * 1000)
        latencies.sort()

        sent: list[str] = []
        txns_before = service.transactions

        async def sender(first: int) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                for n in range(first, first + LIVE_MESSAGES // LIVE_SENDERS):
                    sent.append(await _send(c, token, room_id, n))

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for s in range(LIVE_SENDERS):
                nursery.start_soon(sender, 10_000 + s * LIVE_MESSAGES)
        await service.until(sent)
        live_s = max(service.arrived[e] for e in sent) - t0
        live_txns = service.transactions - txns_before

        service.status = 503
        backlog: list[str] = []
        async with trio.open_nursery() as nursery:
            async def backlog_sender(first: int) -> None:
                async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                    for n in range(first, first + BACKLOG_MESSAGES // 10):
                        backlog.append(await _send(c, token, room_id, n))
            for s in range(10):
                nursery.start_soon(backlog_sender, 100_000 + s * BACKLOG_MESSAGES)
        txns_before = service.transactions
        cpu0 = cpu_seconds(pid)
        service.status = 200
        # The server is in its retry back-off (1 s, doubling): measure from the first arrival.
        await service.until(backlog)
        first = min(service.arrived[e] for e in backlog)
        drain_s = max(service.arrived[e] for e in backlog) - first
        cpu = cpu_seconds(pid) - cpu0
        backlog_txns = service.transactions - txns_before

    return {
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "live_messages": LIVE_MESSAGES,
        "live_events_per_s": round(LIVE_MESSAGES / live_s, 1),
        "live_events_per_txn": round(LIVE_MESSAGES / max(1, live_txns), 1),
        "backlog_events": BACKLOG_MESSAGES,
        "backlog_drain_events_per_s": round(BACKLOG_MESSAGES / max(drain_s, 1e-6), 1),
        "backlog_events_per_txn": round(BACKLOG_MESSAGES / max(1, backlog_txns), 1),
        "backlog_cpu_ms_per_event": round(cpu * 1000 / BACKLOG_MESSAGES, 3),
    }


def start_synapse(data_dir: Path, python: str, registration: Path
                   ) -> tuple[subprocess.Popen[bytes], str]:
    import yaml

    config_path = data_dir / "homeserver.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["app_service_config_files"] = [str(registration)]
    config_path.write_text(yaml.safe_dump(config))
    port = config["listeners"][0]["port"]
    proc = subprocess.Popen([python, "-m", "synapse.app.homeserver", "--config-path",
                             str(config_path)], cwd=data_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            httpx.get(url + "/_matrix/client/versions").raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("Synapse did not start")


async def _main(data_dir: Path, synapse: Path | None, synapse_python: str) -> dict[str, Any]:
    service = Appservice()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, service.handle, 0)
        service.port = listeners[0].socket.getsockname()[1]
        registration = data_dir / "bench-appservice.yaml"
        registration.write_text(
            f"id: bench\nurl: http://127.0.0.1:{service.port}\nas_token: {AS_TOKEN}\n"
            f"hs_token: {HS_TOKEN}\nsender_localpart: benchbot\nnamespaces:\n"
            "  users:\n    - exclusive: true\n      regex: '@bridged_.*'\n"
            "  aliases: []\n  rooms: []\n", encoding="utf-8")
        proc: subprocess.Popen[Any]
        if synapse is not None:
            proc, url = await trio.to_thread.run_sync(
                start_synapse, synapse, synapse_python, registration)
        else:
            proc, url, _ = await trio.to_thread.run_sync(
                start_server, data_dir / "hs", "--appservice-registration", str(registration))
        try:
            results = await bench(url, proc.pid, service)
        finally:
            proc.terminate()
            await trio.to_thread.run_sync(proc.wait)
        nursery.cancel_scope.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synapse", type=Path, help="a stopped synapse.sh data directory")
    parser.add_argument("--synapse-python", default="/tmp/peers/synapse-venv/bin/python")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="trioserver-bench-appservice-"))
    results = trio.run(_main, data_dir, args.synapse, args.synapse_python)
    for k, v in results.items():
        print(f"{k:<28}  {v}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = "appservice-synapse.json" if args.synapse else "appservice.json"
    (out / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
