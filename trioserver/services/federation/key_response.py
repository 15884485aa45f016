"""The /_matrix/key/v2/server response: building ours, checking another server's.

Spec: Server-Server API, "Publishing Keys" (schema `definitions/keys.yaml`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

from trioserver.services.events.hashing import decode_unpadded_b64, unpadded_b64
from trioserver.services.events.signing import (
    ALGORITHM,
    SigningKey,
    sign_json,
    verify_json_signature,
)
from trioserver.services.federation.errors import KeyResponseError

# "Servers MUST use the lesser of this field and 7 days into the future when determining if a
# key is valid."
MAX_VALIDITY_MS = 7 * 24 * 3600 * 1000
ED25519_KEY_BYTES = 32


@dataclass(frozen=True)
class OldVerifyKey:
    """One of this server's retired keys: published in old_verify_keys."""

    key_id: str
    key: bytes
    expired_ts: int


@dataclass(frozen=True)
class VerifyKey:
    """Another server's public key and until when signatures by it count."""

    key: bytes
    valid_until_ts: int
    # Set when the server lists the key in old_verify_keys (then valid_until_ts equals it).
    expired_ts: int | None = None


@dataclass(frozen=True)
class ServerKeyResponse:
    """A checked key response: its keys, its validity (capped at 7 days after it was fetched)
    and the object as received."""

    server_name: str
    keys: dict[str, VerifyKey]
    valid_until_ts: int
    fetched_ts: int
    raw: dict[str, Any]


def server_key_response(
    server_name: str,
    signing_key: SigningKey,
    old_keys: Iterable[OldVerifyKey],
    valid_until_ts: int,
) -> dict[str, Any]:
    """The signed body of our GET /_matrix/key/v2/server."""
    body = {
        "server_name": server_name,
        "verify_keys": {signing_key.key_id: {"key": signing_key.public_key_b64}},
        "old_verify_keys": {
            k.key_id: {"key": unpadded_b64(k.key), "expired_ts": k.expired_ts}
            for k in old_keys if k.key_id != signing_key.key_id
        },
        "valid_until_ts": valid_until_ts,
    }
    return sign_json(body, server_name, signing_key)


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_key(key_id: str, entry: Any) -> bytes:
    key = entry.get("key") if isinstance(entry, dict) else None
    if not isinstance(key, str):
        raise KeyResponseError(f"key {key_id} has no 'key'")
    try:
        raw = decode_unpadded_b64(key)
    except ValueError:
        raise KeyResponseError(f"key {key_id} is not valid base64") from None
    if len(raw) != ED25519_KEY_BYTES:
        raise KeyResponseError(f"key {key_id} is not an ed25519 public key")
    return raw


def _ed25519_entries(value: Any, field: str) -> dict[str, Any]:
    """The ed25519 entries of verify_keys / old_verify_keys (other algorithms are skipped)."""
    if value is None and field == "old_verify_keys":
        return {}
    if not isinstance(value, dict):
        raise KeyResponseError(f"'{field}' must be an object")
    return {k: v for k, v in value.items()
            if isinstance(k, str) and k.partition(":")[0] == ALGORITHM and k.partition(":")[2]}


def parse_key_response(obj: Any, server_name: str, *, now_ms: int) -> ServerKeyResponse:
    """Check a key response of `server_name` received at `now_ms`; KeyResponseError if bad.

    It must be for `server_name`, list at least one ed25519 verify key, and be signed by
    `server_name` with at least one of those keys, every such signature valid (a response
    with one bad self-signature is refused whole).
    """
    if not isinstance(obj, dict):
        raise KeyResponseError("the key response is not a JSON object")
    if obj.get("server_name") != server_name:
        raise KeyResponseError(f"the key response is for {obj.get('server_name')!r}, "
                               f"not {server_name!r}")
    valid_until = obj.get("valid_until_ts")
    if not _int(valid_until):
        raise KeyResponseError("'valid_until_ts' must be an integer")
    current = {k: _decode_key(k, v) for k, v in
               _ed25519_entries(obj.get("verify_keys"), "verify_keys").items()}
    if not current:
        raise KeyResponseError("the key response lists no ed25519 verify key")
    signatures = obj.get("signatures")
    own = signatures.get(server_name) if isinstance(signatures, dict) else None
    signed_with = [k for k in own if k in current] if isinstance(own, dict) else []
    if not signed_with:
        raise KeyResponseError(f"the key response is not signed by {server_name}")
    for key_id in signed_with:
        if not verify_json_signature(obj, server_name, key_id, current[key_id]):
            raise KeyResponseError(f"bad signature by {server_name} with {key_id}")
    capped = min(valid_until, now_ms + MAX_VALIDITY_MS)
    keys = {k: VerifyKey(v, capped) for k, v in current.items()}
    for key_id, entry in _ed25519_entries(obj.get("old_verify_keys"), "old_verify_keys").items():
        if key_id in keys:
            continue
        expired = entry.get("expired_ts") if isinstance(entry, dict) else None
        if not _int(expired):
            raise KeyResponseError(f"old key {key_id} has no integer 'expired_ts'")
        keys[key_id] = VerifyKey(_decode_key(key_id, entry), expired, expired)
    return ServerKeyResponse(server_name, keys, capped, now_ms, obj)
