"""Client /keys/query and /keys/claim for other servers' users (services/federation/
remote_keys.py), against a fake FederationClient: one request per server, answers about
other servers' users dropped, caching and its invalidation, unreachable servers as failures."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio

from tests.unit.fakes import FakeClock
from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.services.e2ee import E2EEKeys
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.errors import FederationUnreachable
from trioserver.services.federation.remote_keys import CACHE_TTL_S, RemoteKeys
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database

ME = Requester(user_id="@me:us.example", device_id="D", is_guest=False, token_hash=b"")


def device(user_id: str, device_id: str) -> dict[str, Any]:
    return {"user_id": user_id, "device_id": device_id, "keys": {f"ed25519:{device_id}": "k"}}


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.down: set[str] = set()
        self.slow: set[str] = set()

    async def post_json(self, destination: str, path: str, body: Any, *,
                        timeout_s: float | None = None) -> Any:
        self.calls.append((destination, path, body))
        if destination in self.down:
            raise FederationUnreachable("connection refused")
        if destination in self.slow:
            await trio.sleep_forever()
        if path.endswith("/query"):
            users = body["device_keys"]
            out = {u: {"D1": device(u, "D1")} for u in users}
            # A server answering for a user of another server must be ignored.
            out["@victim:one.example"] = {"EVIL": device("@victim:one.example", "EVIL")}
            return {"device_keys": out}
        return {"one_time_keys": {u: {d: {"signed_curve25519:A": {"key": "x"}}
                                      for d in devices}
                                  for u, devices in body["one_time_keys"].items()}}


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def keys(client: FakeClient, clock: FakeClock) -> RemoteKeys:
    # No local users are asked for, so E2EEKeys never touches its database.
    db = cast(Database, None)
    e2ee = E2EEKeys("us.example", db, Notifier(), KeyedSerializer())
    return RemoteKeys("us.example", db, e2ee, cast(FederationClient, client), clock=clock)


async def test_one_request_per_server_and_only_its_own_users(
        keys: RemoteKeys, client: FakeClient) -> None:
    out = await keys.query(ME, {"@a:one.example": [], "@b:one.example": ["D1"],
                                "@c:two.example": ["NOPE"]}, 5)
    assert sorted(d for d, _, _ in client.calls) == ["one.example", "two.example"]
    assert out["failures"] == {}
    assert set(out["device_keys"]) == {"@a:one.example", "@b:one.example", "@c:two.example"}
    assert out["device_keys"]["@c:two.example"] == {}
    # two.example's claim about one.example's user was dropped.
    assert "@victim:one.example" not in out["device_keys"]


async def test_cached_until_an_update_or_the_ttl(keys: RemoteKeys, client: FakeClient,
                                                 clock: FakeClock) -> None:
    await keys.query(ME, {"@a:one.example": []}, 5)
    await keys.query(ME, {"@a:one.example": []}, 5)
    assert len(client.calls) == 1
    keys.forget("@a:one.example")
    await keys.query(ME, {"@a:one.example": []}, 5)
    assert len(client.calls) == 2
    clock.now += CACHE_TTL_S + 1
    await keys.query(ME, {"@a:one.example": []}, 5)
    assert len(client.calls) == 3


async def test_unreachable_and_slow_servers_are_failures(
        keys: RemoteKeys, client: FakeClient) -> None:
    client.down.add("down.example")
    client.slow.add("slow.example")
    with trio.fail_after(5):
        out = await keys.query(ME, {"@a:down.example": [], "@b:slow.example": [],
                                    "@c:ok.example": []}, 0.2)
    assert set(out["failures"]) == {"down.example", "slow.example"}
    assert out["device_keys"]["@c:ok.example"] == {"D1": device("@c:ok.example", "D1")}
    with trio.fail_after(5):
        out = await keys.claim({"@a:down.example": {"D": "signed_curve25519"},
                                "@b:slow.example": {"D": "signed_curve25519"},
                                "@c:ok.example": {"D1": "signed_curve25519"}}, 0.2)
    assert set(out["failures"]) == {"down.example", "slow.example"}
    assert out["one_time_keys"] == {
        "@c:ok.example": {"D1": {"signed_curve25519:A": {"key": "x"}}}}
