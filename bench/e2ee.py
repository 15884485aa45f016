"""`make bench` (E2EE part): /keys/claim latency with 20 concurrent claimers.

One device uploads 2,000 signed one-time keys; 20 clients claim concurrently until they are
gone (the rest of the claims get the fallback key). Reports claim latency p50/p99 and claims/s.
"""

from __future__ import annotations

import base64
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from nacl.signing import SigningKey

from bench.run import start_server
from trioserver.services.events.canonical_json import encode

KEYS = 2000
CLAIMERS = 20
CLAIMS_EACH = 120


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _signed(obj: dict[str, Any], user_id: str, device_id: str, key: SigningKey) -> dict[str, Any]:
    signature = key.sign(encode(obj)).signature
    return {**obj, "signatures": {user_id: {f"ed25519:{device_id}": _b64(signature)}}}


async def bench(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        r = await client.post("/_matrix/client/v3/register", json={
            "username": f"keys{int(time.time())}", "password": "bench password 123",
            "auth": {"type": "m.login.dummy"}})
        owner = r.json()
        user_id, device_id = owner["user_id"], owner["device_id"]
        headers = {"Authorization": f"Bearer {owner['access_token']}"}
        key = SigningKey.generate()
        device_keys = _signed({
            "user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device_id}": _b64(bytes(key.verify_key)),
                     f"curve25519:{device_id}": _b64(bytes(SigningKey.generate().verify_key))},
        }, user_id, device_id, key)
        for start in range(0, KEYS, 500):
            otks = {f"signed_curve25519:k{i}": _signed(
                {"key": _b64(bytes(SigningKey.generate().verify_key))}, user_id, device_id, key)
                for i in range(start, start + 500)}
            body: dict[str, Any] = {"one_time_keys": otks}
            if start == 0:
                body["device_keys"] = device_keys
                body["fallback_keys"] = {"signed_curve25519:fb": _signed(
                    {"key": _b64(bytes(SigningKey.generate().verify_key)), "fallback": True},
                    user_id, device_id, key)}
            (await client.post("/_matrix/client/v3/keys/upload", json=body, headers=headers)
             ).raise_for_status()
        claimers = []
        for i in range(CLAIMERS):
            r = await client.post("/_matrix/client/v3/register", json={
                "username": f"c{int(time.time())}x{i}", "password": "bench password 123",
                "auth": {"type": "m.login.dummy"}})
            claimers.append({"Authorization": f"Bearer {r.json()['access_token']}"})

    latencies: list[float] = []
    handed: list[str] = []

    async def claimer(h: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            for _ in range(CLAIMS_EACH):
                t0 = time.perf_counter()
                r = await c.post("/_matrix/client/v3/keys/claim", headers=h, json={
                    "one_time_keys": {user_id: {device_id: "signed_curve25519"}}})
                latencies.append((time.perf_counter() - t0) * 1000)
                got = r.json()["one_time_keys"][user_id][device_id]
                handed.extend(got)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for h in claimers:
            nursery.start_soon(claimer, h)
    elapsed = time.perf_counter() - t0
    one_time = [k for k in handed if k != "signed_curve25519:fb"]
    assert len(one_time) == len(set(one_time)), "a one-time key was handed out twice"
    latencies.sort()
    return {
        "claims": len(latencies),
        "claims_per_s": round(len(latencies) / elapsed, 1),
        "claim_ms_p50": round(statistics.median(latencies), 2),
        "claim_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "distinct_one_time_keys": len(set(one_time)),
        "fallback_handouts": len(handed) - len(one_time),
    }


def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="trioserver-bench-e2ee-"))
    proc, url, _ = start_server(data_dir)
    try:
        results = trio.run(bench, url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for k, v in results.items():
        print(f"{k:<24}  {v}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "e2ee.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
