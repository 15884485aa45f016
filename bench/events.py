"""`make bench` (events part): messages/s into one room and into many rooms, CPU per message,
and the database size after N messages.

Starts its own server in a temp dir. Usage: python -m bench.events [--messages 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.run import cpu_seconds, register, rss_mib, start_server


async def _create_room(client: httpx.AsyncClient, token: str, **body: Any) -> str:
    r = await client.post("/_matrix/client/v3/createRoom", json=body,
                          headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    room_id: str = r.json()["room_id"]
    return room_id


async def _send_many(url: str, jobs: list[tuple[str, str]], per_job: int, prefix: str,
                     concurrency_per_job: int) -> float:
    """Each (token, room) job sends `per_job` messages with `concurrency_per_job` workers."""
    clients = [httpx.AsyncClient(base_url=url, timeout=120,
                                 limits=httpx.Limits(max_connections=64)) for _ in range(4)]
    t0 = time.perf_counter()

    async def worker(i: int, token: str, room: str, counter: Any) -> None:
        client = clients[i % len(clients)]
        headers = {"Authorization": f"Bearer {token}"}
        for n in counter:
            r = await client.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{prefix}{i}-{n}",
                json={"msgtype": "m.text", "body": f"message {n} from worker {i}"},
                headers=headers)
            if r.status_code != 200:
                raise RuntimeError(r.text)

    async with trio.open_nursery() as nursery:
        for j, (token, room) in enumerate(jobs):
            counter = iter(range(per_job))
            for w in range(concurrency_per_job):
                nursery.start_soon(worker, j * 100 + w, token, room, counter)
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.aclose()
    return len(jobs) * per_job / elapsed


def _db_size(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.iterdir()
               if f.name.startswith(("trioserver.db", "homeserver.db")))


async def bench(url: str, pid: int, data_dir: Path, messages: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        prefix = f"s{int(time.time())}"
        tokens = [await register(client, f"{prefix}sender{i}") for i in range(8)]
        one_room = await _create_room(client, tokens[0], preset="public_chat")
        for t in tokens[1:]:
            r = await client.post(f"/_matrix/client/v3/join/{one_room}",
                                  headers={"Authorization": f"Bearer {t}"})
            r.raise_for_status()
        many = [await _create_room(client, t) for t in tokens]

    n = 2000
    cpu0 = cpu_seconds(pid)
    rate = await _send_many(url, [(t, one_room) for t in tokens], n // 8, "one", 4)
    out["one_room_msgs_per_s"] = round(rate, 1)
    out["one_room_cpu_ms_per_msg"] = round((cpu_seconds(pid) - cpu0) * 1000 / n, 3)
    cpu0 = cpu_seconds(pid)
    rate = await _send_many(url, list(zip(tokens, many, strict=True)), n // 8, "many", 4)
    out["many_rooms_msgs_per_s"] = round(rate, 1)
    out["many_rooms_cpu_ms_per_msg"] = round((cpu_seconds(pid) - cpu0) * 1000 / n, 3)

    if messages:
        t0 = time.perf_counter()
        await _send_many(url, list(zip(tokens, many, strict=True)), messages // 8, "bulk", 4)
        out["bulk_messages"] = messages
        out["bulk_seconds"] = round(time.perf_counter() - t0, 1)
        size = await trio.to_thread.run_sync(_db_size, data_dir)
        out["db_mib_after_bulk"] = round(size / 2**20, 1)
        out["db_bytes_per_message"] = round(size / (messages + 2 * n))
    out["rss_after_mib"] = round(rss_mib(pid), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=0,
                        help="also send this many messages and report the database size")
    parser.add_argument("--url", help="measure a running server (e.g. Synapse) instead")
    parser.add_argument("--pid", type=int, help="its process id")
    parser.add_argument("--data-dir", type=Path, help="its data directory (database size)")
    args = parser.parse_args()
    if args.url:
        results = trio.run(bench, args.url.rstrip("/"), args.pid,
                           args.data_dir or Path("/nonexistent"), args.messages)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="trioserver-bench-events-"))
        proc, url, _ = start_server(data_dir)
        try:
            results = trio.run(bench, url, proc.pid, data_dir, args.messages)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for key, value in results.items():
        print(f"{key:<28}  {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "events.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
