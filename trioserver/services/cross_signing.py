"""Cross-signing (spec "Cross-signing"): upload of the master, self-signing and user-signing
keys, and of signatures made with them (or by devices on the master key).

Signatures uploaded through /keys/signatures/upload are stored apart from the signed objects
and merged in by /keys/query; a signature by another user's user-signing key on a master key is
shown only to that user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apsw

from trioserver.errors import Codes, MatrixError
from trioserver.services.accounts import Accounts
from trioserver.services.e2ee import E2EEKeys, cross_signing_public_key, verify_signed
from trioserver.services.events.hashing import decode_unpadded_b64
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import e2ee_keys as keys_repo

INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
KEY_TYPES = {"master_key": "master", "self_signing_key": "self_signing",
             "user_signing_key": "user_signing"}
MAX_SIGNED_OBJECTS = 1000


def _bad(message: str, errcode: str = Codes.BAD_JSON) -> MatrixError:
    return MatrixError(400, errcode, message)


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a signature covers: the object without `signatures` and `unsigned`."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _failure(errcode: str, error: str) -> dict[str, str]:
    return {"errcode": errcode, "error": error}


class CrossSigning:
    def __init__(self, db: Database, e2ee: E2EEKeys, accounts: Accounts) -> None:
        self._db = db
        self._e2ee = e2ee
        self._accounts = accounts

    # -- device_signing/upload ------------------------------------------------------------

    @staticmethod
    def _check_key(requester: Requester, name: str, usage: str, key: Any) -> tuple[str, str]:
        """Validate a CrossSigningKey; return (key ID, public key)."""
        if not isinstance(key, dict):
            raise _bad(f"{name} must be an object")
        if key.get("user_id") != requester.user_id:
            raise _bad(f"{name} must belong to the uploading user", Codes.INVALID_PARAM)
        usages = key.get("usage")
        if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages) \
                or usage not in usages:
            raise _bad(f"{name}.usage must be a list containing {usage!r}", Codes.INVALID_PARAM)
        keys = key.get("keys")
        if not isinstance(keys, dict) or len(keys) != 1:
            raise _bad(f"{name}.keys must hold exactly one key", Codes.INVALID_PARAM)
        key_id, public = next(iter(keys.items()))
        if not isinstance(public, str) or key_id != f"ed25519:{public}":
            raise _bad(f"{name}.keys must map ed25519:<public key> to the public key",
                       Codes.INVALID_PARAM)
        try:
            raw = decode_unpadded_b64(public)
        except (ValueError, TypeError):
            raw = b""
        if len(raw) != 32:
            raise _bad(f"{name} is not an ed25519 public key", Codes.INVALID_PARAM)
        signatures = key.get("signatures")
        if signatures is not None and not isinstance(signatures, dict):
            raise _bad(f"{name}.signatures must be an object")
        return key_id, public

    async def upload_keys(self, requester: Requester, body: Mapping[str, Any],
                          auth: Mapping[str, Any] | None, *, method: str, path: str) -> None:
        user_id = requester.user_id
        new: dict[str, dict[str, Any]] = {}
        publics: dict[str, str] = {}
        for field, key_type in KEY_TYPES.items():
            raw = body.get(field)
            if raw is None:
                continue
            _, publics[key_type] = self._check_key(requester, field, key_type, raw)
            new[key_type] = raw
        if not new:
            raise _bad("No cross-signing keys given", Codes.MISSING_PARAM)

        def read(conn: apsw.Connection) -> tuple[dict[str, dict[str, Any]], set[str]]:
            taken = {p for p in publics.values() if keys_repo.device_exists(conn, user_id, p)}
            return keys_repo.cross_signing_keys(conn, user_id), taken

        stored, taken = await self._db.read(read)
        if taken:
            raise MatrixError(403, Codes.FORBIDDEN, "Key ID in use by a device")
        master = new.get("master") or stored.get("master")
        master_pub = cross_signing_public_key(master) if master is not None else None
        for key_type in ("self_signing", "user_signing"):
            if key_type not in new:
                continue
            if master is None or master_pub is None:
                raise _bad("No master signing key is available", Codes.MISSING_PARAM)
            if not verify_signed(new[key_type], user_id, f"ed25519:{master_pub}", master_pub):
                raise _bad(f"The {key_type} key is not signed by the master key",
                           INVALID_SIGNATURE)
        unchanged = all(stored.get(t) == k for t, k in new.items())
        if unchanged and "master" in stored:
            return  # Idempotent re-upload: no UIA and nothing to store.
        if "master" in stored and requester.appservice_id is None:  # no UIA for appservices
            await self._accounts.require_password_uia(requester, auth, method=method, path=path)
        first_master = stored.get("master")

        def write(conn: apsw.Connection) -> int:
            if keys_repo.cross_signing_keys(conn, user_id).get("master") != first_master:
                raise MatrixError(409, Codes.UNKNOWN,
                                  "The cross-signing keys changed concurrently; retry")
            for key_type, key in new.items():
                old = stored.get(key_type)
                old_pub = cross_signing_public_key(old) if old is not None else None
                if old_pub is not None and old_pub != publics[key_type]:
                    # Signatures made with a replaced key no longer vouch for anything.
                    keys_repo.delete_signatures_by(conn, user_id, f"ed25519:{old_pub}")
                keys_repo.set_cross_signing_key(conn, user_id, key_type, key)
            return keys_repo.record_device_list_change(conn, user_id)

        position = await self._db.write(write)
        await self._e2ee.announce_change(user_id, position, cross_signing=True)

    # -- signatures/upload ----------------------------------------------------------------

    async def upload_signatures(self, requester: Requester, body: Mapping[str, Any]
                                ) -> dict[str, Any]:
        signer = requester.user_id
        total = 0
        for objects in body.values():
            if not isinstance(objects, dict) or not all(
                    isinstance(o, dict) for o in objects.values()):
                raise _bad("The body must map user IDs to {key ID: signed object}")
            total += len(objects)
        if total > MAX_SIGNED_OBJECTS:
            raise MatrixError(413, Codes.TOO_LARGE, f"At most {MAX_SIGNED_OBJECTS} objects")

        failures: dict[str, dict[str, Any]] = {}
        # (target user, target key ID, signing key ID, signature)
        accepted: list[tuple[str, str, str, str]] = []
        own_cross = await self._db.read(lambda c: keys_repo.cross_signing_keys(c, signer))
        for user_id, objects in body.items():
            for key_id, obj in objects.items():
                try:
                    accepted.extend(await self._check_signed_object(
                        signer, own_cross, user_id, key_id, obj))
                except _Failure as f:
                    failures.setdefault(user_id, {})[key_id] = _failure(f.errcode, f.error)

        if accepted:
            changed = sorted({t if t == signer else signer for t, _, _, _ in accepted})

            def write(conn: apsw.Connection) -> list[int]:
                for target, target_key, signing_key, signature in accepted:
                    keys_repo.add_signature(conn, target, target_key, signer, signing_key,
                                            signature)
                return [keys_repo.record_device_list_change(conn, u) for u in changed]

            positions = await self._db.write(write)
            for user_id, position in zip(changed, positions, strict=True):
                await self._e2ee.announce_change(user_id, position, cross_signing=True)
        return {"failures": failures}

    async def _check_signed_object(self, signer: str, own_cross: Mapping[str, dict[str, Any]],
                                   user_id: str, key_id: str, obj: dict[str, Any]
                                   ) -> list[tuple[str, str, str, str]]:
        signatures = obj.get("signatures")
        by_signer = signatures.get(signer) if isinstance(signatures, dict) else None
        if not isinstance(by_signer, dict) or not by_signer:
            raise _Failure(INVALID_SIGNATURE, "No signature by the uploader")

        if user_id != signer:
            # Another user's master key, signed with our user-signing key.
            cross = await self._db.read(lambda c: keys_repo.cross_signing_keys(c, user_id))
            master = cross.get("master")
            if master is None or cross_signing_public_key(master) != key_id:
                raise _Failure(Codes.NOT_FOUND, "Unknown key")
            usk = own_cross.get("user_signing")
            usk_pub = cross_signing_public_key(usk) if usk is not None else None
            if usk_pub is None:
                raise _Failure(Codes.NOT_FOUND, "The uploader has no user-signing key")
            return [self._verified(signer, user_id, key_id, obj, master, f"ed25519:{usk_pub}",
                                   usk_pub)]

        master = own_cross.get("master")
        master_pub = cross_signing_public_key(master) if master is not None else None
        if master is not None and master_pub == key_id:
            # Our master key, signed by our devices.
            out: list[tuple[str, str, str, str]] = []
            for signing_key_id in by_signer:
                algorithm, _, device_id = str(signing_key_id).partition(":")
                if algorithm != "ed25519" or device_id == master_pub:
                    continue
                def read_device(conn: apsw.Connection, d: str = device_id
                                ) -> dict[str, Any] | None:
                    return keys_repo.get_device_keys(conn, signer, d)

                device = await self._db.read(read_device)
                public = device.get("keys", {}).get(signing_key_id) if device else None
                if not isinstance(public, str):
                    raise _Failure(Codes.NOT_FOUND, f"Unknown signing device {device_id}")
                out.append(self._verified(signer, signer, key_id, obj, master, signing_key_id,
                                          public))
            if not out:
                raise _Failure(INVALID_SIGNATURE, "No signature by one of the user's devices")
            return out

        # One of our devices, signed with our self-signing key.
        device = await self._db.read(lambda c: keys_repo.get_device_keys(c, signer, key_id))
        if device is None:
            raise _Failure(Codes.NOT_FOUND, "Unknown device or key")
        ssk = own_cross.get("self_signing")
        ssk_pub = cross_signing_public_key(ssk) if ssk is not None else None
        if ssk_pub is None:
            raise _Failure(Codes.NOT_FOUND, "The uploader has no self-signing key")
        return [self._verified(signer, signer, key_id, obj, device, f"ed25519:{ssk_pub}",
                               ssk_pub)]

    @staticmethod
    def _verified(signer: str, target: str, target_key: str, obj: dict[str, Any],
                  stored: Mapping[str, Any], signing_key_id: str, public: str
                  ) -> tuple[str, str, str, str]:
        if _content(obj) != _content(stored):
            raise _Failure(INVALID_SIGNATURE, "The signed object does not match the stored key")
        signature = obj["signatures"][signer].get(signing_key_id)
        if not isinstance(signature, str) or not verify_signed(obj, signer, signing_key_id,
                                                               public):
            raise _Failure(INVALID_SIGNATURE, "Invalid signature")
        return target, target_key, signing_key_id, signature


class _Failure(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error
