"""`make bench` (big rooms): what one message costs as the room grows.

Every message in a room is evaluated against each member's push rules and counted in each
member's unread counts, so the cost of a send grows with the member count. This builds rooms of
MEMBER_COUNTS members (joined quickly as users of an appservice whose namespace is *not*
exclusive: exclusive ghosts get no push actions, here and in Synapse, which would measure
nothing) and measures, per size, with one sender:
  - send latency p50/p99 (sequential PUT /send)
  - the server's CPU ms per message
  - the latency of a member's /sync that wakes on the message (send -> /sync returns)
Writes bench/results/big_room.json.

`--synapse DATA_DIR` runs the same against a stopped reference Synapse made by
../shared/tools/synapse.sh (as bench/appservice.py does).
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

from bench.appservice import start_synapse
from bench.run import PASSWORD, cpu_seconds, start_server

MEMBER_COUNTS = (10, 300, 1000)
MESSAGES = 100
SYNC_ROUNDS = 20
AS_TOKEN = "bench-filler-as"


def _registration(data_dir: Path) -> Path:
    path = data_dir / "filler.yaml"
    path.write_text(
        f"id: filler\nurl: null\nas_token: {AS_TOKEN}\nhs_token: bench-filler-hs\n"
        "sender_localpart: fillbot\nrate_limited: false\nnamespaces:\n"
        "  users:\n    - exclusive: false\n      regex: '@member_.*'\n"
        "  aliases: []\n  rooms: []\n", encoding="utf-8")
    return path


async def _fill(client: httpx.AsyncClient, room_id: str, server_name: str, first: int,
                last: int) -> None:
    """Register member_first..member_last-1 as appservice users and join them, 8 at a time."""
    auth = {"Authorization": f"Bearer {AS_TOKEN}"}
    counter = iter(range(first, last))

    async def worker() -> None:
        for i in counter:
            r = await client.post("/_matrix/client/v3/register", headers=auth, json={
                "type": "m.login.application_service", "username": f"member_{i}",
                "inhibit_login": True})
            if r.status_code not in (200, 400):
                raise RuntimeError(r.text)
            user_id = r.json().get("user_id") or f"@member_{i}:{server_name}"
            r = await client.post(f"/_matrix/client/v3/rooms/{room_id}/join", json={},
                                  headers=auth, params={"user_id": user_id})
            if r.status_code != 200:
                raise RuntimeError(r.text)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(worker)


async def _account(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post("/_matrix/client/v3/register", json={
        "username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    if r.status_code != 200:
        r = await client.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
            "password": PASSWORD})
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


async def _size(client: httpx.AsyncClient, pid: int, members: int, alice: str, bob: str
                ) -> dict[str, Any]:
    a = {"Authorization": f"Bearer {alice}"}
    b = {"Authorization": f"Bearer {bob}"}
    r = await client.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                          headers=a)
    r.raise_for_status()
    room_id = r.json()["room_id"]
    (await client.post(f"/_matrix/client/v3/join/{room_id}", headers=b)).raise_for_status()
    r = await client.get("/_matrix/client/v3/account/whoami", headers=a)
    await _fill(client, room_id, r.json()["user_id"].split(":", 1)[1], 0, members - 2)
    tag = f"m{members}-{int(time.time())}"

    latencies = []
    cpu0 = cpu_seconds(pid)
    for n in range(MESSAGES):
        t0 = time.perf_counter()
        r = await client.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{tag}{n}",
                             json={"msgtype": "m.text", "body": f"hello {n}"}, headers=a)
        latencies.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    cpu_ms = (cpu_seconds(pid) - cpu0) * 1000 / MESSAGES

    # Bob long-polls /sync; the time from the send to /sync returning with it.
    flt = json.dumps({"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}},
                      "presence": {"types": []}})
    r = await client.get("/_matrix/client/v3/sync", params={"filter": flt}, headers=b)
    since = r.json()["next_batch"]
    wake: list[float] = []

    async def poll(since: str, result: dict[str, Any]) -> None:
        r = await client.get("/_matrix/client/v3/sync", headers=b, params={
            "since": since, "timeout": "10000", "filter": flt})
        result.update(r.json())

    for n in range(SYNC_ROUNDS):
        result: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll, since, result)
            await trio.sleep(0.05)
            sent_at = time.perf_counter()
            (await client.put(
                f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{tag}s{n}",
                json={"msgtype": "m.text", "body": "wake"}, headers=a)).raise_for_status()
        wake.append((time.perf_counter() - sent_at) * 1000)
        since = result["next_batch"]
    latencies.sort()
    wake.sort()
    return {"members": members,
            "send_ms_p50": round(statistics.median(latencies), 1),
            "send_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1], 1),
            "cpu_ms_per_msg": round(cpu_ms, 2),
            "sync_wake_ms_p50": round(statistics.median(wake), 1)}


async def bench(url: str, pid: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=16)) as client:
        alice = await _account(client, "bigroom_alice")
        bob = await _account(client, "bigroom_bob")
        for members in MEMBER_COUNTS:
            row = await _size(client, pid, members, alice, bob)
            print(json.dumps(row), flush=True)
            results[str(members)] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synapse", type=Path, help="a stopped synapse.sh data directory")
    parser.add_argument("--synapse-python", default="/tmp/peers/synapse-venv/bin/python")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="trioserver-bench-bigroom-"))
    registration = _registration(data_dir)
    proc: subprocess.Popen[Any]
    if args.synapse:
        proc, url = start_synapse(args.synapse, args.synapse_python, registration)
    else:
        proc, url, _ = start_server(data_dir / "hs", "--appservice-registration",
                                    str(registration))
    try:
        results = trio.run(bench, url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = "big_room-synapse.json" if args.synapse else "big_room.json"
    (out / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
