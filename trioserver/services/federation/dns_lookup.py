"""DNS for server discovery: SRV records with dnspython's async resolver on trio, addresses
from the system resolver.

SRV: `dns.asyncresolver` with dnspython's trio backend (UDP, then TCP on truncation).
Addresses: `getaddrinfo` (in a worker thread, as trio does it), so /etc/hosts and the
system's resolver configuration apply as for every other program on the machine.
"""

from __future__ import annotations

import socket

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.rdtypes.IN.SRV
import dns.resolver
import trio

from trioserver.services.federation.discovery import SrvRecord
from trioserver.services.federation.errors import FederationUnreachable

DNS_TIMEOUT_S = 10.0


class SystemDns:
    """The `DnsLookup` of a running server."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None,
                 *, timeout_s: float = DNS_TIMEOUT_S) -> None:
        self._resolver = resolver
        self._timeout_s = timeout_s

    def _get_resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            try:
                # Reads /etc/resolv.conf (blocking, once).
                self._resolver = dns.asyncresolver.Resolver()
            except dns.exception.DNSException as e:
                raise FederationUnreachable(f"no DNS resolver configured: {e}") from None
        return self._resolver

    async def resolve_srv(self, name: str) -> list[SrvRecord]:
        resolver = self._get_resolver()
        try:
            answer = await resolver.resolve(name, "SRV", lifetime=self._timeout_s,
                                            backend=dns.asyncbackend.get_backend("trio"))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as e:
            raise FederationUnreachable(f"SRV lookup of {name} failed: {e}") from None
        records: list[SrvRecord] = []
        for rdata in answer:
            if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
                target = rdata.target.to_text(omit_final_dot=True) or "."
                records.append(SrvRecord(rdata.priority, rdata.weight, rdata.port, target))
        return records

    async def resolve_host(self, host: str) -> list[str]:
        try:
            infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return []
        # Scope ids ("fe80::1%eth0") are dropped: link-local addresses are refused anyway.
        return list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in infos))
