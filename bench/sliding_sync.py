"""`make bench` (sliding sync part): Element X-style room list requests in 500 and 2,000 rooms.

For each size, one user joins N rooms with a few messages each, then:
  - first response of a new connection: list `[0,19]`, timeline_limit 1, Element X's
    required_state, all extensions on (median and max of 5 connections);
  - incremental wake-up: a long-poll on that connection answered after a message lands in one
    of the rooms (median/p90 of 20);
  - the server's CPU per first response.
Starts its own server (or --url/--pid for another one that speaks the unstable endpoint).
Results in bench/results/sliding_sync.json.
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
from bench.sync import _auth, _call

SSS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
ELEMENT_X_STATE = [
    ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
    ["m.room.name", ""], ["m.room.topic", ""], ["m.room.avatar", ""],
    ["m.room.canonical_alias", ""], ["m.room.power_levels", ""], ["m.room.join_rules", ""],
    ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
    ["m.space.parent", "*"], ["m.space.child", "*"],
]


def request_body(conn_id: str) -> dict[str, Any]:
    return {
        "conn_id": conn_id,
        "lists": {"all_rooms": {"ranges": [[0, 19]], "timeline_limit": 1,
                                "required_state": ELEMENT_X_STATE,
                                "filters": {"not_room_types": ["m.space"]}}},
        "extensions": {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
                       "account_data": {"enabled": True},
                       "receipts": {"enabled": True, "rooms": ["*"]},
                       "typing": {"enabled": True}},
    }


async def _make_rooms(client: httpx.AsyncClient, token: str, n: int) -> list[str]:
    sem = trio.Semaphore(8)
    rooms: list[str] = []

    async def make_room(i: int) -> None:
        async with sem:
            r = await _call(client, "POST", "/_matrix/client/v3/createRoom",
                            json={"name": f"room {i}", "topic": "bench"}, headers=_auth(token))
            rid = r.json()["room_id"]
            rooms.append(rid)
            for j in range(3):
                await _call(client, "PUT",
                            f"/_matrix/client/v3/rooms/{rid}/send/m.room.message/r{i}m{j}",
                            json={"msgtype": "m.text", "body": f"message {j}"},
                            headers=_auth(token))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(make_room, i)
    return rooms


async def _size(client: httpx.AsyncClient, pid: int | None, n: int, prefix: str
                ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    token = await register(client, f"{prefix}u{n}")
    rooms = await _make_rooms(client, token, n)
    firsts: list[float] = []
    cpu0 = cpu_seconds(pid) if pid else 0.0
    body: dict[str, Any] = {}
    for k in range(5):
        t0 = time.perf_counter()
        r = await _call(client, "POST", SSS, json=request_body(f"first{k}"),
                        headers=_auth(token))
        firsts.append((time.perf_counter() - t0) * 1000)
        body = r.json()
    if pid:
        out[f"first_response_{n}_rooms_cpu_ms"] = round((cpu_seconds(pid) - cpu0) * 1000 / 5, 1)
    assert body["lists"]["all_rooms"]["count"] == n, body["lists"]
    assert len(body["rooms"]) == 20
    out[f"first_response_{n}_rooms_ms_median"] = round(statistics.median(firsts), 1)
    out[f"first_response_{n}_rooms_ms_max"] = round(max(firsts), 1)
    out[f"first_response_{n}_rooms_kib"] = round(len(r.content) / 1024, 1)

    pos = body["pos"]
    wakes: list[float] = []
    for i in range(20):
        target = rooms[(i * 37) % len(rooms)]
        result: dict[str, Any] = {}
        ready = trio.Event()

        async def poll(pos: str = pos, ready: trio.Event = ready,
                       result: dict[str, Any] = result) -> None:
            ready.set()
            r = await client.post(SSS, params={"pos": pos, "timeout": "30000"},
                                  json=request_body("first4"), headers=_auth(token))
            result["at"] = time.perf_counter()
            result["body"] = r.json()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await ready.wait()
            await trio.sleep(0.02)
            t0 = time.perf_counter()
            await _call(client, "PUT", f"/_matrix/client/v3/rooms/{target}/send/"
                        f"m.room.message/w{i}", json={"msgtype": "m.text", "body": "wake"},
                        headers=_auth(token))
        wakes.append((result["at"] - t0) * 1000)
        assert target in result["body"]["rooms"], result["body"].get("rooms", {}).keys()
        pos = result["body"]["pos"]
    wakes.sort()
    out[f"incremental_wake_{n}_rooms_ms_median"] = round(statistics.median(wakes), 1)
    out[f"incremental_wake_{n}_rooms_ms_p90"] = round(wakes[int(len(wakes) * 0.9) - 1], 1)
    print(out, flush=True)
    return out


async def bench(url: str, pid: int | None, sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prefix = f"ss{int(time.time())}"
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=50)) as client:
        for n in sizes:
            out.update(await _size(client, pid, n, prefix))
    if pid:
        out["rss_after_mib"] = round(rss_mib(pid), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="measure a running server instead")
    parser.add_argument("--pid", type=int, help="its process id")
    parser.add_argument("--sizes", default="500,2000", help="room counts (comma-separated)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.url:
        result = trio.run(bench, args.url, args.pid, sizes)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url, _ = start_server(Path(tmp))
            try:
                result = trio.run(bench, url, proc.pid, sizes)
            finally:
                proc.terminate()
                proc.wait()
    for key, value in result.items():
        print(f"{key:45} {value}")
    path = Path(__file__).parent / "results" / "sliding_sync.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
