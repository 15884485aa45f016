"""Server discovery with a fake DNS and a fake well-known endpoint (spec steps 1-6)."""

from __future__ import annotations

import json
import random

import pytest

from trioserver.services.federation.discovery import (
    ADDRESS_TTL_S,
    WELL_KNOWN_DEFAULT_TTL_S,
    WELL_KNOWN_FAILURE_TTL_S,
    WELL_KNOWN_INVALID_TTL_S,
    WELL_KNOWN_MAX_TTL_S,
    AddressPolicy,
    ResolvedServer,
    ServerResolver,
    SrvRecord,
    WellKnownReply,
    order_srv,
    split_server_name,
    well_known_ttl,
)
from trioserver.services.federation.errors import DestinationRefused, FederationUnreachable

PUBLIC = "203.0.114.7"  # not a documentation range: counts as public
PUBLIC6 = "2a00:1450:4001::1"


class FakeDns:
    def __init__(self) -> None:
        self.hosts: dict[str, list[str]] = {}
        self.srv: dict[str, list[SrvRecord]] = {}
        self.srv_queries: list[str] = []

    async def resolve_srv(self, name: str) -> list[SrvRecord]:
        self.srv_queries.append(name)
        return self.srv.get(name, [])

    async def resolve_host(self, host: str) -> list[str]:
        return self.hosts.get(host, [])


class FakeWellKnown:
    def __init__(self) -> None:
        self.replies: dict[str, WellKnownReply | Exception] = {}
        self.fetches: list[str] = []

    def delegate(self, host: str, target: str, cache_control: str | None = None) -> None:
        self.replies[host] = WellKnownReply(200, json.dumps({"m.server": target}).encode(),
                                            cache_control)

    async def __call__(self, hostname: str) -> WellKnownReply:
        self.fetches.append(hostname)
        reply = self.replies.get(hostname, WellKnownReply(404, b"{}"))
        if isinstance(reply, Exception):
            raise reply
        return reply


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns()


@pytest.fixture
def well_known() -> FakeWellKnown:
    return FakeWellKnown()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def resolver(dns: FakeDns, well_known: FakeWellKnown, clock: Clock) -> ServerResolver:
    return ServerResolver(dns, well_known, AddressPolicy(), clock=clock, rng=random.Random(1))


async def test_ip_literals(resolver: ServerResolver, well_known: FakeWellKnown) -> None:
    assert await resolver.resolve(PUBLIC) == ResolvedServer(PUBLIC, (PUBLIC,), 8448, None, PUBLIC)
    with_port = await resolver.resolve(f"{PUBLIC}:1234")
    assert (with_port.port, with_port.host_header, with_port.tls_name) == (
        1234, f"{PUBLIC}:1234", None)
    v6 = await resolver.resolve(f"[{PUBLIC6}]:99")
    assert (v6.addresses, v6.port, v6.host_header) == ((PUBLIC6,), 99, f"[{PUBLIC6}]:99")
    assert v6.url_host == f"[{PUBLIC6}]"
    assert well_known.fetches == []


async def test_explicit_port_skips_well_known_and_srv(resolver: ServerResolver, dns: FakeDns,
                                                      well_known: FakeWellKnown) -> None:
    dns.hosts["example.org"] = [PUBLIC, PUBLIC6]
    got = await resolver.resolve("example.org:8000")
    assert got == ResolvedServer("example.org:8000", (PUBLIC, PUBLIC6), 8000, "example.org",
                                 "example.org:8000")
    assert got.url_host == "example.org"
    assert well_known.fetches == []
    assert dns.srv_queries == []


async def test_default_port_8448(resolver: ServerResolver, dns: FakeDns) -> None:
    dns.hosts["example.org"] = [PUBLIC]
    got = await resolver.resolve("example.org")
    assert got == ResolvedServer("example.org", (PUBLIC,), 8448, "example.org", "example.org")
    assert dns.srv_queries == ["_matrix-fed._tcp.example.org", "_matrix._tcp.example.org"]


async def test_well_known_delegation_with_port(resolver: ServerResolver, dns: FakeDns,
                                               well_known: FakeWellKnown) -> None:
    well_known.delegate("example.org", "matrix.example.net:443")
    dns.hosts["matrix.example.net"] = [PUBLIC]
    got = await resolver.resolve("example.org")
    assert got == ResolvedServer("example.org", (PUBLIC,), 443, "matrix.example.net",
                                 "matrix.example.net:443")
    assert dns.srv_queries == []


async def test_well_known_delegation_to_ip_literal(resolver: ServerResolver,
                                                   well_known: FakeWellKnown) -> None:
    well_known.delegate("example.org", PUBLIC)
    got = await resolver.resolve("example.org")
    assert got == ResolvedServer("example.org", (PUBLIC,), 8448, None, PUBLIC)


async def test_well_known_delegation_without_port_uses_srv_then_8448(
    resolver: ServerResolver, dns: FakeDns, well_known: FakeWellKnown, clock: Clock
) -> None:
    well_known.delegate("example.org", "matrix.example.net")
    dns.hosts["matrix.example.net"] = [PUBLIC]
    dns.hosts["target.example.net"] = [PUBLIC6]
    dns.srv["_matrix-fed._tcp.matrix.example.net"] = [SrvRecord(10, 5, 8449,
                                                                "target.example.net.")]
    got = await resolver.resolve("example.org")
    # The SRV target is where to connect; the certificate and Host are the delegated name.
    assert got == ResolvedServer("example.org", (PUBLIC6,), 8449, "matrix.example.net",
                                 "matrix.example.net")
    del dns.srv["_matrix-fed._tcp.matrix.example.net"]
    clock.now += ADDRESS_TTL_S + 1
    got = await resolver.resolve("example.org")
    assert got == ResolvedServer("example.org", (PUBLIC,), 8448, "matrix.example.net",
                                 "matrix.example.net")


async def test_srv_of_the_server_name_and_the_deprecated_service(
    resolver: ServerResolver, dns: FakeDns, clock: Clock
) -> None:
    dns.hosts["a.example.net"] = [PUBLIC]
    dns.srv["_matrix-fed._tcp.example.org"] = [SrvRecord(0, 0, 443, "a.example.net")]
    got = await resolver.resolve("example.org")
    assert got == ResolvedServer("example.org", (PUBLIC,), 443, "example.org", "example.org")
    dns.srv.clear()
    dns.srv["_matrix._tcp.example.org"] = [SrvRecord(0, 0, 8000, "a.example.net")]
    clock.now += ADDRESS_TTL_S + 1
    assert (await resolver.resolve("example.org")).port == 8000


async def test_srv_with_dot_target_means_unavailable(resolver: ServerResolver,
                                                     dns: FakeDns) -> None:
    dns.hosts["example.org"] = [PUBLIC]
    dns.srv["_matrix-fed._tcp.example.org"] = [SrvRecord(0, 0, 0, ".")]
    with pytest.raises(FederationUnreachable, match="not available"):
        await resolver.resolve("example.org")


async def test_srv_falls_over_to_the_next_target(resolver: ServerResolver,
                                                 dns: FakeDns) -> None:
    dns.hosts["b.example.net"] = [PUBLIC]
    dns.srv["_matrix-fed._tcp.example.org"] = [SrvRecord(0, 0, 1, "a.example.net"),
                                               SrvRecord(5, 0, 2, "b.example.net")]
    got = await resolver.resolve("example.org")
    assert (got.addresses, got.port) == ((PUBLIC,), 2)


def test_srv_order_by_priority_then_weight() -> None:
    records = [SrvRecord(20, 0, 1, "c"), SrvRecord(10, 0, 2, "a"), SrvRecord(10, 100, 3, "b")]
    seen = {tuple(r.target for r in order_srv(records, random.Random(seed)))
            for seed in range(50)}
    assert all(order[2] == "c" for order in seen)
    # The heavy record comes first nearly always, the zero-weight one rarely.
    firsts = [order_srv(records, random.Random(s))[0].target for s in range(200)]
    assert firsts.count("b") > 180


async def test_private_addresses_are_refused(resolver: ServerResolver, dns: FakeDns,
                                             well_known: FakeWellKnown) -> None:
    for name in ("127.0.0.1", "10.1.2.3:8448", "[::1]", "192.168.0.1", "169.254.1.1",
                 "[fe80::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "100.64.0.1", "224.0.0.1"):
        with pytest.raises(DestinationRefused):
            await resolver.resolve(name)
    dns.hosts["internal.example"] = ["10.0.0.5", "::1"]
    with pytest.raises(DestinationRefused, match="allow_private_addresses"):
        await resolver.resolve("internal.example:8448")
    # Mixed answers: only the public addresses are used.
    dns.hosts["mixed.example"] = ["10.0.0.5", PUBLIC]
    assert (await resolver.resolve("mixed.example:8448")).addresses == (PUBLIC,)
    # Delegations and SRV targets are checked too.
    well_known.delegate("delegating.example", "internal.example:443")
    with pytest.raises(DestinationRefused):
        await resolver.resolve("delegating.example")
    dns.srv["_matrix-fed._tcp.srv.example"] = [SrvRecord(0, 0, 443, "internal.example")]
    with pytest.raises(DestinationRefused):
        await resolver.resolve("srv.example")


async def test_allowed_networks_let_private_addresses_through(dns: FakeDns,
                                                              well_known: FakeWellKnown) -> None:
    resolver = ServerResolver(dns, well_known, AddressPolicy(["127.0.0.0/8", "10.0.0.0/8"]))
    assert (await resolver.resolve("127.0.0.1:8448")).addresses == ("127.0.0.1",)
    dns.hosts["internal.example"] = ["10.0.0.5", "192.168.1.1"]
    assert (await resolver.resolve("internal.example:1")).addresses == ("10.0.0.5",)
    with pytest.raises(DestinationRefused):
        await resolver.resolve("192.168.1.1")


async def test_unresolvable_name(resolver: ServerResolver) -> None:
    with pytest.raises(FederationUnreachable, match="cannot resolve"):
        await resolver.resolve("nowhere.example")
    with pytest.raises(FederationUnreachable, match="not a valid server name"):
        await resolver.resolve("bad name")


async def test_well_known_cache_follows_cache_control(
    resolver: ServerResolver, dns: FakeDns, well_known: FakeWellKnown, clock: Clock
) -> None:
    dns.hosts["matrix.example.net"] = [PUBLIC]
    well_known.delegate("example.org", "matrix.example.net:443", "public, max-age=7200")
    await resolver.resolve("example.org")
    clock.now += ADDRESS_TTL_S + 1
    await resolver.resolve("example.org")
    assert well_known.fetches == ["example.org"]
    clock.now += 7200
    await resolver.resolve("example.org")
    assert well_known.fetches == ["example.org"] * 2


async def test_invalid_well_known_is_cached_for_an_hour(
    resolver: ServerResolver, dns: FakeDns, well_known: FakeWellKnown, clock: Clock
) -> None:
    dns.hosts["example.org"] = [PUBLIC]
    well_known.replies["example.org"] = WellKnownReply(200, b'{"m.server": 5}')
    assert (await resolver.resolve("example.org")).port == 8448
    clock.now += WELL_KNOWN_INVALID_TTL_S - 1
    resolver._resolved.clear()
    await resolver.resolve("example.org")
    assert len(well_known.fetches) == 1
    clock.now += 2
    resolver._resolved.clear()
    await resolver.resolve("example.org")
    assert len(well_known.fetches) == 2


async def test_well_known_failures_back_off_and_keep_the_last_delegation(
    resolver: ServerResolver, dns: FakeDns, well_known: FakeWellKnown, clock: Clock
) -> None:
    dns.hosts["matrix.example.net"] = [PUBLIC]
    dns.hosts["example.org"] = [PUBLIC6]
    well_known.delegate("example.org", "matrix.example.net:443", "max-age=600")
    assert (await resolver.resolve("example.org")).port == 443
    well_known.replies["example.org"] = FederationUnreachable("connection refused")
    clock.now += 601
    resolver._resolved.clear()
    # Still delegated: a failing well-known endpoint does not undo a delegation.
    assert (await resolver.resolve("example.org")).port == 443
    assert len(well_known.fetches) == 2
    # Retried after 2 minutes, then 4, ...
    for ttl in (WELL_KNOWN_FAILURE_TTL_S, 2 * WELL_KNOWN_FAILURE_TTL_S):
        clock.now += ttl - 1
        resolver._resolved.clear()
        await resolver.resolve("example.org")
        fetched = len(well_known.fetches)
        clock.now += 2
        resolver._resolved.clear()
        await resolver.resolve("example.org")
        assert len(well_known.fetches) == fetched + 1


async def test_well_known_failure_without_history_falls_through(
    resolver: ServerResolver, dns: FakeDns, well_known: FakeWellKnown
) -> None:
    dns.hosts["example.org"] = [PUBLIC]
    well_known.replies["example.org"] = FederationUnreachable("timeout")
    got = await resolver.resolve("example.org")
    assert (got.port, got.tls_name) == (8448, "example.org")


def test_well_known_ttl() -> None:
    assert well_known_ttl(None) == WELL_KNOWN_DEFAULT_TTL_S
    assert well_known_ttl("max-age=999999999") == WELL_KNOWN_MAX_TTL_S
    assert well_known_ttl("public, max-age=3600") == 3600
    assert well_known_ttl("no-store") == 300
    assert well_known_ttl("max-age=1") == 300


def test_split_server_name() -> None:
    assert split_server_name("example.org") == ("example.org", None)
    assert split_server_name("example.org:80") == ("example.org", 80)
    assert split_server_name("[::1]:80") == ("::1", 80)
    assert split_server_name("[::1]") == ("::1", None)
    assert split_server_name("1.2.3.4:5") == ("1.2.3.4", 5)
