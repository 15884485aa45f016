"""Server keys end to end: real servers, real TLS between them.

Server B federates as `localhost:<port>` on its built-in TLS listener (a certificate for
`localhost`); server A trusts that certificate (federation.ca_file) and loopback
(federation.allow_private_addresses). A's notary endpoint makes A's FederationClient and
KeyRing fetch B's keys over HTTPS: discovery, TLS checks, signed requests and the key checks
all run for real. Key rotation is checked the same way, with a KeyRing and FederationClient in
this test process.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import ServerFactory
from tests.e2e.cli_process import one_line_error, run_cli
from tests.server_process import ServerProcess
from tests.tls_certs import CertFiles, make_cert
from trioserver.services.events.hashing import decode_unpadded_b64
from trioserver.services.events.signing import parse_key_file_line, sign_json, verify_json_signature
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.errors import FederationAuthError
from trioserver.services.federation.keys import KeyRing
from trioserver.storage.db import Database

LOOPBACK = '["127.0.0.0/8", "::1/128"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def key_of(body: dict[str, Any], key_id: str) -> bytes:
    entry = body["verify_keys"].get(key_id) or body["old_verify_keys"][key_id]
    return decode_unpadded_b64(entry["key"])


def self_signed(body: dict[str, Any], server_name: str) -> bool:
    return all(verify_json_signature(body, server_name, key_id, key_of(body, key_id))
               for key_id in body["signatures"][server_name]) and bool(
        body["signatures"][server_name])


async def get_json(url: str) -> Any:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(url)
        assert r.status_code == 200, r.text
        return r.json()


async def test_server_key_response_verifies_against_itself(server: ServerProcess) -> None:
    body = await get_json(f"{server.url}/_matrix/key/v2/server")
    assert body["server_name"] == server.server_name
    assert len(body["verify_keys"]) == 1
    assert body["old_verify_keys"] == {}
    assert self_signed(body, server.server_name)
    key_line = (server.data_dir / "signing.key").read_text()
    assert list(body["verify_keys"]) == [parse_key_file_line(key_line).key_id]
    version = await get_json(f"{server.url}/_matrix/federation/v1/version")
    assert version["server"]["name"] == "trioserver"


class Federated:
    """Server B, federating over TLS as localhost:<port>, restartable on the same port."""

    def __init__(self, factory: ServerFactory, tmp_path: Path) -> None:
        self.factory = factory
        self.port = free_port()
        self.name = f"localhost:{self.port}"
        self.data_dir = tmp_path / "b"
        self.certs: CertFiles = make_cert(tmp_path / "b-tls")
        self.config = (f'[tls]\ncert = "{self.certs.cert}"\nkey = "{self.certs.key}"\n'
                       f'listen = "127.0.0.1:{self.port}"\n'
                       "[federation]\ntrusted_key_servers = []\n")
        self.proc = self.start()

    def start(self) -> ServerProcess:
        self.proc = self.factory(config_text=self.config, server_name=self.name,
                                 data_dir=self.data_dir)
        return self.proc


@pytest.fixture
def server_b(server_factory: ServerFactory, tmp_path: Path) -> Federated:
    return Federated(server_factory, tmp_path)


def notary_config(b: Federated) -> str:
    return (f'[federation]\ntrusted_key_servers = []\nca_file = "{b.certs.cert}"\n'
            f"allow_private_addresses = {LOOPBACK}\n")


async def test_notary_fetches_over_tls_and_cosigns(server_factory: ServerFactory,
                                                   server_b: Federated) -> None:
    a = server_factory(config_text=notary_config(server_b))
    own_b = await get_json(f"{server_b.proc.url}/_matrix/key/v2/server")
    own_a = await get_json(f"{a.url}/_matrix/key/v2/server")
    [answer] = (await get_json(f"{a.url}/_matrix/key/v2/query/{server_b.name}"))["server_keys"]
    assert answer["verify_keys"] == own_b["verify_keys"]
    assert self_signed({**answer, "signatures": {server_b.name:
                                                 answer["signatures"][server_b.name]}},
                       server_b.name)
    [a_key] = own_a["verify_keys"]
    assert verify_json_signature(answer, a.server_name, a_key, key_of(own_a, a_key))
    # Batch form; B's keys are now served from A's store even with B stopped.
    server_b.proc.stop()
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{a.url}/_matrix/key/v2/query", json={"server_keys": {
            server_b.name: {}, a.server_name: {}}})
    assert r.status_code == 200, r.text
    names = [k["server_name"] for k in r.json()["server_keys"]]
    assert names == [server_b.name, a.server_name]


async def test_notary_refuses_loopback_without_allowance(server_factory: ServerFactory,
                                                         server_b: Federated) -> None:
    config = (f'[federation]\ntrusted_key_servers = []\nca_file = "{server_b.certs.cert}"\n')
    a = server_factory(config_text=config)
    body = await get_json(f"{a.url}/_matrix/key/v2/query/{server_b.name}")
    assert body == {"server_keys": []}
    a.wait_log("refused addresses")


async def test_notary_refuses_an_untrusted_certificate(server_factory: ServerFactory,
                                                       server_b: Federated,
                                                       tmp_path: Path) -> None:
    other = make_cert(tmp_path / "other")
    config = (f'[federation]\ntrusted_key_servers = []\nca_file = "{other.cert}"\n'
              f"allow_private_addresses = {LOOPBACK}\n")
    a = server_factory(config_text=config)
    body = await get_json(f"{a.url}/_matrix/key/v2/query/{server_b.name}")
    assert body == {"server_keys": []}


@pytest.fixture
async def local_db(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Database]:
    db = Database.open(tmp_path / "keyring.db", readers=1)
    await nursery.start(db.run)
    yield db
    db.close()


async def test_rotate_signing_key(server_b: Federated, local_db: Database) -> None:
    old_key = parse_key_file_line((server_b.data_dir / "signing.key").read_text())
    before = await get_json(f"{server_b.proc.url}/_matrix/key/v2/server")
    assert list(before["verify_keys"]) == [old_key.key_id]
    signed_before = sign_json({"type": "m.room.message", "n": 1}, server_b.name, old_key)

    config_file = server_b.data_dir / "test-config.toml"
    cli_args = ("rotate-signing-key", "--config", config_file, "--data-dir", server_b.data_dir,
                "--server-name", server_b.name)
    # Refused while the server runs: it would go on signing with the retired key.
    assert "is in use" in one_line_error(await run_cli(*cli_args))
    server_b.proc.stop()
    out = await run_cli(*cli_args)
    assert out.returncode == 0, out.stderr
    result = _json_line(out.stdout)
    assert result["old_key_id"] == old_key.key_id
    new_key = parse_key_file_line((server_b.data_dir / "signing.key").read_text())
    assert result["new_key_id"] == new_key.key_id != old_key.key_id
    assert (server_b.data_dir / "signing.key").stat().st_mode & 0o777 == 0o600

    server_b.start()
    after = await get_json(f"{server_b.proc.url}/_matrix/key/v2/server")
    assert list(after["verify_keys"]) == [new_key.key_id]
    assert after["old_verify_keys"] == {old_key.key_id: {
        "key": old_key.public_key_b64, "expired_ts": result["expired_ts"]}}
    assert self_signed(after, server_b.name)

    # Another server's KeyRing, fetching over TLS, still checks what the old key signed.
    client = FederationClient(server_name="checker.test", signing_key=new_key,
                              ca_file=str(server_b.certs.cert),
                              allowed_private_networks=["127.0.0.0/8", "::1/128"])
    try:
        ring = KeyRing(server_name="checker.test", signing_key=new_key, old_keys=[],
                       db=local_db, client=client)
        await ring.verify_json(server_b.name, signed_before,
                               minimum_valid_until_ts=result["expired_ts"] - 1)
        with pytest.raises(FederationAuthError):
            await ring.verify_json(server_b.name, signed_before,
                                   minimum_valid_until_ts=result["expired_ts"] + 1)
        await ring.verify_json(server_b.name, sign_json({"n": 2}, server_b.name, new_key),
                               minimum_valid_until_ts=ring.now_ms())
    finally:
        await client.aclose()


def _json_line(stdout: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return value


async def test_rotate_without_a_key_is_refused(tmp_path: Path) -> None:
    line = one_line_error(await run_cli("rotate-signing-key", "--data-dir", tmp_path / "empty"))
    assert "no signing key" in line
