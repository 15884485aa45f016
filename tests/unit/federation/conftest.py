"""Fixtures for the federation unit tests: a database, fake remote servers and their keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from trioserver.services.events.signing import SigningKey, sign_json
from trioserver.services.federation.errors import FederationUnreachable
from trioserver.services.federation.keys import OldVerifyKey, server_key_response
from trioserver.storage.db import Database

NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000


@pytest.fixture
async def db(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Database]:
    database = Database.open(tmp_path / "db.sqlite", readers=2)
    await nursery.start(database.run)
    yield database
    database.close()


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class RemoteServer:
    """A remote homeserver as the key ring sees it: keys and what it answers."""

    name: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    old: list[OldVerifyKey] = field(default_factory=list)
    valid_for: int = 7 * DAY

    def response(self, now: int) -> dict[str, Any]:
        return server_key_response(self.name, self.key, self.old, now + self.valid_for)

    def rotate(self, now: int) -> SigningKey:
        retired = self.key
        self.old.append(OldVerifyKey(retired.key_id, retired.verify_key_bytes, now))
        self.key = SigningKey.generate()
        return retired


class FakeFetchClient:
    """Answers GET /_matrix/key/v2/server and POST /_matrix/key/v2/query from fakes."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.servers: dict[str, RemoteServer] = {}
        self.down: set[str] = set()
        self.calls: list[tuple[str, str, str]] = []
        # Overrides: what a server's GET /_matrix/key/v2/server answers instead.
        self.raw_answers: dict[str, Any] = {}

    def add(self, server: RemoteServer) -> RemoteServer:
        self.servers[server.name] = server
        return server

    async def get_json(self, destination: str, path: str, *,
                       query: Mapping[str, str] | None = None,
                       timeout_s: float | None = None) -> Any:
        await trio.lowlevel.checkpoint()
        self.calls.append(("GET", destination, path))
        if destination in self.down or destination not in self.servers:
            raise FederationUnreachable(f"{destination} is down")
        assert path == "/_matrix/key/v2/server"
        if destination in self.raw_answers:
            return self.raw_answers[destination]
        return self.servers[destination].response(self.clock())

    async def post_json(self, destination: str, path: str, body: Any, *,
                        query: Mapping[str, str] | None = None,
                        timeout_s: float | None = None) -> Any:
        await trio.lowlevel.checkpoint()
        self.calls.append(("POST", destination, path))
        if destination in self.down or destination not in self.servers:
            raise FederationUnreachable(f"{destination} is down")
        assert path == "/_matrix/key/v2/query"
        notary = self.servers[destination]
        out = []
        for name in body["server_keys"]:
            if name in self.servers:
                response = self.servers[name].response(self.clock())
                out.append(sign_json(response, notary.name, notary.key))
        return {"server_keys": out}
