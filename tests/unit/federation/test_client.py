"""FederationClient against the real app served in-process over TLS: signing, the raw request
target, authenticate_origin, errors, certificate checks, the address policy and timeouts."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from quart import Response, request

from tests.tls_certs import CertFiles, make_cert
from tests.unit.federation.conftest import Clock, FakeFetchClient, RemoteServer
from trioserver.api.federation.auth import authenticate_origin
from trioserver.api.http import reply
from trioserver.app import create_app, shield_send
from trioserver.config import Config, Federation
from trioserver.net.serve import Endpoint, bound_address, open_tcp_listeners, serve
from trioserver.net.tls_context import build_server_context
from trioserver.net.tls_stream import TLSListener
from trioserver.server import hypercorn_config
from trioserver.services.clock import now_ms
from trioserver.services.container import build_services
from trioserver.services.events.signing import load_or_create_signing_key
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.errors import (
    DestinationRefused,
    FederationRequestError,
    FederationUnreachable,
)
from trioserver.services.federation.keys import KeyRing
from trioserver.storage.db import Database
from trioserver.storage.ttl_store import TTLStore

ORIGIN = "origin.test"
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Target:
    name: str
    url: str
    certs: CertFiles
    origin: RemoteServer


@pytest.fixture
async def target(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Target]:
    """The app as server `localhost:<port>` on a TLS listener, with a test-only route."""
    certs = make_cert(tmp_path / "tls")
    listeners = await open_tcp_listeners("federation", "127.0.0.1", 0)
    port = bound_address(listeners[0])[1]
    config = Config(server_name=f"localhost:{port}", data_dir=tmp_path / "data",
                    federation=Federation(trusted_key_servers=()))
    db = Database.open(config.database_path, readers=2)
    await nursery.start(db.run)
    key = load_or_create_signing_key(config.data_dir / "signing.key")
    fake = FakeFetchClient(Clock(now_ms()))
    origin = fake.add(RemoteServer(ORIGIN))
    services = build_services(config, db, TTLStore(), key)
    services = dataclasses.replace(services, keyring=KeyRing(
        server_name=config.server_name, signing_key=key, old_keys=[], db=db, client=fake))
    app = create_app(services)

    @app.route("/_matrix/federation/v1/_test/<room_id>", methods=["GET", "PUT"])
    async def probe(room_id: str) -> Response:
        origin = await authenticate_origin(services)
        body = await request.get_data(True, False, False)
        return reply({"origin": origin, "room_id": room_id, "args": request.args.to_dict(),
                      "body": body.decode()})

    @app.route("/_matrix/federation/v1/_slow", methods=["GET"])
    async def slow() -> Response:
        await trio.sleep(5)
        return reply({})

    context = build_server_context(certs.cert, certs.key, http2=False)
    tls = [TLSListener(s, context) for s in listeners]
    stop = trio.Event()
    await nursery.start(partial(serve, [Endpoint("federation", shield_send(app), tls,
                                                 scheme="https")],
                                hypercorn_config(), stop=stop, grace_s=1))
    yield Target(config.server_name, f"https://localhost:{port}", certs, origin)
    stop.set()
    db.close()


def client_for(target: Target, **kw: object) -> FederationClient:
    options: dict[str, object] = {"ca_file": str(target.certs.cert),
                                  "allowed_private_networks": LOOPBACK}
    options.update(kw)
    return FederationClient(server_name=ORIGIN, signing_key=target.origin.key,
                            **options)  # type: ignore[arg-type]


async def test_signed_get_with_encoded_path_and_query(target: Target) -> None:
    client = client_for(target)
    try:
        got = await client.get_json(target.name, "/_matrix/federation/v1/_test/%21r%3Aexample.org",
                                    query={"v": "a/b c", "w": ["1", "2"]})
    finally:
        await client.aclose()
    assert got == {"origin": ORIGIN, "room_id": "!r:example.org",
                   "args": {"v": "a/b c", "w": "1"}, "body": ""}


async def test_signed_put_body_is_still_readable(target: Target) -> None:
    client = client_for(target)
    try:
        got = await client.put_json(target.name, "/_matrix/federation/v1/_test/x",
                                    {"pdus": [], "é": "ü"})
    finally:
        await client.aclose()
    assert got["origin"] == ORIGIN
    assert got["body"] == '{"pdus":[],"é":"ü"}'


async def test_unsigned_and_missigned_requests_get_401(target: Target) -> None:
    verify = ssl.create_default_context(cafile=str(target.certs.cert))
    async with httpx.AsyncClient(verify=verify) as http:
        r = await http.get(f"{target.url}/_matrix/federation/v1/_test/x")
        assert r.status_code == 401
        assert r.json()["errcode"] == "M_UNAUTHORIZED"
        r = await http.get(f"{target.url}/_matrix/federation/v1/_test/x", headers={
            "Authorization": f'X-Matrix origin="{ORIGIN}",key="ed25519:x",sig="abc"'})
        assert r.status_code == 401
        assert "unknown key" in r.json()["error"]


async def test_error_answers_raise_request_error(target: Target) -> None:
    client = client_for(target)
    try:
        with pytest.raises(FederationRequestError) as info:
            await client.get_json(target.name, "/_matrix/federation/v1/nothing")
        assert (info.value.status, info.value.errcode) == (404, "M_UNRECOGNIZED")
        # The version endpoint is public; it answers JSON.
        version = await client.get_json(target.name, "/_matrix/federation/v1/version")
        assert version["server"]["name"] == "trioserver"
    finally:
        await client.aclose()


async def test_certificate_must_be_trusted(target: Target, tmp_path: Path) -> None:
    other = make_cert(tmp_path / "other")
    client = client_for(target, ca_file=str(other.cert))
    try:
        with pytest.raises(FederationUnreachable):
            await client.get_json(target.name, "/_matrix/federation/v1/version")
    finally:
        await client.aclose()
    client = client_for(target, ca_file="", insecure_skip_verify=True)
    try:
        assert await client.get_json(target.name, "/_matrix/federation/v1/version")
    finally:
        await client.aclose()


async def test_loopback_is_refused_unless_allowed(target: Target) -> None:
    client = client_for(target, allowed_private_networks=())
    try:
        with pytest.raises(DestinationRefused):
            await client.get_json(target.name, "/_matrix/federation/v1/version")
        with pytest.raises(DestinationRefused):
            await client.get_json("127.0.0.1:1", "/_matrix/federation/v1/version")
    finally:
        await client.aclose()


async def test_timeout_and_connection_refused(target: Target) -> None:
    client = client_for(target)
    try:
        with pytest.raises(FederationUnreachable, match="timed out"):
            await client.get_json(target.name, "/_matrix/federation/v1/_slow", timeout_s=0.5)
        with pytest.raises(FederationUnreachable):
            await client.get_json("127.0.0.1:1", "/_matrix/federation/v1/version")
    finally:
        await client.aclose()


async def test_disabled_client_sends_nothing(target: Target) -> None:
    client = client_for(target, enabled=False)
    with pytest.raises(FederationUnreachable, match="disabled"):
        await client.get_json(target.name, "/_matrix/federation/v1/version")
    await client.aclose()
