"""The key endpoints and the version endpoint through the app (Quart's test client)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio

from tests.unit.federation.conftest import Clock, FakeFetchClient, RemoteServer
from trioserver import __version__
from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import reply
from trioserver.app import create_app
from trioserver.config import Config, Federation
from trioserver.services.clock import now_ms
from trioserver.services.container import Services, build_services
from trioserver.services.events.signing import load_or_create_signing_key, verify_json_signature
from trioserver.services.federation.keys import KeyRing
from trioserver.storage.db import Database
from trioserver.storage.ttl_store import TTLStore

NAME = "us.example"
REMOTE = "remote.example"


@dataclasses.dataclass
class World:
    app: QuartTrio
    services: Services
    remote: RemoteServer
    fake: FakeFetchClient


async def make_world(tmp_path: Path, nursery: trio.Nursery, *, enabled: bool = True
                     ) -> AsyncIterator[World]:
    config = Config(server_name=NAME, data_dir=tmp_path,
                    federation=Federation(enabled=enabled, trusted_key_servers=()))
    db = Database.open(config.database_path, readers=2)
    await nursery.start(db.run)
    key = load_or_create_signing_key(tmp_path / "signing.key")
    fake = FakeFetchClient(Clock(now_ms()))
    remote = fake.add(RemoteServer(REMOTE))
    services = build_services(config, db, TTLStore(), key)
    services = dataclasses.replace(services, keyring=KeyRing(
        server_name=NAME, signing_key=key, old_keys=[], db=db, client=fake))
    app = create_app(services)

    @app.route("/_matrix/federation/v1/_probe", methods=["GET"])
    async def probe() -> Any:
        return reply({"origin": await authenticate_origin(services)})

    yield World(app, services, remote, fake)
    db.close()


@pytest.fixture
async def world(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[World]:
    async for w in make_world(tmp_path, nursery):
        yield w


async def test_server_keys_are_self_signed(world: World) -> None:
    client = world.app.test_client()
    key = world.services.signing_key
    for path in ("/_matrix/key/v2/server", f"/_matrix/key/v2/server/{key.key_id}"):
        r = await client.get(path)
        assert r.status_code == 200
        body = await r.get_json()
        assert body["server_name"] == NAME
        assert body["verify_keys"] == {key.key_id: {"key": key.public_key_b64}}
        assert body["old_verify_keys"] == {}
        assert body["valid_until_ts"] > now_ms() + 6 * 24 * 3600 * 1000
        assert verify_json_signature(body, NAME, key.key_id, key.verify_key_bytes)


async def test_notary_query_get_and_post(world: World) -> None:
    client = world.app.test_client()
    key = world.services.signing_key
    r = await client.get(f"/_matrix/key/v2/query/{REMOTE}?minimum_valid_until_ts=5")
    [answer] = (await r.get_json())["server_keys"]
    assert answer["server_name"] == REMOTE
    assert verify_json_signature(answer, NAME, key.key_id, key.verify_key_bytes)
    r = await client.post("/_matrix/key/v2/query", json={"server_keys": {
        REMOTE: {world.remote.key.key_id: {"minimum_valid_until_ts": 1}},
        NAME: {},
        "down.example": {},
    }})
    answers = (await r.get_json())["server_keys"]
    assert [a["server_name"] for a in answers] == [REMOTE, NAME]
    assert all(verify_json_signature(a, NAME, key.key_id, key.verify_key_bytes)
               for a in answers)
    r = await client.post("/_matrix/key/v2/query", json={"server_keys": {}})
    assert await r.get_json() == {"server_keys": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "errcode"),
    [
        ("GET", "/_matrix/key/v2/query/bad%20name", None, "M_INVALID_PARAM"),
        ("GET", f"/_matrix/key/v2/query/{REMOTE}?minimum_valid_until_ts=x", None,
         "M_INVALID_PARAM"),
        ("POST", "/_matrix/key/v2/query", {}, "M_MISSING_PARAM"),
        ("POST", "/_matrix/key/v2/query", {"server_keys": []}, "M_BAD_JSON"),
        ("POST", "/_matrix/key/v2/query", {"server_keys": {"bad name": {}}}, "M_INVALID_PARAM"),
        ("POST", "/_matrix/key/v2/query", {"server_keys": {REMOTE: []}}, "M_BAD_JSON"),
        ("POST", "/_matrix/key/v2/query",
         {"server_keys": {REMOTE: {"k": {"minimum_valid_until_ts": "1"}}}}, "M_BAD_JSON"),
        ("POST", "/_matrix/key/v2/query",
         {"server_keys": {f"s{i}.example": {} for i in range(101)}}, "M_INVALID_PARAM"),
    ],
)
async def test_bad_queries(world: World, method: str, path: str, body: Any,
                           errcode: str) -> None:
    r = await world.app.test_client().open(path, method=method, json=body)
    assert r.status_code == 400
    assert (await r.get_json())["errcode"] == errcode


async def test_version(world: World) -> None:
    r = await world.app.test_client().get("/_matrix/federation/v1/version")
    assert await r.get_json() == {"server": {"name": "trioserver", "version": __version__}}


async def test_authenticate_origin_answers_401(world: World) -> None:
    r = await world.app.test_client().get("/_matrix/federation/v1/_probe")
    assert r.status_code == 401
    assert (await r.get_json())["errcode"] == "M_UNAUTHORIZED"


async def test_disabled_federation(tmp_path: Path, nursery: trio.Nursery) -> None:
    async for w in make_world(tmp_path, nursery, enabled=False):
        client = w.app.test_client()
        for path in ("/_matrix/federation/v1/_probe", "/_matrix/federation/v1/version"):
            r = await client.get(path)
            assert r.status_code == 404
            assert (await r.get_json())["errcode"] == "M_UNRECOGNIZED"
        # Our own keys are still served.
        assert (await client.get("/_matrix/key/v2/server")).status_code == 200
