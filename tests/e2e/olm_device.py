"""A Matrix end-to-end encryption device for tests, backed by a real vodozemac Olm account.

Everything the device publishes is built and signed as the spec says:

* device keys (`/keys/upload` `device_keys`): `user_id`, `device_id`, `algorithms`,
  `keys` {`ed25519:<device>`, `curve25519:<device>`}, signed with the device's Ed25519 key
  per the appendix "Signing JSON" (canonical JSON without `signatures` and `unsigned`);
* `signed_curve25519` one-time keys: `{"key": ..., "signatures": ...}`;
* fallback keys: the same, plus `"fallback": true` (inside the signed object).

It also speaks Olm (`m.olm.v1.curve25519-aes-sha2` to-device messages) and Megolm
(`m.megolm.v1.aes-sha2` room events) well enough for a round trip.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import vodozemac
from canonicaljson import encode_canonical_json

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"
SIGNED_CURVE25519 = "signed_curve25519"


def b64encode(data: bytes) -> str:
    """Unpadded base64 (spec appendix "Unpadded Base64")."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def signable_bytes(obj: dict[str, Any]) -> bytes:
    """The bytes covered by a signature: canonical JSON without `signatures` and `unsigned`."""
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def verify_signed_json(obj: dict[str, Any], user_id: str, key_id: str, ed25519_key: str) -> bool:
    """Does `obj` carry a valid signature by `user_id` with `key_id` (e.g. `ed25519:DEV`)?"""
    signature = obj.get("signatures", {}).get(user_id, {}).get(key_id)
    if not isinstance(signature, str):
        return False
    try:
        vodozemac.Ed25519PublicKey.from_base64(ed25519_key).verify_signature(
            signable_bytes(obj), vodozemac.Ed25519Signature.from_base64(signature))
    except (vodozemac.SignatureException, vodozemac.KeyException, ValueError):
        return False
    return True


def random_curve25519_key() -> str:
    """A fresh Curve25519 public key (unpadded base64) that nobody holds an Olm account for."""
    return vodozemac.Curve25519SecretKey().public_key().to_base64()


class OlmDevice:
    """One Matrix device (`user_id`, `device_id`) with its own Olm account."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.account = vodozemac.Account()
        # Olm sessions by the peer's Curve25519 identity key (one per peer is enough here).
        self.sessions: dict[str, vodozemac.Session] = {}

    # -- identity ---------------------------------------------------------------------------

    @property
    def ed25519(self) -> str:
        return self.account.ed25519_key.to_base64()

    @property
    def curve25519(self) -> str:
        return self.account.curve25519_key.to_base64()

    @property
    def signing_key_id(self) -> str:
        return f"ed25519:{self.device_id}"

    def sign_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of `obj` with this device's signature added under `signatures`."""
        signed = copy.deepcopy(obj)
        signature = self.account.sign(signable_bytes(signed)).to_base64()
        signed.setdefault("signatures", {}).setdefault(self.user_id, {})[
            self.signing_key_id] = signature
        return signed

    def device_keys(self) -> dict[str, Any]:
        """The signed `device_keys` object for `/keys/upload`."""
        return self.sign_json({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                f"curve25519:{self.device_id}": self.curve25519,
                f"ed25519:{self.device_id}": self.ed25519,
            },
        })

    def signed_key(self, key: str, *, fallback: bool = False) -> dict[str, Any]:
        """A signed `signed_curve25519` key object for the public Curve25519 `key`."""
        obj: dict[str, Any] = {"key": key}
        if fallback:
            obj["fallback"] = True
        return self.sign_json(obj)

    # -- one-time and fallback keys -----------------------------------------------------------

    def generate_one_time_keys(self, count: int) -> dict[str, dict[str, Any]]:
        """Generate `count` new one-time keys; return them as `/keys/upload` `one_time_keys`.

        The keys are marked published at once (the tests upload whatever this returns).
        """
        self.account.generate_one_time_keys(count)
        keys = {f"{SIGNED_CURVE25519}:{key_id}": self.signed_key(key.to_base64())
                for key_id, key in self.account.one_time_keys.items()}
        self.account.mark_keys_as_published()
        return keys

    def generate_fallback_key(self) -> dict[str, dict[str, Any]]:
        """Generate a new fallback key; return it as `/keys/upload` `fallback_keys`.

        vodozemac 0.10's type stubs omit `generate_fallback_key` and `fallback_key`,
        though the compiled module has both.
        """
        account: Any = self.account
        account.generate_fallback_key()
        unpublished: dict[str, vodozemac.Curve25519PublicKey] = account.fallback_key
        keys = {f"{SIGNED_CURVE25519}:{key_id}": self.signed_key(key.to_base64(), fallback=True)
                for key_id, key in unpublished.items()}
        self.account.mark_keys_as_published()
        return keys

    def upload_body(self, *, one_time_keys: int = 0, fallback: bool = False,
                    device_keys: bool = True) -> dict[str, Any]:
        """A `/keys/upload` body with device keys, `one_time_keys` new OTKs and a fallback key."""
        body: dict[str, Any] = {}
        if device_keys:
            body["device_keys"] = self.device_keys()
        if one_time_keys:
            body["one_time_keys"] = self.generate_one_time_keys(one_time_keys)
        if fallback:
            body["fallback_keys"] = self.generate_fallback_key()
        return body

    # -- Olm ----------------------------------------------------------------------------------

    def olm_encrypt(self, recipient: dict[str, Any], event_type: str, content: dict[str, Any],
                    one_time_key: str | None = None) -> dict[str, Any]:
        """Olm-encrypt an event for `recipient` (its queried device keys); return the
        `m.room.encrypted` to-device content.

        A new outbound session is created from `one_time_key` (a claimed key object's `key`)
        when there is no session with that device yet.
        """
        recipient_user = recipient["user_id"]
        recipient_device = recipient["device_id"]
        their_curve = recipient["keys"][f"curve25519:{recipient_device}"]
        session = self.sessions.get(their_curve)
        if session is None:
            assert one_time_key is not None, "no Olm session yet: a claimed one-time key is needed"
            session = self.account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(their_curve),
                vodozemac.Curve25519PublicKey.from_base64(one_time_key))
            self.sessions[their_curve] = session
        plaintext = {
            "type": event_type,
            "content": content,
            "sender": self.user_id,
            "recipient": recipient_user,
            "recipient_keys": {"ed25519": recipient["keys"][f"ed25519:{recipient_device}"]},
            "keys": {"ed25519": self.ed25519},
            "sender_device_keys": self.device_keys(),
        }
        message_type, ciphertext = session.encrypt(json.dumps(plaintext).encode()).to_parts()
        return {
            "algorithm": OLM,
            "sender_key": self.curve25519,
            "ciphertext": {their_curve: {"type": message_type, "body": b64encode(ciphertext)}},
        }

    def olm_decrypt(self, event: dict[str, Any]) -> dict[str, Any]:
        """Decrypt an Olm `m.room.encrypted` to-device event addressed to this device and apply
        the spec's "Validation of incoming decrypted events" checks; return the plaintext."""
        content = event["content"]
        assert content["algorithm"] == OLM, content
        sender_key: str = content["sender_key"]
        ours = content["ciphertext"][self.curve25519]
        message = vodozemac.AnyOlmMessage.from_parts(ours["type"], b64decode(ours["body"]))
        session = self.sessions.get(sender_key)
        if session is None:
            assert ours["type"] == 0, "only a pre-key message can start a session"
            pre_key = message.to_pre_key()
            assert pre_key is not None
            session, raw = self.account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key)
            self.sessions[sender_key] = session
        else:
            raw = session.decrypt(message)
        plaintext: dict[str, Any] = json.loads(raw)
        # Validation of incoming decrypted events (spec, m.olm.v1.curve25519-aes-sha2).
        assert plaintext["sender"] == event["sender"]
        assert plaintext["recipient"] == self.user_id
        assert plaintext["recipient_keys"] == {"ed25519": self.ed25519}
        sender_device_keys = plaintext.get("sender_device_keys")
        if sender_device_keys is not None:
            device = sender_device_keys["device_id"]
            assert sender_device_keys["user_id"] == event["sender"]
            assert sender_device_keys["keys"][f"curve25519:{device}"] == sender_key
            assert sender_device_keys["keys"][f"ed25519:{device}"] == plaintext["keys"]["ed25519"]
            assert verify_signed_json(sender_device_keys, event["sender"], f"ed25519:{device}",
                                      plaintext["keys"]["ed25519"])
        return plaintext


class MegolmOutbound:
    """An outbound Megolm session for one room, owned by `device`."""

    def __init__(self, device: OlmDevice, room_id: str) -> None:
        self.device = device
        self.room_id = room_id
        self.session = vodozemac.GroupSession()

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def room_key_content(self) -> dict[str, Any]:
        """The `m.room_key` content that shares this session (sent over Olm)."""
        return {
            "algorithm": MEGOLM,
            "room_id": self.room_id,
            "session_id": self.session.session_id,
            "session_key": self.session.session_key.to_base64(),
        }

    def encrypt(self, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """The `m.room.encrypted` content for a room event (spec `m.megolm.v1.aes-sha2`)."""
        plaintext = {"type": event_type, "content": content, "room_id": self.room_id}
        message = self.session.encrypt(json.dumps(plaintext).encode())
        return {
            "algorithm": MEGOLM,
            "sender_key": self.device.curve25519,
            "device_id": self.device.device_id,
            "session_id": self.session.session_id,
            "ciphertext": message.to_base64(),
        }


class MegolmInbound:
    """An inbound Megolm session created from a received `m.room_key`."""

    def __init__(self, room_key: dict[str, Any]) -> None:
        assert room_key["algorithm"] == MEGOLM
        self.room_id: str = room_key["room_id"]
        self.session = vodozemac.InboundGroupSession(
            vodozemac.SessionKey(room_key["session_key"]))
        assert self.session.session_id == room_key["session_id"]

    def decrypt(self, event: dict[str, Any], room_id: str) -> dict[str, Any]:
        """Decrypt an `m.room.encrypted` room event; check the room ID inside matches."""
        content = event["content"]
        assert content["algorithm"] == MEGOLM
        assert content["session_id"] == self.session.session_id
        decrypted = self.session.decrypt(vodozemac.MegolmMessage.from_base64(content["ciphertext"]))
        plaintext: dict[str, Any] = json.loads(decrypted.plaintext)
        assert plaintext["room_id"] == room_id == self.room_id
        return plaintext
