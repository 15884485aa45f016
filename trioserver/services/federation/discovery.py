"""Server discovery: which addresses, port, TLS name and Host header reach a server name.

Spec: Server-Server API, "Resolving server names", steps:
  1. an IP literal: that address, the given port or 8448;
  2. a hostname with an explicit port: its addresses and that port;
  3. GET https://<hostname>/.well-known/matrix/server; a valid `m.server` delegates to
     <delegated_hostname>[:<delegated_port>], resolved by 3.1-3.5 (IP literal; explicit port;
     SRV _matrix-fed._tcp; deprecated SRV _matrix._tcp; port 8448);
  4./5. no delegation: SRV _matrix-fed._tcp.<hostname>, then the deprecated _matrix._tcp;
  6. else the hostname's addresses and port 8448.

The certificate must be valid for the hostname the server name (or the delegation) names,
never for an SRV target: `tls_name` is that hostname (None for an IP literal, whose
certificate must name the IP). Every address, including SRV targets and the hosts the
well-known request itself goes to, passes the `AddressPolicy` first: private, loopback,
link-local and similar ranges are refused unless allowed by configuration.

Well-known answers are cached as the spec recommends: by their Cache-Control max-age (24 hours
without one, at most 48 hours); invalid answers for an hour; failures to connect for 2 minutes,
doubling with each failure in a row up to an hour (a delegation seen before keeps being used
meanwhile). Resolved servers are cached for ADDRESS_TTL_S.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from trioserver.identifiers import is_valid_server_name
from trioserver.services.federation.errors import DestinationRefused, FederationUnreachable

DEFAULT_PORT = 8448
ADDRESS_TTL_S = 300.0
WELL_KNOWN_DEFAULT_TTL_S = 24 * 3600.0
WELL_KNOWN_MAX_TTL_S = 48 * 3600.0
WELL_KNOWN_MIN_TTL_S = 300.0
WELL_KNOWN_INVALID_TTL_S = 3600.0
WELL_KNOWN_FAILURE_TTL_S = 120.0
WELL_KNOWN_MAX_FAILURE_TTL_S = 3600.0
MAX_CACHE_ENTRIES = 10_000
K = TypeVar("K")
V = TypeVar("V")
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)")


# -- names and addresses --------------------------------------------------------------------


def split_server_name(name: str) -> tuple[str, int | None]:
    """(host, port or None) of a server name; an IPv6 host comes without its brackets."""
    if not is_valid_server_name(name):
        raise FederationUnreachable(f"{name!r} is not a valid server name")
    if name.startswith("["):
        host, _, rest = name[1:].partition("]")
        return host, int(rest[1:]) if rest else None
    host, sep, port = name.rpartition(":")
    return (host, int(port)) if sep else (name, None)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AddressPolicy:
    """Which IP addresses this server may connect to for federation.

    Refused by default: everything that is not globally routable (loopback, private,
    carrier-grade NAT, link-local, unique-local, documentation, reserved, unspecified) and
    multicast; IPv4-mapped IPv6 addresses are judged by their IPv4 address. `allowed` lists
    networks (CIDRs) let through anyway, for test set-ups and private federations.
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in allowed]

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self._allowed):
            return True
        return ip.is_global and not ip.is_multicast


# -- what discovery needs from DNS and HTTP --------------------------------------------------


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # "." means "no such service here"


class DnsLookup(Protocol):
    async def resolve_srv(self, name: str) -> list[SrvRecord]:
        """The SRV records of `name`; [] when there are none. FederationUnreachable on a
        DNS failure."""
        ...

    async def resolve_host(self, host: str) -> list[str]:
        """The IP addresses of `host` (CNAME, AAAA, A); [] when it has none."""
        ...


@dataclass(frozen=True)
class WellKnownReply:
    status: int
    body: bytes
    cache_control: str | None = None


# GET https://<hostname>/.well-known/matrix/server; raises FederationUnreachable when no answer.
WellKnownFetch = Callable[[str], Awaitable[WellKnownReply]]


@dataclass(frozen=True)
class ResolvedServer:
    """Where to send requests for `server_name`."""

    server_name: str
    addresses: tuple[str, ...]  # checked against the address policy, in preference order
    port: int
    tls_name: str | None  # SNI and the name the certificate must match; None: an IP literal
    host_header: str

    @property
    def url_host(self) -> str:
        """The host part of request URLs: the TLS name, or the bracketed IP literal."""
        if self.tls_name is not None:
            return self.tls_name
        address = self.addresses[0]
        return f"[{address}]" if ":" in address else address


def order_srv(records: list[SrvRecord], rng: random.Random | None = None) -> list[SrvRecord]:
    """RFC 2782 order: by priority, and within one priority weighted at random."""
    rng = rng or random.Random()
    out: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        pool = [r for r in records if r.priority == priority]
        while pool:
            total = sum(r.weight for r in pool)
            pick = pool[0]
            if total > 0:
                point = rng.uniform(0, total)
                for r in pool:
                    point -= r.weight
                    if point <= 0:
                        pick = r
                        break
            out.append(pick)
            pool.remove(pick)
    return out


def parse_well_known(reply: WellKnownReply) -> str | None:
    """The delegated server name of a valid answer, else None (then step 4 follows)."""
    if reply.status != 200:
        return None
    try:
        body = json.loads(reply.body)
    except (ValueError, RecursionError):
        return None
    server = body.get("m.server") if isinstance(body, dict) else None
    if not isinstance(server, str) or not is_valid_server_name(server):
        return None
    return server


def well_known_ttl(cache_control: str | None) -> float:
    if cache_control:
        lowered = cache_control.lower()
        if "no-store" in lowered or "no-cache" in lowered:
            return WELL_KNOWN_MIN_TTL_S
        m = _MAX_AGE.search(lowered)
        if m:
            return min(max(float(m.group(1)), WELL_KNOWN_MIN_TTL_S), WELL_KNOWN_MAX_TTL_S)
    return WELL_KNOWN_DEFAULT_TTL_S


@dataclass
class _WellKnownEntry:
    delegated: str | None
    expires: float
    failures: int = 0
    # The last delegation seen, kept through failures to reach the well-known endpoint.
    last_good: str | None = None


class ServerResolver:
    """Resolves server names (see the module docstring), with the spec's caching."""

    def __init__(
        self,
        dns: DnsLookup,
        fetch_well_known: WellKnownFetch,
        policy: AddressPolicy,
        *,
        clock: Callable[[], float] = trio.current_time,
        rng: random.Random | None = None,
    ) -> None:
        self._dns = dns
        self._fetch_well_known = fetch_well_known
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._well_known: dict[str, _WellKnownEntry] = {}
        self._resolved: dict[str, tuple[float, ResolvedServer]] = {}

    async def resolve(self, server_name: str) -> ResolvedServer:
        now = self._clock()
        hit = self._resolved.get(server_name)
        if hit is not None and hit[0] > now:
            return hit[1]
        resolved = await self._resolve(server_name)
        _bounded_put(self._resolved, server_name, (now + ADDRESS_TTL_S, resolved))
        return resolved

    async def checked_addresses(self, host: str) -> tuple[str, ...]:
        """The addresses of `host` (a hostname or IP literal) this server may connect to.

        FederationUnreachable when it has none, DestinationRefused when all are refused.
        """
        found = [host] if is_ip_literal(host) else await self._dns.resolve_host(host)
        if not found:
            raise FederationUnreachable(f"cannot resolve {host}")
        allowed = tuple(a for a in found if self.policy.allows(a))
        if not allowed:
            raise DestinationRefused(
                f"{host} resolves only to refused addresses ({', '.join(found[:3])}); see "
                "federation.allow_private_addresses")
        return allowed

    async def _resolve(self, server_name: str) -> ResolvedServer:
        host, port = split_server_name(server_name)
        if is_ip_literal(host):  # step 1
            return await self._at(server_name, host, port or DEFAULT_PORT, None, server_name)
        if port is not None:  # step 2
            return await self._at(server_name, host, port, host, server_name)
        delegated = await self._delegation(host)  # step 3
        if delegated is not None:
            d_host, d_port = split_server_name(delegated)
            if is_ip_literal(d_host):  # 3.1
                return await self._at(server_name, d_host, d_port or DEFAULT_PORT, None,
                                      delegated)
            if d_port is not None:  # 3.2
                return await self._at(server_name, d_host, d_port, d_host, delegated)
            return await self._srv_or_default(server_name, d_host)  # 3.3-3.5
        return await self._srv_or_default(server_name, host)  # steps 4-6

    async def _at(self, server_name: str, host: str, port: int, tls_name: str | None,
                  host_header: str) -> ResolvedServer:
        addresses = await self.checked_addresses(host)
        return ResolvedServer(server_name, addresses, port, tls_name, host_header)

    async def _srv_or_default(self, server_name: str, host: str) -> ResolvedServer:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = await self._dns.resolve_srv(f"{service}.{host}")
            if not records:
                continue
            usable = [r for r in order_srv(records, self._rng) if r.target not in (".", "")]
            failure: FederationUnreachable = FederationUnreachable(
                f"SRV {service}.{host} says the service is not available")
            for record in usable:
                try:
                    addresses = await self.checked_addresses(record.target.rstrip("."))
                except FederationUnreachable as e:
                    failure = e
                    continue
                return ResolvedServer(server_name, addresses, record.port, host, host)
            raise failure
        return await self._at(server_name, host, DEFAULT_PORT, host, host)

    async def _delegation(self, hostname: str) -> str | None:
        now = self._clock()
        entry = self._well_known.get(hostname)
        if entry is not None and entry.expires > now:
            return entry.delegated
        try:
            reply = await self._fetch_well_known(hostname)
        except FederationUnreachable:
            failures = entry.failures + 1 if entry is not None else 1
            last_good = entry.last_good if entry is not None else None
            ttl = min(WELL_KNOWN_FAILURE_TTL_S * 2 ** (failures - 1), WELL_KNOWN_MAX_FAILURE_TTL_S)
            _bounded_put(self._well_known, hostname,
                         _WellKnownEntry(last_good, now + ttl, failures, last_good))
            return last_good
        delegated = parse_well_known(reply)
        ttl = (well_known_ttl(reply.cache_control) if delegated is not None
               else WELL_KNOWN_INVALID_TTL_S)
        _bounded_put(self._well_known, hostname,
                     _WellKnownEntry(delegated, now + ttl, 0, delegated))
        return delegated


def _bounded_put(cache: dict[K, V], key: K, value: V) -> None:
    """Insert, evicting the oldest entries beyond MAX_CACHE_ENTRIES."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > MAX_CACHE_ENTRIES:
        del cache[next(iter(cache))]
