"""Identifier grammar: server names, user IDs, localparts, device IDs."""

from __future__ import annotations

import pytest

from trioserver.identifiers import (
    MAX_USER_ID_BYTES,
    is_valid_device_id,
    is_valid_localpart,
    is_valid_server_name,
    split_user_id,
    user_id,
)


@pytest.mark.parametrize(
    "name",
    [
        "example.org",
        "example.org:8448",
        "localhost",
        "matrix-1.example.org",
        "1.2.3.4",
        "1.2.3.4:1",
        "[::1]",
        "[::1]:8448",
        "[2001:db8::8a2e:370:7334]:443",
        "example.org:65535",
        "a" * 255,
    ],
)
def test_valid_server_names(name: str) -> None:
    assert is_valid_server_name(name) is True


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a b",
        "[::1",
        "host:",
        "host:99999",
        "host:65536",
        "host:0",
        "host:-1",
        "host:80a",
        "host:+80",
        ":8448",
        "exa_mple.org",
        "example.org/path",
        "[::1]8448",
        "[not-ipv6]:80",
        "[1.2.3.4]",
        "::1",
        "a" * 256,
        "ex\u00e4mple.org",
    ],
)
def test_invalid_server_names(name: str) -> None:
    assert is_valid_server_name(name) is False


def test_bracketed_ipv6_with_empty_port_is_invalid() -> None:
    # "host:" is rejected; the bracketed form with an empty port must be too.
    assert is_valid_server_name("[::1]:") is False


@pytest.mark.parametrize("name", ["host:\uff18\uff10", "host:\u0668\u0664\u0664\u0668"])
def test_server_name_port_must_be_ascii_digits(name: str) -> None:
    # The grammar is port = 1*5DIGIT, ASCII digits only.
    assert is_valid_server_name(name) is False


def test_user_id_and_split() -> None:
    assert user_id("alice", "example.org") == "@alice:example.org"
    assert split_user_id("@alice:example.org") == ("alice", "example.org")
    assert split_user_id("@alice:example.org:8448") == ("alice", "example.org:8448")
    assert split_user_id("@bob:[::1]:8448") == ("bob", "[::1]:8448")
    # Historical localparts (upper case, most printable ASCII) are still valid IDs.
    assert split_user_id("@Alice!#$%:example.org") == ("Alice!#$%", "example.org")


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "alice:example.org",
        "@alice",
        "@:example.org",
        "@alice:",
        "@al ice:example.org",
        "@al\u00e9:example.org",
        "@alice:bad host",
        "@alice:host:99999",
        "!room:example.org",
        "#alias:example.org",
    ],
)
def test_split_user_id_rejects(uid: str) -> None:
    assert split_user_id(uid) is None


def test_split_user_id_length_limit() -> None:
    server = "example.org"
    fits = "@" + "a" * (MAX_USER_ID_BYTES - len(server) - 2) + ":" + server
    assert len(fits.encode()) == MAX_USER_ID_BYTES
    assert split_user_id(fits) is not None
    too_long = "@a" + fits[1:]
    assert split_user_id(too_long) is None


@pytest.mark.parametrize("localpart", ["alice", "a", "a.b_c=d-e/f+g", "0123", "x" * 200])
def test_valid_localparts(localpart: str) -> None:
    assert is_valid_localpart(localpart) is True


@pytest.mark.parametrize(
    "localpart", ["", "Alice", "al ice", "al:ice", "al@ice", "\u00e9", "a\n", "a#b", "a!b"]
)
def test_invalid_localparts(localpart: str) -> None:
    assert is_valid_localpart(localpart) is False


def test_device_ids() -> None:
    assert is_valid_device_id("ABCDEF")
    assert is_valid_device_id("x" * 255)
    assert not is_valid_device_id("")
    assert not is_valid_device_id("x" * 256)
    assert not is_valid_device_id("a\nb")
