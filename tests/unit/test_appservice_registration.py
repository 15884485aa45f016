"""Registration files: parsing, validation errors naming file and field, namespaces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from trioserver.services.appservice.registration import (
    RegistrationError,
    load_registration_file,
    load_registrations,
    parse_registration,
)
from trioserver.services.appservice.registry import AppServices

VALID = """\
id: irc
url: "http://127.0.0.1:9000/"
as_token: as_secret
hs_token: hs_secret
sender_localpart: _irc_bot
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_.*:example.org"
  aliases:
    - exclusive: false
      regex: "#_irc_.*:example.org"
  rooms: []
rate_limited: false
protocols: ["irc"]
de.sorunome.msc2409.push_ephemeral: true
"""


def _write(tmp_path: Path, text: str, name: str = "reg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "bridge", "url": None, "as_token": "a", "hs_token": "h",
        "sender_localpart": "bridge", "namespaces": {"users": [], "aliases": [], "rooms": []},
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def test_valid_file(tmp_path: Path) -> None:
    reg = load_registration_file(_write(tmp_path, VALID))
    assert reg.id == "irc"
    assert reg.url == "http://127.0.0.1:9000"
    assert reg.sender("example.org") == "@_irc_bot:example.org"
    assert reg.rate_limited is False
    assert reg.receive_ephemeral is True
    assert reg.protocols == ("irc",)
    assert reg.users[0].exclusive
    assert not reg.aliases[0].exclusive


def test_url_may_be_null_and_namespaces_empty() -> None:
    reg = parse_registration(_data(namespaces={}))
    assert reg.url is None
    assert reg.users == ()
    assert reg.rate_limited is True


@pytest.mark.parametrize(("changes", "problem"), [
    ({"url": ...}, "url: required"),  # null is explicit; missing is a mistake (spec, Synapse)
    ({"namespaces": ...}, "namespaces: required"),
    ({"namespaces": None}, "namespaces: required"),
    ({"id": "irc|bridge"}, "id: must not contain '|'"),
])
def test_required_fields_as_synapse(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(RegistrationError, match=re.escape(problem)):
        parse_registration(_data(**changes))


def test_receive_ephemeral_stable_key() -> None:
    assert parse_registration(_data(receive_ephemeral=True)).receive_ephemeral


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": ...}, "id"),
    ({"as_token": 5}, "as_token"),
    ({"hs_token": ""}, "hs_token"),
    ({"hs_token": "a"}, "hs_token"),
    ({"sender_localpart": "Not Valid"}, "sender_localpart"),
    ({"url": "ftp://x"}, "url"),
    ({"rate_limited": "yes"}, "rate_limited"),
    ({"protocols": "irc"}, "protocols"),
    ({"namespaces": {"users": [{"regex": "@a.*"}]}}, "namespaces.users[0].exclusive"),
    ({"namespaces": {"users": [{"exclusive": True, "regex": "("}]}}, "namespaces.users[0].regex"),
    ({"namespaces": {"rooms": "x"}}, "namespaces.rooms"),
])
def test_invalid_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RegistrationError) as info:
        parse_registration(_data(**changes), "bridge.yaml")
    assert str(info.value).startswith(f"bridge.yaml: {field}:")


def test_bad_yaml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = _write(tmp_path, "id: [unclosed\n")
    with pytest.raises(RegistrationError, match=str(bad)):
        load_registration_file(bad)
    with pytest.raises(RegistrationError, match="cannot read"):
        load_registration_file(tmp_path / "missing.yaml")
    with pytest.raises(RegistrationError, match="top level"):
        load_registration_file(_write(tmp_path, "- a\n", "list.yaml"))


def test_duplicate_ids_and_tokens_refused(tmp_path: Path) -> None:
    first = _write(tmp_path, VALID, "a.yaml")
    same_id = _write(tmp_path, VALID.replace("as_secret", "x").replace("hs_secret", "y")
                     .replace("_irc_bot", "other"), "b.yaml")
    with pytest.raises(RegistrationError, match="id: already used"):
        load_registrations([first, same_id])
    same_token = _write(tmp_path, VALID.replace("id: irc", "id: two")
                        .replace("hs_secret", "y").replace("_irc_bot", "other"), "c.yaml")
    with pytest.raises(RegistrationError, match="as_token: already used"):
        load_registrations([first, same_token])


def test_regexes_are_anchored_at_the_start_like_synapse() -> None:
    ns = {"users": [{"exclusive": True, "regex": "@_irc_.*:example.org"},
                    {"exclusive": True, "regex": "@telegram_[0-9]+"},
                    {"exclusive": True, "regex": "^@slack_.*:example\\.org$"}]}
    reg = parse_registration(_data(namespaces=ns))
    assert reg.is_interested_in_user("@_irc_bob:example.org", "example.org")
    assert not reg.is_interested_in_user("@x_irc_bob:example.org", "example.org")
    # A prefix regex without the server part claims the full user ID (as in Synapse).
    assert reg.is_interested_in_user("@telegram_42:example.org", "example.org")
    assert not reg.is_interested_in_user("@telegram_x:example.org", "example.org")
    # An explicitly anchored one is exact.
    assert reg.is_interested_in_user("@slack_a:example.org", "example.org")
    assert not reg.is_interested_in_user("@slack_a:example.org.evil", "example.org")
    assert reg.is_interested_in_user("@bridge:example.org", "example.org")  # the sender


def test_exclusivity_across_appservices() -> None:
    exclusive = parse_registration(_data(id="a", as_token="a1", hs_token="h1", namespaces={
        "users": [{"exclusive": True, "regex": "@a_.*:hs"}],
        "aliases": [{"exclusive": True, "regex": "#a_.*:hs"}]}))
    shared = parse_registration(_data(id="b", as_token="b1", hs_token="h2", sender_localpart="b",
                                      namespaces={"users": [{"exclusive": False,
                                                             "regex": "@b_.*:hs"}]}))
    services = AppServices("hs", [exclusive, shared])
    assert services.by_token("a1") is exclusive
    assert services.by_token("zz") is None
    assert services.by_id("b") is shared
    assert [r.id for r in services.all()] == ["a", "b"]
    assert services.is_exclusive_user("@a_x:hs")
    assert not services.is_exclusive_user("@a_x:hs", except_for=exclusive)
    assert not services.is_exclusive_user("@b_x:hs")
    assert services.interested_in_user("@b_x:hs") == [shared]
    assert services.interested_in_room_alias("#a_room:hs") == [exclusive]
    assert services.is_exclusive_alias("#a_room:hs")
    assert not services.is_exclusive_alias("#other:hs")
