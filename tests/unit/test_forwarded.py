"""Trusted-proxy handling of X-Forwarded-For / X-Forwarded-Proto."""

from __future__ import annotations

from typing import Any

import pytest

from trioserver.api.forwarded import forwarded_client, parse_networks, trust_proxies

LOCAL = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (["203.0.113.9"], "203.0.113.9"),
        (["198.51.100.1, 203.0.113.9"], "203.0.113.9"),  # the left part is the client's word
        (["203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # chained trusted proxies are skipped
        (["198.51.100.1", "203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # repeated headers
        (["10.0.0.5, 127.0.0.1"], "10.0.0.5"),  # every hop trusted: the left-most
        (["[2001:db8::1]"], "2001:db8::1"),
        (["2001:db8::1, ::1"], "2001:db8::1"),
        (["unknown, 203.0.113.9"], "203.0.113.9"),
        (["203.0.113.9, garbage"], None),  # garbage from a trusted hop: believe nothing
        ([""], None),
    ],
)
def test_forwarded_client(header: list[str], client: str | None) -> None:
    assert forwarded_client(header, LOCAL) == client


async def _run(app_scope: dict[str, Any], trusted: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    async def receive() -> Any:
        raise AssertionError

    async def send(message: Any) -> None:
        raise AssertionError

    await trust_proxies(app, trusted)(app_scope, receive, send)  # type: ignore[arg-type]
    return seen


def _scope(peer: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "client": (peer, 5555), "headers": list(headers),
            "scheme": "http"}


async def test_trusted_peer_is_replaced_by_the_forwarded_client() -> None:
    scope = await _run(_scope("127.0.0.1", (b"x-forwarded-for", b"203.0.113.9"),
                              (b"x-forwarded-proto", b"https")), ["127.0.0.1"])
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["scheme"] == "https"


async def test_untrusted_peer_keeps_its_address() -> None:
    scope = await _run(_scope("192.0.2.50", (b"x-forwarded-for", b"203.0.113.9"),
                              (b"x-forwarded-proto", b"https")), ["127.0.0.1"])
    assert scope["client"] == ("192.0.2.50", 5555)
    assert scope["scheme"] == "http"


async def test_ipv4_mapped_peer_counts_as_trusted() -> None:
    scope = await _run(_scope("::ffff:127.0.0.1", (b"x-forwarded-for", b"203.0.113.9")),
                       ["127.0.0.1"])
    assert scope["client"] == ("203.0.113.9", 0)


async def test_bad_proto_is_ignored_and_no_header_keeps_peer() -> None:
    scope = await _run(_scope("127.0.0.1", (b"x-forwarded-proto", b"gopher")), ["127.0.0.1"])
    assert scope["client"] == ("127.0.0.1", 5555)
    assert scope["scheme"] == "http"


def test_no_trusted_proxies_means_no_wrapper() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    assert trust_proxies(app, []) is app
