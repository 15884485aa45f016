"""Our /_matrix/key/v2/server body, and the checks on another server's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.federation.conftest import DAY, NOW
from trioserver.services.events.hashing import unpadded_b64
from trioserver.services.events.signing import SigningKey, sign_json, verify_json_signature
from trioserver.services.federation.errors import KeyResponseError
from trioserver.services.federation.key_response import parse_key_response
from trioserver.services.federation.keys import OldVerifyKey, server_key_response

NAME = "example.org"


def test_response_is_self_signed_and_lists_old_keys() -> None:
    key = SigningKey.generate()
    old = SigningKey.generate()
    body = server_key_response(NAME, key, [OldVerifyKey(old.key_id, old.verify_key_bytes, NOW)],
                               NOW + 7 * DAY)
    assert body["server_name"] == NAME
    assert body["verify_keys"] == {key.key_id: {"key": key.public_key_b64}}
    assert body["old_verify_keys"] == {old.key_id: {"key": old.public_key_b64, "expired_ts": NOW}}
    assert body["valid_until_ts"] == NOW + 7 * DAY
    assert list(body["signatures"]) == [NAME]
    assert verify_json_signature(body, NAME, key.key_id, key.verify_key_bytes)
    parsed = parse_key_response(body, NAME, now_ms=NOW)
    assert parsed.keys[key.key_id].key == key.verify_key_bytes
    assert parsed.keys[key.key_id].expired_ts is None
    assert parsed.keys[old.key_id].valid_until_ts == NOW
    assert parsed.keys[old.key_id].expired_ts == NOW


def test_validity_is_capped_at_seven_days() -> None:
    key = SigningKey.generate()
    body = server_key_response(NAME, key, [], NOW + 365 * DAY)
    parsed = parse_key_response(body, NAME, now_ms=NOW)
    assert parsed.keys[key.key_id].valid_until_ts == NOW + 7 * DAY
    assert parsed.valid_until_ts == NOW + 7 * DAY
    short = parse_key_response(server_key_response(NAME, key, [], NOW + 5), NAME, now_ms=NOW)
    assert short.keys[key.key_id].valid_until_ts == NOW + 5


def _resigned(body: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    unsigned = {k: v for k, v in body.items() if k != "signatures"}
    return sign_json(unsigned, NAME, key)


def _cases() -> list[tuple[str, Any]]:
    key = SigningKey.generate()
    other = SigningKey.generate()
    good = server_key_response(NAME, key, [], NOW + DAY)
    cases: list[tuple[str, Any]] = [("not a JSON object", [good])]
    wrong_name = _resigned({**good, "server_name": "evil.org"}, key)
    cases.append(("for 'evil.org'", wrong_name))
    unsigned = {k: v for k, v in good.items() if k != "signatures"}
    cases.append(("not signed", unsigned))
    cases.append(("not signed", sign_json(unsigned, NAME, other)))  # by a key it does not list
    tampered = copy.deepcopy(good)
    tampered["valid_until_ts"] += 1
    cases.append(("bad signature", tampered))
    # One good and one bad self-signature: refused whole.
    two_keys = {**unsigned, "verify_keys": {key.key_id: {"key": key.public_key_b64},
                                            other.key_id: {"key": other.public_key_b64}}}
    half = sign_json(two_keys, NAME, key)
    half["signatures"][NAME][other.key_id] = half["signatures"][NAME][key.key_id]
    cases.append(("bad signature", half))
    cases.append(("integer", _resigned({**good, "valid_until_ts": "soon"}, key)))
    cases.append(("no ed25519", _resigned({**good, "verify_keys": {}}, key)))
    short = {key.key_id: {"key": unpadded_b64(b"short")}}
    cases.append(("not an ed25519", {**good, "verify_keys": short}))
    old_bad = {**unsigned, "old_verify_keys": {"ed25519:old": {"key": key.public_key_b64}}}
    cases.append(("expired_ts", sign_json(old_bad, NAME, key)))
    return cases


@pytest.mark.parametrize(("message", "body"), _cases())
def test_bad_responses_are_refused(message: str, body: Any) -> None:
    with pytest.raises(KeyResponseError, match=message):
        parse_key_response(body, NAME, now_ms=NOW)


def test_unknown_algorithms_are_ignored() -> None:
    key = SigningKey.generate()
    body = server_key_response(NAME, key, [], NOW + DAY)
    body = _resigned({**body, "verify_keys": {**body["verify_keys"],
                                               "curve9:x": {"key": "whatever"}}}, key)
    assert set(parse_key_response(body, NAME, now_ms=NOW).keys) == {key.key_id}
