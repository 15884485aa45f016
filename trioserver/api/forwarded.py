"""ASGI wrapper: believe X-Forwarded-For / X-Forwarded-Proto only from trusted proxies.

Behind a TLS terminator every request comes from the proxy's address, which would put all users
in one rate-limit bucket and record the proxy as every device's last IP. When the peer is a
configured trusted proxy, the client is the right-most X-Forwarded-For address that is not
itself a trusted proxy (the left part of the header is whatever the client chose to send).
From any other peer the headers are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, cast

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def _trusted(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def forwarded_client(forwarded_for: list[str], networks: list[Network]) -> str | None:
    """The real client among X-Forwarded-For values, or None if there is no usable one."""
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop.strip("[]"))
        except ValueError:
            return None  # garbage (or "unknown") from here on cannot be trusted
        if not _trusted(hop, networks):
            return hop.strip("[]")
    return hops[0].strip("[]") if hops else None


def trust_proxies(app: ASGIFramework, trusted: Iterable[str]) -> ASGIFramework:
    networks = parse_networks(trusted)
    if not networks:
        return app

    async def wrapped(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        # The scope is this request's own dict: changing it in place is what ASGI expects.
        notes = cast(dict[str, Any], scope)
        client: tuple[str, int] | None = notes.get("client")
        if notes["type"] in ("http", "websocket") and client and _trusted(client[0], networks):
            headers: Iterable[tuple[bytes, bytes]] = notes["headers"]
            hops = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
            real = forwarded_client(hops, networks) if hops else None
            if real is not None:
                notes["client"] = (real, 0)
            proto = [v for k, v in headers if k == b"x-forwarded-proto"]
            if proto and proto[-1] in (b"http", b"https"):
                notes["scheme"] = proto[-1].decode()
        await app(scope, receive, send)

    return wrapped
