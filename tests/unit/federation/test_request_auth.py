"""X-Matrix request signing: sign, parse, verify, and every reason to refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.federation.conftest import Clock, FakeFetchClient, RemoteServer
from trioserver.services.events.signing import SigningKey
from trioserver.services.federation.errors import FederationAuthError
from trioserver.services.federation.keys import KeyRing
from trioserver.services.federation.request_auth import (
    XMatrix,
    parse_x_matrix,
    sign_request,
    verify_request,
)
from trioserver.storage.db import Database

US = "us.example"
ORIGIN = "origin.example"
URI = "/_matrix/federation/v1/send/txn1?x=%2Fy"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fetch(clock: Clock) -> FakeFetchClient:
    fake = FakeFetchClient(clock)
    fake.add(RemoteServer(ORIGIN))
    return fake


@pytest.fixture
def keyring(db: Database, fetch: FakeFetchClient, clock: Clock) -> KeyRing:
    return KeyRing(server_name=US, signing_key=SigningKey.generate(), old_keys=[], db=db,
                   client=fetch, clock=clock)


def origin_key(fetch: FakeFetchClient) -> SigningKey:
    return fetch.servers[ORIGIN].key


async def verify(keyring: KeyRing, headers: list[tuple[str, str]], *, method: str = "PUT",
                 uri: str = URI, content: bytes | None = None) -> str:
    return await verify_request(keyring, method=method, uri=uri, headers=headers,
                                content=content, our_server_name=US)


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def test_round_trip_with_and_without_body(keyring: KeyRing, fetch: FakeFetchClient) -> None:
    content = {"pdus": [], "edus": [{"edu_type": "m.typing"}]}
    header = sign_request("PUT", URI, ORIGIN, US, content, origin_key(fetch))
    assert header.startswith(f'X-Matrix origin="{ORIGIN}",destination="{US}",key="ed25519:')
    assert await verify(keyring, [("Authorization", header)], content=body(content)) == ORIGIN
    get = sign_request("GET", "/_matrix/federation/v1/version", ORIGIN, US, None,
                       origin_key(fetch))
    assert await verify(keyring, [("authorization", get)], method="GET",
                        uri="/_matrix/federation/v1/version") == ORIGIN
    # An empty body is no body.
    assert await verify(keyring, [("Authorization", get)], method="GET",
                        uri="/_matrix/federation/v1/version", content=b"") == ORIGIN


def test_header_matches_the_spec_python_example() -> None:
    key = SigningKey.generate()
    header = sign_request("POST", "/target", "origin.hs.example.com",
                          "destination.hs.example.com", {"a": 1}, key)
    parsed = parse_x_matrix(header)
    assert parsed.origin == "origin.hs.example.com"
    assert parsed.destination == "destination.hs.example.com"
    assert parsed.key == key.key_id
    assert " " not in header.partition(" ")[2]  # no spaces around commas


@pytest.mark.parametrize(
    "header",
    [
        'X-Matrix origin="o.example",destination="d.example",key="ed25519:k",sig="c2ln"',
        'x-matrix ORIGIN=o.example, Destination="d.example" ,\tkey=ed25519:k,sig=c2ln',
        'X-MATRIX   sig="c2ln",key="ed25519:k",origin="o.example",destination=d.example',
        'X-Matrix origin="o.example",destination="d.example",key="ed25519:k",sig="c2ln",new=1',
        'X-Matrix origin="o\\.example",destination="d.example",key="ed25519:k",sig="c2\\ln"',
    ],
)
def test_parse_is_tolerant(header: str) -> None:
    assert parse_x_matrix(header) == XMatrix("o.example", "ed25519:k", "c2ln", "d.example")


def test_parse_without_destination() -> None:
    parsed = parse_x_matrix('X-Matrix origin=o.example,key="ed25519:k",sig="c2ln"')
    assert parsed.destination is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "X-Matrix",
        'X-Matrixorigin="o.example",key="ed25519:k",sig="s"',
        'X-Matrix origin="o.example",key="ed25519:k"',
        'X-Matrix key="ed25519:k",sig="s"',
        'X-Matrix origin="o.example",key="ed25519:k",sig=""',
        'X-Matrix origin="o.example",key="ed25519:k",sig="s",origin="p.example"',
        'X-Matrix origin="o.example" key="ed25519:k",sig="s"',
        'X-Matrix origin="o.example,key="ed25519:k",sig="s"',
        'X-Matrix origin="not a server",key="ed25519:k",sig="s"',
        'X-Matrix origin="o.example",destination="bad name!",key="ed25519:k",sig="s"',
        "X-Matrix " + "a" * 9000,
    ],
)
def test_parse_refuses_malformed_headers(header: str) -> None:
    with pytest.raises(FederationAuthError):
        parse_x_matrix(header)


async def test_missing_header_is_refused(keyring: KeyRing) -> None:
    with pytest.raises(FederationAuthError, match="missing X-Matrix"):
        await verify(keyring, [])
    with pytest.raises(FederationAuthError, match="missing X-Matrix"):
        await verify(keyring, [("Authorization", "Bearer token")])


async def test_malformed_header_is_refused(keyring: KeyRing) -> None:
    with pytest.raises(FederationAuthError, match="lacks sig"):
        await verify(keyring, [("Authorization", 'X-Matrix origin="a.example",key="ed25519:x"')])


async def test_wrong_destination_is_refused(keyring: KeyRing, fetch: FakeFetchClient) -> None:
    header = sign_request("GET", URI, ORIGIN, "other.example", None, origin_key(fetch))
    with pytest.raises(FederationAuthError, match="not this server"):
        await verify(keyring, [("Authorization", header)], method="GET")


async def test_missing_destination_is_accepted_when_signed_for_us(
    keyring: KeyRing, fetch: FakeFetchClient
) -> None:
    header = sign_request("GET", URI, ORIGIN, US, None, origin_key(fetch))
    old_style = header.replace(f'destination="{US}",', "")
    assert await verify(keyring, [("Authorization", old_style)], method="GET") == ORIGIN


async def test_unknown_key_is_refused(keyring: KeyRing) -> None:
    stranger = SigningKey.generate()
    header = sign_request("GET", URI, ORIGIN, US, None, stranger)
    with pytest.raises(FederationAuthError, match="unknown key"):
        await verify(keyring, [("Authorization", header)], method="GET")


async def test_unreachable_origin_is_refused(keyring: KeyRing, fetch: FakeFetchClient) -> None:
    header = sign_request("GET", URI, "gone.example", US, None, SigningKey.generate())
    with pytest.raises(FederationAuthError, match="unknown key"):
        await verify(keyring, [("Authorization", header)], method="GET")


@pytest.mark.parametrize(
    ("method", "uri", "content"),
    [
        ("POST", URI, {"pdus": []}),  # another method
        ("PUT", "/_matrix/federation/v1/send/txn2", {"pdus": []}),  # another target
        ("PUT", "/_matrix/federation/v1/send/txn1?x=/y", {"pdus": []}),  # decoded query
        ("PUT", URI, {"pdus": [1]}),  # another body
        ("PUT", URI, None),  # the body dropped
    ],
)
async def test_bad_signature_is_refused(keyring: KeyRing, fetch: FakeFetchClient, method: str,
                                        uri: str, content: Any) -> None:
    header = sign_request("PUT", URI, ORIGIN, US, {"pdus": []}, origin_key(fetch))
    with pytest.raises(FederationAuthError, match="bad X-Matrix signature"):
        await verify(keyring, [("Authorization", header)], method=method, uri=uri,
                     content=None if content is None else body(content))


async def test_tampered_signature_is_refused(keyring: KeyRing, fetch: FakeFetchClient) -> None:
    header = sign_request("GET", URI, ORIGIN, US, None, origin_key(fetch))
    sig = header.rsplit('sig="', 1)[1].rstrip('"')
    tampered = header.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
    with pytest.raises(FederationAuthError, match="bad X-Matrix signature"):
        await verify(keyring, [("Authorization", tampered)], method="GET")


async def test_body_that_is_not_json_is_refused(keyring: KeyRing,
                                                fetch: FakeFetchClient) -> None:
    header = sign_request("PUT", URI, ORIGIN, US, {"a": 1}, origin_key(fetch))
    with pytest.raises(FederationAuthError, match="not JSON"):
        await verify(keyring, [("Authorization", header)], content=b"{not json")


async def test_any_valid_header_of_several_is_enough(keyring: KeyRing,
                                                     fetch: FakeFetchClient) -> None:
    good = sign_request("GET", URI, ORIGIN, US, None, origin_key(fetch))
    bad = sign_request("GET", URI, ORIGIN, US, None, SigningKey.generate())
    headers = [("Authorization", "Bearer x"), ("Authorization", bad),
               ("Authorization", "X-Matrix nonsense"), ("Authorization", good)]
    assert await verify(keyring, headers, method="GET") == ORIGIN
    with pytest.raises(FederationAuthError):
        await verify(keyring, headers[:3], method="GET")


async def test_old_key_does_not_authenticate_requests(
    keyring: KeyRing, fetch: FakeFetchClient, clock: Clock
) -> None:
    retired = fetch.servers[ORIGIN].rotate(clock.now - 1000)
    header = sign_request("GET", URI, ORIGIN, US, None, retired)
    with pytest.raises(FederationAuthError, match="unknown key"):
        await verify(keyring, [("Authorization", header)], method="GET")
