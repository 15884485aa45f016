"""`make bench` (sync part): long-poll wake-up latency, initial sync in 500 rooms, empty
incremental syncs per second, and messages/s with 20 concurrent senders.

Starts its own server in a temp dir (or measures --url). Usage: python -m bench.sync
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.run import cpu_seconds, register, rss_mib, start_server


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _call(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """One request, waiting out 429s (a reference server may rate-limit joins and sends)."""
    while True:
        r = await client.request(method, url, **kw)
        if r.status_code != 429:
            r.raise_for_status()
            return r
        await trio.sleep(r.json().get("retry_after_ms", 1000) / 1000)


async def _wakeup_latency(client: httpx.AsyncClient, sender: str, receiver: str, room: str,
                          n: int) -> list[float]:
    r = await client.get("/_matrix/client/v3/sync", headers=_auth(receiver))
    since = r.json()["next_batch"]
    latencies: list[float] = []
    for i in range(n):
        ready = trio.Event()
        result: dict[str, Any] = {}

        async def poll(since: str = since, ready: trio.Event = ready,
                       result: dict[str, Any] = result) -> None:
            ready.set()
            r = await client.get("/_matrix/client/v3/sync",
                                 params={"since": since, "timeout": "30000"},
                                 headers=_auth(receiver))
            result["at"] = time.perf_counter()
            result["body"] = r.json()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await ready.wait()
            await trio.sleep(0.01)  # let the sync reach its wait
            r = await client.put(f"/_matrix/client/v3/rooms/{room}/send/m.room.message/w{i}",
                                 json={"msgtype": "m.text", "body": f"ping {i}"},
                                 headers=_auth(sender))
            sent_at = time.perf_counter()
            r.raise_for_status()
        latencies.append((result["at"] - sent_at) * 1000)
        since = result["body"]["next_batch"]
    return latencies


async def bench(url: str, pid: int | None, rooms_n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prefix = f"y{int(time.time())}"
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        alice = await register(client, f"{prefix}alice")
        bob = await register(client, f"{prefix}bob")
        r = await client.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                              headers=_auth(alice))
        room = r.json()["room_id"]
        await _call(client, "POST", f"/_matrix/client/v3/join/{room}", headers=_auth(bob))

        lat = await _wakeup_latency(client, alice, bob, room, 200)
        lat.sort()
        out["wakeup_ms_p50"] = round(statistics.median(lat), 2)
        out["wakeup_ms_p99"] = round(lat[int(len(lat) * 0.99) - 1], 2)
        print(out, flush=True)

        # A user in many rooms, each with a few messages.
        carol = await register(client, f"{prefix}carol")
        sem = trio.Semaphore(8)

        async def make_room(i: int) -> None:
            async with sem:
                r = await _call(client, "POST", "/_matrix/client/v3/createRoom",
                                json={"name": f"room {i}", "topic": "bench"},
                                headers=_auth(carol))
                rid = r.json()["room_id"]
                for j in range(3):
                    await _call(
                        client, "PUT",
                        f"/_matrix/client/v3/rooms/{rid}/send/m.room.message/r{i}m{j}",
                        json={"msgtype": "m.text", "body": f"message {j}"},
                        headers=_auth(carol))

        async with trio.open_nursery() as nursery:
            for i in range(rooms_n):
                nursery.start_soon(make_room, i)
        t0 = time.perf_counter()
        r = await client.get("/_matrix/client/v3/sync", headers=_auth(carol))
        out[f"initial_sync_{rooms_n}_rooms_s"] = round(time.perf_counter() - t0, 3)
        out[f"initial_sync_{rooms_n}_rooms_kib"] = round(len(r.content) / 1024)
        print(out, flush=True)
        since = r.json()["next_batch"]

        n = 1000
        cpu0 = cpu_seconds(pid) if pid else 0.0
        t0 = time.perf_counter()
        counter = iter(range(n))

        async def empty_syncs() -> None:
            for _ in counter:
                (await client.get("/_matrix/client/v3/sync", params={"since": since},
                                  headers=_auth(carol))).raise_for_status()

        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(empty_syncs)
        out["empty_incremental_sync_per_s"] = round(n / (time.perf_counter() - t0), 1)
        if pid:
            out["empty_incremental_sync_cpu_ms"] = round((cpu_seconds(pid) - cpu0) * 1000 / n, 3)
        print(out, flush=True)

        # 20 concurrent senders into one room.
        senders = [await register(client, f"{prefix}s{i}") for i in range(20)]
        for token in senders:
            await _call(client, "POST", f"/_matrix/client/v3/join/{room}",
                        headers=_auth(token))
        per = 50
        t0 = time.perf_counter()

        async def send_all(k: int, token: str) -> None:
            for i in range(per):
                await _call(client, "PUT",
                            f"/_matrix/client/v3/rooms/{room}/send/m.room.message/c{k}-{i}",
                            json={"msgtype": "m.text", "body": "concurrent"},
                            headers=_auth(token))

        async with trio.open_nursery() as nursery:
            for k, token in enumerate(senders):
                nursery.start_soon(send_all, k, token)
        out["msgs_per_s_20_senders"] = round(20 * per / (time.perf_counter() - t0), 1)
    if pid:
        out["rss_after_mib"] = round(rss_mib(pid), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="measure a running server (e.g. Synapse) instead")
    parser.add_argument("--pid", type=int, help="its process id")
    parser.add_argument("--rooms", type=int, default=500)
    args = parser.parse_args()
    if args.url:
        results = trio.run(bench, args.url.rstrip("/"), args.pid, args.rooms)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="trioserver-bench-sync-"))
        proc, url, _ = start_server(data_dir)
        try:
            results = trio.run(bench, url, proc.pid, args.rooms)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for key, value in results.items():
        print(f"{key:<32}  {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "sync.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
