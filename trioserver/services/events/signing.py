"""The server's signing key, signed JSON and signed events.

Spec: appendices "Signing JSON" / "Checking for a Signature"; Server-Server API "Signing
events" and "Validating hashes and signatures on received events".

The key file holds one line, "ed25519 <version> <unpadded base64 seed>": the format
admins know from other homeservers, so a key can be moved between implementations.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from trioserver.services.events import canonical_json
from trioserver.services.events.hashing import add_content_hash, decode_unpadded_b64, unpadded_b64
from trioserver.services.events.redaction import redact
from trioserver.services.events.room_versions import RoomVersion

log = logging.getLogger(__name__)

ALGORITHM = "ed25519"
SEED_BYTES = 32
# "The version must have characters matching the regular expression [a-zA-Z0-9_]".
_VERSION_RE = re.compile(r"[A-Za-z0-9_]+")
# 32 bytes are 43 unpadded base64 characters (44 with the one "=" of padding).
_SEED_RE = re.compile(r"[A-Za-z0-9+/]{43}=?")
_VERSION_ALPHABET = string.ascii_letters + string.digits
_VERSION_LENGTH = 8


class SigningKeyError(Exception):
    """The signing key file cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class SigningKey:
    """An ed25519 signing key and its key ID ("ed25519:<version>")."""

    key_id: str
    nacl_key: nacl.signing.SigningKey = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: bytes, version: str) -> SigningKey:
        if not _VERSION_RE.fullmatch(version):
            raise ValueError(f"key version {version!r} must match [a-zA-Z0-9_]+")
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an ed25519 seed is {SEED_BYTES} bytes, not {len(seed)}")
        return cls(key_id=f"{ALGORITHM}:{version}", nacl_key=nacl.signing.SigningKey(seed))

    @classmethod
    def generate(cls) -> SigningKey:
        version = "".join(secrets.choice(_VERSION_ALPHABET) for _ in range(_VERSION_LENGTH))
        return cls.from_seed(secrets.token_bytes(SEED_BYTES), version)

    @property
    def version(self) -> str:
        return self.key_id.partition(":")[2]

    @property
    def verify_key_bytes(self) -> bytes:
        return bytes(self.nacl_key.verify_key)

    @property
    def public_key_b64(self) -> str:
        """The public key as published in /_matrix/key/v2/server (unpadded base64)."""
        return unpadded_b64(self.verify_key_bytes)

    def sign(self, message: bytes) -> bytes:
        return self.nacl_key.sign(message).signature

    def to_key_file_line(self) -> str:
        return f"{ALGORITHM} {self.version} {unpadded_b64(bytes(self.nacl_key))}\n"


# Key file


def parse_key_file_line(text: str) -> SigningKey:
    """Parse "ed25519 <version> <seed>"; ValueError says what is wrong."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected exactly one key line, found {len(lines)}")
    parts = lines[0].split()
    if len(parts) != 3:
        raise ValueError('expected "ed25519 <version> <unpadded base64 seed>"')
    algorithm, version, seed_b64 = parts
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported algorithm {algorithm!r} (only {ALGORITHM})")
    if not _VERSION_RE.fullmatch(version):
        raise ValueError(f"key version {version!r} must match [a-zA-Z0-9_]+")
    if not _SEED_RE.fullmatch(seed_b64):
        raise ValueError(f"the seed must be {SEED_BYTES} bytes of unpadded base64")
    try:
        seed = base64.b64decode(seed_b64.rstrip("=") + "=", validate=True)
    except binascii.Error:
        raise ValueError("the seed is not valid base64") from None
    return SigningKey.from_seed(seed, version)


def load_or_create_signing_key(path: Path) -> SigningKey:
    """Read the server's signing key from `path`, generating it on first start.

    Blocking (file I/O): call at start-up. Raises SigningKeyError if the file exists but is
    malformed, is not a regular file, or can be accessed by group or others.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return _create_key_file(path)
    except OSError as e:
        raise SigningKeyError(f"cannot read signing key {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SigningKeyError(f"signing key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SigningKeyError(
            f"signing key {path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SigningKeyError(f"cannot read signing key {path}: {e}") from None
    try:
        return parse_key_file_line(text)
    except ValueError as e:
        raise SigningKeyError(f"signing key {path} is malformed: {e}") from None


def _create_key_file(path: Path) -> SigningKey:
    key = SigningKey.generate()
    data = key.to_key_file_line().encode("ascii")
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_directory(directory)
    except OSError as e:
        raise SigningKeyError(f"cannot write signing key {path}: {e}") from None
    log.info("generated signing key %s in %s", key.key_id, path)
    return key


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Signed JSON


def _signing_bytes(obj: dict[str, Any]) -> bytes:
    """Canonical JSON of `obj` without `signatures` and `unsigned` (what is signed)."""
    return canonical_json.encode(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )


def sign_json(obj: dict[str, Any], server_name: str, key: SigningKey) -> dict[str, Any]:
    """A copy of `obj` with signatures[server_name][key.key_id] added.

    Other signatures (of this server under other key IDs, and of other servers) are kept;
    `unsigned` is carried over untouched. `obj` itself is not modified.
    """
    existing = obj.get("signatures", {})
    if not isinstance(existing, dict) or not all(isinstance(v, dict) for v in existing.values()):
        raise ValueError("signatures must be an object of objects")
    signature = unpadded_b64(key.sign(_signing_bytes(obj)))
    signatures = {name: dict(sigs) for name, sigs in existing.items()}
    signatures.setdefault(server_name, {})[key.key_id] = signature
    out = dict(obj)
    out["signatures"] = signatures
    return out


def verify_json_signature(
    obj: dict[str, Any], server_name: str, key_id: str, verify_key_bytes: bytes
) -> bool:
    """Whether `obj` carries a valid signature by `server_name` under `key_id`.

    False (never an exception) for a missing or undecodable signature, an algorithm other
    than ed25519, a malformed verify key, or a signature that does not match.
    """
    signatures = obj.get("signatures")
    if not isinstance(signatures, dict):
        return False
    entry = signatures.get(server_name)
    if not isinstance(entry, dict):
        return False
    signature_b64 = entry.get(key_id)
    if not isinstance(signature_b64, str) or key_id.partition(":")[0] != ALGORITHM:
        return False
    try:
        signature = decode_unpadded_b64(signature_b64)
        verify_key = nacl.signing.VerifyKey(verify_key_bytes)
        message = _signing_bytes(obj)
    except (ValueError, TypeError):
        return False
    if len(signature) != 64:
        return False
    try:
        verify_key.verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


# Signed events


def hash_and_sign_event(
    pdu: dict[str, Any], server_name: str, key: SigningKey, room_version: RoomVersion
) -> dict[str, Any]:
    """A copy of `pdu` with its content hash and this server's signature.

    The signature covers the redacted event (so it survives redaction); the content hash
    covers everything but `unsigned`, `signatures` and `hashes`. Existing signatures are
    kept. In room versions with strict canonical JSON, a PDU with floats or out-of-range
    integers raises canonical_json.InvalidCanonicalJson rather than being signed.
    """
    if room_version.strict_canonical_json:
        canonical_json.check_strict({k: v for k, v in pdu.items() if k != "unsigned"})
    out = dict(pdu)
    add_content_hash(out)
    signed = sign_json(redact(out, room_version), server_name, key)
    out["signatures"] = signed["signatures"]
    return out


def verify_event_signature(
    pdu: dict[str, Any],
    server_name: str,
    key_id: str,
    verify_key_bytes: bytes,
    room_version: RoomVersion,
) -> bool:
    """Whether `server_name` signed `pdu` (full or redacted) with `key_id`.

    Checks the signature only: the content hash is hashing.check_content_hash.
    """
    return verify_json_signature(
        redact(pdu, room_version), server_name, key_id, verify_key_bytes
    )
