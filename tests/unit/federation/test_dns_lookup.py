"""SystemDns: dnspython's async resolver on trio, against a tiny DNS server on loopback."""

from __future__ import annotations

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
import trio

from trioserver.services.federation.discovery import SrvRecord
from trioserver.services.federation.dns_lookup import SystemDns
from trioserver.services.federation.errors import FederationUnreachable

ZONE = {
    "_matrix-fed._tcp.example.org.": ["10 5 8448 matrix.example.org.", "20 0 443 backup.example."],
    "_matrix-fed._tcp.none.example.": ["0 0 0 ."],
}


async def serve_dns(sock: trio.socket.SocketType) -> None:
    with sock:
        while True:
            await answer(sock)


async def answer(sock: trio.socket.SocketType) -> None:
    data, peer = await sock.recvfrom(4096)
    query = dns.message.from_wire(data)
    reply = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text()
    if name.startswith("_servfail"):
        reply.set_rcode(dns.rcode.SERVFAIL)
    elif name in ZONE and question.rdtype == dns.rdatatype.SRV:
        reply.answer.append(dns.rrset.from_text_list(name, 300, dns.rdataclass.IN,
                                                     dns.rdatatype.SRV, ZONE[name]))
    elif name not in ZONE:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    await sock.sendto(reply.to_wire(), peer)


@pytest.fixture
async def system_dns(nursery: trio.Nursery) -> SystemDns:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    nursery.start_soon(serve_dns, sock)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = sock.getsockname()[1]
    return SystemDns(resolver, timeout_s=5)


async def test_srv_records(system_dns: SystemDns) -> None:
    records = await system_dns.resolve_srv("_matrix-fed._tcp.example.org")
    assert sorted(records, key=lambda r: r.priority) == [
        SrvRecord(10, 5, 8448, "matrix.example.org"), SrvRecord(20, 0, 443, "backup.example")]
    assert await system_dns.resolve_srv("_matrix-fed._tcp.none.example") == [
        SrvRecord(0, 0, 0, ".")]


async def test_missing_srv_is_empty(system_dns: SystemDns) -> None:
    assert await system_dns.resolve_srv("_matrix-fed._tcp.nothing.example") == []


async def test_dns_failure_is_unreachable(system_dns: SystemDns) -> None:
    with pytest.raises(FederationUnreachable, match="SRV lookup"):
        await system_dns.resolve_srv("_servfail._tcp.example.org")


async def test_addresses_come_from_the_system_resolver() -> None:
    # /etc/hosts: no DNS server involved.
    assert "127.0.0.1" in await SystemDns().resolve_host("localhost")
    assert await SystemDns().resolve_host("name.that.does.not.exist.invalid") == []
