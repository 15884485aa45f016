"""m.room.server_acl matching (spec: Server Access Control Lists)."""

from __future__ import annotations

import pytest

from trioserver.services.federation.acl import server_allowed

ACL = {"allow": ["*"], "deny": ["evil.example", "*.evil.example", "spam-?.net"],
       "allow_ip_literals": False}


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("good.example", True),
        ("good.example:8448", True),  # ports are ignored
        ("evil.example", False),
        ("EVIL.example", False),  # case-insensitive
        ("sub.evil.example:443", False),
        ("notevil.example", True),
        ("spam-1.net", False),
        ("spam-12.net", True),  # ? is exactly one character
        ("1.2.3.4", False),
        ("1.2.3.4:8448", False),
        ("[2001:db8::1]:8448", False),
    ],
)
def test_deny_globs_and_ip_literals(server: str, allowed: bool) -> None:
    assert server_allowed(ACL, server) is allowed


def test_allow_list_and_defaults() -> None:
    assert server_allowed(None, "anyone.example")
    assert not server_allowed({}, "anyone.example")  # no allow list: nobody
    only = {"allow": ["*.trusted.org", "trusted.org"]}
    assert server_allowed(only, "trusted.org")
    assert server_allowed(only, "a.trusted.org")
    assert not server_allowed(only, "untrusted.org")
    assert server_allowed({"allow": ["*"]}, "127.0.0.1:8448")  # IP literals allowed by default
    assert not server_allowed({"allow": ["*"], "deny": ["*"]}, "x.org")  # deny wins
