"""Client /keys/query and /keys/claim for other servers' users (services/federation/
remote_keys.py), against a fake FederationClient: one request per server, answers about
other servers' users dropped, caching and its invalidation, unreachable servers as failures,
and m.device_list_update's prev_id: a gap resyncs the user's list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from tests.unit.fakes import FakeClock
from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.errors import MatrixError
from trioserver.services.e2ee import DeviceListChange, E2EEKeys
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


class ResyncClient(FakeClient):
    """Also serves GET /user/devices/{userId}: the user now has only device D2."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[str, str]] = []

    async def get_json(self, destination: str, path: str, *,
                       timeout_s: float | None = None) -> Any:
        self.gets.append((destination, path))
        user = "@a:one.example"
        return {"user_id": user, "stream_id": 9,
                "devices": [{"device_id": "D2", "keys": device(user, "D2")}]}


@pytest.fixture
async def db_keys(tmp_path: Path, nursery: trio.Nursery
                  ) -> AsyncIterator[tuple[RemoteKeys, ResyncClient, E2EEKeys]]:
    db = Database.open(tmp_path / "db.sqlite", readers=1)
    await nursery.start(db.run)
    client = ResyncClient()
    e2ee = E2EEKeys("us.example", db, Notifier(), KeyedSerializer())
    yield RemoteKeys("us.example", db, e2ee, cast(FederationClient, client)), client, e2ee
    db.close()


def update(stream_id: int, prev_id: list[int]) -> dict[str, Any]:
    return {"user_id": "@a:one.example", "device_id": "D1", "stream_id": stream_id,
            "prev_id": prev_id, "deleted": True}


async def test_prev_id_gap_resyncs_the_device_list(
        db_keys: tuple[RemoteKeys, ResyncClient, E2EEKeys]) -> None:
    keys, client, e2ee = db_keys
    changes: list[str] = []

    async def listener(change: DeviceListChange) -> None:
        changes.append(change.user_id)

    e2ee.change_listeners.append(listener)
    await keys.query(ME, {"@a:one.example": []}, 5)  # cached: D1
    # First update seen: nothing to compare prev_id with, the cache is only dropped.
    await keys.on_device_list_update("one.example", update(3, [2]))
    # Contiguous: prev_id names the last stream_id seen.
    await keys.on_device_list_update("one.example", update(4, [3]))
    # A retried (old) update changes nothing.
    await keys.on_device_list_update("one.example", update(4, [3]))
    assert client.gets == []
    assert changes == ["@a:one.example", "@a:one.example"]
    # Gap: 5..7 were missed, so the whole list is fetched again and replaces the cache.
    await keys.on_device_list_update("one.example", update(8, [7]))
    assert client.gets == [("one.example",
                            "/_matrix/federation/v1/user/devices/%40a%3Aone.example")]
    assert changes == ["@a:one.example"] * 3
    queries = len(client.calls)
    out = await keys.query(ME, {"@a:one.example": []}, 5)
    assert len(client.calls) == queries  # answered from the resynced cache
    assert out["device_keys"]["@a:one.example"] == {"D2": device("@a:one.example", "D2")}
    # The resync's stream_id (9) is now the last seen: an update after it is contiguous.
    await keys.on_device_list_update("one.example", update(10, [9]))
    assert len(client.gets) == 1


async def test_update_from_another_server_is_refused(
        db_keys: tuple[RemoteKeys, ResyncClient, E2EEKeys]) -> None:
    keys, client, _ = db_keys
    with pytest.raises(MatrixError):
        await keys.on_device_list_update("evil.example", update(3, [2]))
    assert client.gets == []
