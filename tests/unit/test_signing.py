"""Signing keys, signed JSON and signed events, against the spec's cryptographic test vectors.

Vectors: appendices, "Cryptographic Test Vectors" (seed, "JSON Signing", "Event Signing").
"""

from __future__ import annotations

import base64
import copy
import os
import re
import stat
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from trioserver.services.events.canonical_json import InvalidCanonicalJson
from trioserver.services.events.hashing import check_content_hash, content_hash
from trioserver.services.events.redaction import redact
from trioserver.services.events.room_versions import ROOM_VERSIONS, RoomVersion
from trioserver.services.events.signing import (
    SigningKey,
    SigningKeyError,
    hash_and_sign_event,
    load_or_create_signing_key,
    sign_json,
    verify_event_signature,
    verify_json_signature,
)

# Appendices, "Signing Key": the seed, server name and key ID of every vector.
SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER_NAME = "domain"
KEY_ID = "ed25519:1"

ALL_VERSIONS = [ROOM_VERSIONS[str(n)] for n in range(1, 13)]
# The event signing vectors keep `origin`, so they hold for the pre-v11 redaction algorithm.
PRE_V11 = [ROOM_VERSIONS[str(n)] for n in range(1, 11)]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def spec_key() -> SigningKey:
    return SigningKey.from_seed(_b64decode(SEED_B64), "1")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


def _rv(identifier: str) -> RoomVersion:
    return ROOM_VERSIONS[identifier]


# The appendix vectors, byte for byte


def test_spec_key_id(spec_key):
    assert spec_key.key_id == KEY_ID
    assert spec_key.version == "1"
    # The public key is the one nacl derives from the seed, unpadded.
    public = bytes(nacl.signing.SigningKey(_b64decode(SEED_B64)).verify_key)
    assert spec_key.verify_key_bytes == public
    assert spec_key.public_key_b64 == base64.b64encode(public).decode().rstrip("=")
    assert "=" not in spec_key.public_key_b64


def test_spec_vector_empty_object(spec_key):
    assert sign_json({}, SERVER_NAME, spec_key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ah"
                "LwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_spec_vector_object_with_data(spec_key):
    assert sign_json({"one": 1, "two": "Two"}, SERVER_NAME, spec_key) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kY"
                "dD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


def _minimal_event() -> dict[str, Any]:
    return {
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "signatures": {},
        "hashes": {},
        "type": "X",
        "content": {},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {"age_ts": 1000000},
    }


MINIMAL_EVENT_SIGNED = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOo"
            "MszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}


def _redactable_event() -> dict[str, Any]:
    return {
        "content": {"body": "Here is the message content"},
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {"age_ts": 1000000},
    }


REDACTABLE_EVENT_SIGNED = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMG"
            "CA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}


@pytest.mark.parametrize("rv", PRE_V11, ids=lambda rv: f"v{rv.identifier}")
@pytest.mark.parametrize(
    ("make_event", "expected"),
    [(_minimal_event, MINIMAL_EVENT_SIGNED), (_redactable_event, REDACTABLE_EVENT_SIGNED)],
    ids=["minimal", "redactable"],
)
def test_spec_vector_event_signing(spec_key, rv, make_event, expected):
    event = make_event()
    before = copy.deepcopy(event)
    signed = hash_and_sign_event(event, SERVER_NAME, spec_key, rv)
    assert signed == expected
    assert event == before  # the input is not modified
    assert check_content_hash(signed)
    assert verify_event_signature(signed, SERVER_NAME, KEY_ID, spec_key.verify_key_bytes, rv)


@pytest.mark.parametrize(
    ("event", "digest"),
    [
        (_minimal_event(), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"),
        (_redactable_event(), "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"),
    ],
)
def test_spec_vector_content_hashes(event, digest):
    assert content_hash(event) == _b64decode(digest)


@pytest.mark.parametrize("identifier", ["11", "12"])
def test_v11_redaction_changes_the_event_signature(spec_key, identifier):
    """v11 drops `origin` from the redacted form, so the vector's signature differs there."""
    rv = _rv(identifier)
    signed = hash_and_sign_event(_minimal_event(), SERVER_NAME, spec_key, rv)
    assert signed["hashes"] == MINIMAL_EVENT_SIGNED["hashes"]
    assert signed["signatures"] != MINIMAL_EVENT_SIGNED["signatures"]
    assert verify_event_signature(signed, SERVER_NAME, KEY_ID, spec_key.verify_key_bytes, rv)
    # Checked under the v10 algorithm (which keeps `origin`), it does not verify.
    assert not verify_event_signature(
        signed, SERVER_NAME, KEY_ID, spec_key.verify_key_bytes, _rv("10")
    )


def test_spec_vectors_verify(spec_key):
    vk = spec_key.verify_key_bytes
    assert verify_json_signature(
        {"one": 1, "two": "Two", "signatures": {"domain": {"ed25519:1": (
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        )}}},
        SERVER_NAME, KEY_ID, vk,
    )
    # An event signature covers the redacted form: checked as plain JSON, the full event with
    # non-essential content does not verify, its redacted form does.
    assert not verify_json_signature(REDACTABLE_EVENT_SIGNED, SERVER_NAME, KEY_ID, vk)
    redacted = redact(REDACTABLE_EVENT_SIGNED, _rv("1"))
    assert redacted["content"] == {}
    assert verify_json_signature(redacted, SERVER_NAME, KEY_ID, vk)
    # The minimal event has nothing to redact: both forms verify.
    assert verify_json_signature(MINIMAL_EVENT_SIGNED, SERVER_NAME, KEY_ID, vk)


# sign_json / verify_json_signature


def test_sign_json_round_trip(other_key):
    obj = {"a": [1, 2, {"b": "ü"}], "n": None, "t": True}
    signed = sign_json(obj, "example.org", other_key)
    assert "signatures" not in obj  # the input is not modified
    assert verify_json_signature(signed, "example.org", other_key.key_id,
                                 other_key.verify_key_bytes)
    sig = signed["signatures"]["example.org"][other_key.key_id]
    assert "=" not in sig
    assert len(_b64decode(sig)) == 64


def test_sign_json_keeps_other_signatures_and_unsigned(spec_key, other_key):
    obj = {
        "one": 1,
        "two": "Two",
        "signatures": {"other.example": {"ed25519:x": "c2ln"}, "domain": {"ed25519:old": "b2xk"}},
        "unsigned": {"age_ts": 5},
    }
    before = copy.deepcopy(obj)
    signed = sign_json(obj, SERVER_NAME, spec_key)
    assert obj == before
    assert signed["unsigned"] == {"age_ts": 5}
    assert signed["signatures"] == {
        "other.example": {"ed25519:x": "c2ln"},
        "domain": {
            "ed25519:old": "b2xk",
            # Neither `unsigned` nor other signatures are covered: the vector's signature.
            "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kY"
            "dD13EIMJpvhJI+6Bw",
        },
    }
    # A second server signs on top; both verify.
    cosigned = sign_json(signed, "other.example", other_key)
    assert verify_json_signature(cosigned, SERVER_NAME, KEY_ID, spec_key.verify_key_bytes)
    assert verify_json_signature(cosigned, "other.example", other_key.key_id,
                                 other_key.verify_key_bytes)
    assert cosigned["signatures"]["other.example"]["ed25519:x"] == "c2ln"


def test_sign_json_rejects_malformed_signatures(spec_key):
    with pytest.raises(ValueError, match="signatures"):
        sign_json({"signatures": "nope"}, SERVER_NAME, spec_key)
    with pytest.raises(ValueError, match="signatures"):
        sign_json({"signatures": {"x": []}}, SERVER_NAME, spec_key)


def test_verify_json_signature_failures(spec_key, other_key):
    signed = sign_json({"one": 1, "unsigned": {"x": 1}}, SERVER_NAME, spec_key)
    vk = spec_key.verify_key_bytes
    assert verify_json_signature(signed, SERVER_NAME, KEY_ID, vk)
    # `unsigned` may change in transit.
    assert verify_json_signature({**signed, "unsigned": {"y": 2}}, SERVER_NAME, KEY_ID, vk)
    assert verify_json_signature({k: v for k, v in signed.items() if k != "unsigned"},
                                 SERVER_NAME, KEY_ID, vk)
    # Anything else may not.
    assert not verify_json_signature({**signed, "one": 2}, SERVER_NAME, KEY_ID, vk)
    assert not verify_json_signature({**signed, "new": 0}, SERVER_NAME, KEY_ID, vk)
    assert not verify_json_signature(signed, SERVER_NAME, KEY_ID, other_key.verify_key_bytes)
    assert not verify_json_signature(signed, "other.example", KEY_ID, vk)
    assert not verify_json_signature(signed, SERVER_NAME, "ed25519:2", vk)
    assert not verify_json_signature({"one": 1}, SERVER_NAME, KEY_ID, vk)
    assert not verify_json_signature(signed, SERVER_NAME, KEY_ID, vk[:31])  # malformed key
    sig = signed["signatures"][SERVER_NAME][KEY_ID]
    for bad in ("!!!not base64", sig[:-4], sig + "AAAA", 5):
        tampered = {**signed, "signatures": {SERVER_NAME: {KEY_ID: bad}}}
        assert not verify_json_signature(tampered, SERVER_NAME, KEY_ID, vk)
    # An algorithm we do not understand is never accepted, whatever the bytes.
    other_alg = {**signed, "signatures": {SERVER_NAME: {"curve25519:1": sig}}}
    assert not verify_json_signature(other_alg, SERVER_NAME, "curve25519:1", vk)
    assert not verify_json_signature({**signed, "signatures": []}, SERVER_NAME, KEY_ID, vk)
    assert not verify_json_signature({**signed, "signatures": {SERVER_NAME: "x"}},
                                     SERVER_NAME, KEY_ID, vk)


def test_verify_accepts_padded_signature(spec_key):
    signed = sign_json({"a": 1}, SERVER_NAME, spec_key)
    sig = signed["signatures"][SERVER_NAME][KEY_ID]
    padded = {**signed, "signatures": {SERVER_NAME: {KEY_ID: sig + "=" * (-len(sig) % 4)}}}
    assert verify_json_signature(padded, SERVER_NAME, KEY_ID, spec_key.verify_key_bytes)


# Events


def _message_event(rv: RoomVersion) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "content": {"msgtype": "m.text", "body": "hello"},
        "depth": 7,
        "origin_server_ts": 1700000000000,
        "prev_events": ["$prev"],
        "auth_events": ["$create", "$pl", "$member"],
        "unsigned": {"age": 12},
    }
    if rv.identifier in ("1", "2"):
        pdu["event_id"] = "$abc:example.org"
        pdu["prev_events"] = [["$prev:example.org", {"sha256": "x"}]]
        pdu["auth_events"] = [["$create:example.org", {"sha256": "y"}]]
    return pdu


def _member_event() -> dict[str, Any]:
    return {
        "type": "m.room.member",
        "state_key": "@bob:example.org",
        "room_id": "!room:example.org",
        "sender": "@bob:example.org",
        "content": {"membership": "join", "displayname": "Bob"},
        "depth": 8,
        "origin_server_ts": 1700000000001,
        "prev_events": ["$prev"],
        "auth_events": ["$create"],
    }


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_event_round_trip(other_key, rv):
    pdu = _message_event(rv)
    signed = hash_and_sign_event(pdu, "example.org", other_key, rv)
    assert "hashes" not in pdu
    assert "signatures" not in pdu
    assert set(signed) == set(pdu) | {"hashes", "signatures"}
    assert check_content_hash(signed)
    args = ("example.org", other_key.key_id, other_key.verify_key_bytes, rv)
    assert verify_event_signature(signed, *args)
    # The spec: verifying "should succeed whether we have been sent the full event or a
    # redacted copy"; the content hash then tells the two apart.
    redacted = redact(signed, rv)
    assert verify_event_signature(redacted, *args)
    assert not check_content_hash(redacted)
    assert not verify_event_signature(signed, "elsewhere.org", *args[1:])


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_tampering_non_essential_key_breaks_only_the_content_hash(other_key, rv):
    signed = hash_and_sign_event(_message_event(rv), "example.org", other_key, rv)
    args = ("example.org", other_key.key_id, other_key.verify_key_bytes, rv)
    for tampered in (
        {**signed, "content": {**signed["content"], "body": "goodbye"}},
        {**signed, "content": {}},
        {**signed, "extra_top_level": 1},
    ):
        assert verify_event_signature(tampered, *args)
        assert not check_content_hash(tampered)
    # `unsigned` is covered by neither.
    tampered = {**signed, "unsigned": {"age": 99999}}
    assert verify_event_signature(tampered, *args)
    assert check_content_hash(tampered)


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=lambda rv: f"v{rv.identifier}")
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sender", "@mallory:example.org"),
        ("type", "m.room.topic"),
        ("depth", 1),
        ("origin_server_ts", 1),
        ("room_id", "!other:example.org"),
        ("prev_events", []),
        ("state_key", "@alice:example.org"),
        ("hashes", {"sha256": "AAAA"}),
    ],
)
def test_tampering_essential_key_breaks_the_signature(other_key, rv, key, value):
    signed = hash_and_sign_event(_member_event(), "example.org", other_key, rv)
    args = ("example.org", other_key.key_id, other_key.verify_key_bytes, rv)
    assert verify_event_signature(signed, *args)
    assert not verify_event_signature({**signed, key: value}, *args)


@pytest.mark.parametrize("rv", ALL_VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_tampering_essential_content_breaks_the_signature(other_key, rv):
    signed = hash_and_sign_event(_member_event(), "example.org", other_key, rv)
    args = ("example.org", other_key.key_id, other_key.verify_key_bytes, rv)
    essential = {**signed, "content": {**signed["content"], "membership": "leave"}}
    assert not verify_event_signature(essential, *args)
    # displayname is not protected by redaction: only the content hash catches it.
    cosmetic = {**signed, "content": {**signed["content"], "displayname": "Mallory"}}
    assert verify_event_signature(cosmetic, *args)
    assert not check_content_hash(cosmetic)


def test_hash_and_sign_keeps_other_servers_signatures(spec_key, other_key):
    rv = _rv("10")
    first = hash_and_sign_event(_member_event(), "example.org", other_key, rv)
    both = hash_and_sign_event(first, SERVER_NAME, spec_key, rv)
    assert both["hashes"] == first["hashes"]
    assert both["signatures"]["example.org"] == first["signatures"]["example.org"]
    assert verify_event_signature(both, "example.org", other_key.key_id,
                                  other_key.verify_key_bytes, rv)
    assert verify_event_signature(both, SERVER_NAME, KEY_ID, spec_key.verify_key_bytes, rv)


def test_hash_and_sign_refuses_non_canonical_json_in_strict_versions(other_key):
    pdu = {**_member_event(), "content": {"membership": "join", "weight": 0.5}}
    for identifier in ("6", "10", "12"):
        with pytest.raises(InvalidCanonicalJson):
            hash_and_sign_event(pdu, "example.org", other_key, _rv(identifier))
    big = {**_member_event(), "depth": 2**53}
    with pytest.raises(InvalidCanonicalJson):
        hash_and_sign_event(big, "example.org", other_key, _rv("11"))
    # Older versions are signed as they are; `unsigned` is never checked.
    assert check_content_hash(hash_and_sign_event(pdu, "example.org", other_key, _rv("5")))
    loose_unsigned = {**_member_event(), "unsigned": {"age": 0.5}}
    hash_and_sign_event(loose_unsigned, "example.org", other_key, _rv("12"))


# The key file

KEY_LINE = re.compile(r"ed25519 ([A-Za-z0-9]{6,}) ([A-Za-z0-9+/]{43})\n")


def test_key_file_created_0600_in_the_common_format(tmp_path: Path):
    path = tmp_path / "data" / "signing.key"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    match = KEY_LINE.fullmatch(text)
    assert match is not None, text
    version, seed = match.groups()
    assert key.key_id == f"ed25519:{version}"
    assert SigningKey.from_seed(_b64decode(seed), version).public_key_b64 == key.public_key_b64
    assert os.listdir(path.parent) == ["signing.key"]  # no temp file left behind


def test_key_file_reused(tmp_path: Path):
    path = tmp_path / "signing.key"
    first = load_or_create_signing_key(path)
    text = path.read_text()
    second = load_or_create_signing_key(path)
    assert second.key_id == first.key_id
    assert second.public_key_b64 == first.public_key_b64
    assert path.read_text() == text
    # And it signs what the first one verifies.
    signed = sign_json({"x": 1}, "example.org", second)
    assert verify_json_signature(signed, "example.org", first.key_id, first.verify_key_bytes)


def test_key_files_differ(tmp_path: Path):
    a = load_or_create_signing_key(tmp_path / "a.key")
    b = load_or_create_signing_key(tmp_path / "b.key")
    assert a.public_key_b64 != b.public_key_b64
    assert a.key_id != b.key_id


@pytest.mark.parametrize("padding", ["", "="])
def test_key_file_written_by_admin_is_read(tmp_path: Path, padding: str):
    """A key file in the common format (here the spec's test seed) is taken as it is."""
    path = tmp_path / "signing.key"
    path.write_text(f"ed25519 1 {SEED_B64}{padding}\n")
    path.chmod(0o600)
    key = load_or_create_signing_key(path)
    assert key.key_id == KEY_ID
    assert sign_json({}, SERVER_NAME, key)["signatures"][SERVER_NAME][KEY_ID].startswith("K8280")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "exactly one key line"),
        ("\n\n", "exactly one key line"),
        (f"ed25519 1 {SEED_B64}\ned25519 2 {SEED_B64}\n", "exactly one key line"),
        (f"ed25519 {SEED_B64}\n", "expected"),
        (f"ed25519 1 {SEED_B64} extra\n", "expected"),
        (f"curve25519 1 {SEED_B64}\n", "unsupported algorithm"),
        (f"ed25519 a-b {SEED_B64}\n", "key version"),
        ("ed25519 1 c2hvcnQ\n", "32 bytes"),
        (f"ed25519 1 {SEED_B64[:-1]}!\n", "32 bytes"),
        (f"ed25519 1 {SEED_B64}A\n", "32 bytes"),
        ("garbage\n", "expected"),
    ],
)
def test_malformed_key_file_refused(tmp_path: Path, content: str, reason: str):
    path = tmp_path / "signing.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match=reason) as info:
        load_or_create_signing_key(path)
    assert str(path) in str(info.value)
    assert "malformed" in str(info.value)
    assert path.read_text() == content  # never overwritten


def test_non_utf8_key_file_refused(tmp_path: Path):
    path = tmp_path / "signing.key"
    path.write_bytes(b"ed25519 1 \xff\xfe\n")
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match=r"cannot read signing key .*signing\.key"):
        load_or_create_signing_key(path)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o660, 0o620])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int):
    path = tmp_path / "signing.key"
    load_or_create_signing_key(path)
    path.chmod(mode)
    with pytest.raises(SigningKeyError, match=r"chmod 600") as info:
        load_or_create_signing_key(path)
    assert f"{mode:04o}" in str(info.value)


def test_key_path_that_is_a_directory_refused(tmp_path: Path):
    path = tmp_path / "signing.key"
    path.mkdir()
    with pytest.raises(SigningKeyError, match="not a regular file"):
        load_or_create_signing_key(path)


def test_generated_key_versions_are_valid():
    for _ in range(20):
        key = SigningKey.generate()
        alg, _, version = key.key_id.partition(":")
        assert alg == "ed25519"
        assert re.fullmatch(r"[A-Za-z0-9]{6,}", version)


def test_signing_key_repr_hides_the_seed(spec_key):
    assert bytes(spec_key.nacl_key) == _b64decode(SEED_B64)
    # (The spec's seed string has non-zero trailing bits: its canonical form ends in "A0".)
    seed_b64 = base64.b64encode(bytes(spec_key.nacl_key)).decode().rstrip("=")
    assert seed_b64 not in repr(spec_key)
    assert "nacl" not in repr(spec_key)


def test_from_seed_validates():
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey.from_seed(b"short", "1")
    with pytest.raises(ValueError, match="version"):
        SigningKey.from_seed(bytes(32), "bad:version")
