"""Cross-signing, end to end, with real ed25519 keys.

Spec: Client-Server API "Cross-signing" (cross_signing.yaml: /keys/device_signing/upload,
/keys/signatures/upload) and /keys/query's master/self_signing/user_signing keys.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from nacl.signing import SigningKey

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    password_auth,
    register,
    room_path,
    unique,
)
from tests.e2e.test_sync_rooms import sync
from trioserver.services.events import canonical_json


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def pub(key: SigningKey) -> str:
    return b64(bytes(key.verify_key))


def sign(obj: dict[str, Any], user_id: str, key_id: str, key: SigningKey) -> dict[str, Any]:
    """A copy of `obj` with a signature by `key` under `key_id` added."""
    content = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    signature = b64(key.sign(canonical_json.encode(content)).signature)
    out = dict(obj)
    signatures = {u: dict(v) for u, v in obj.get("signatures", {}).items()}
    signatures.setdefault(user_id, {})[key_id] = signature
    out["signatures"] = signatures
    return out


def cross_key(user_id: str, usage: str, key: SigningKey) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub(key)}": pub(key)}}


class User:
    def __init__(self, reg: dict[str, Any]) -> None:
        self.user_id: str = reg["user_id"]
        self.token: str = reg["access_token"]
        self.device_id: str = reg["device_id"]
        self.device_key = SigningKey.generate()
        self.master = SigningKey.generate()
        self.ssk = SigningKey.generate()
        self.usk = SigningKey.generate()

    def device_keys(self) -> dict[str, Any]:
        keys = {"user_id": self.user_id, "device_id": self.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {f"ed25519:{self.device_id}": pub(self.device_key),
                         f"curve25519:{self.device_id}": b64(bytes(32))}}
        return sign(keys, self.user_id, f"ed25519:{self.device_id}", self.device_key)

    def master_key(self) -> dict[str, Any]:
        return cross_key(self.user_id, "master", self.master)

    def signed_by_master(self, usage: str, key: SigningKey) -> dict[str, Any]:
        return sign(cross_key(self.user_id, usage, key), self.user_id,
                    f"ed25519:{pub(self.master)}", self.master)

    def full_upload(self) -> dict[str, Any]:
        return {"master_key": self.master_key(),
                "self_signing_key": self.signed_by_master("self_signing", self.ssk),
                "user_signing_key": self.signed_by_master("user_signing", self.usk)}


async def new_user(http: httpx.AsyncClient, with_device_keys: bool = True) -> User:
    user = User(await register(http, unique("xs")))
    if with_device_keys:
        r = await http.post(f"{CLIENT}/keys/upload", json={"device_keys": user.device_keys()},
                            headers=bearer(user.token))
        assert r.status_code == 200, r.text
    return user


async def device_signing(http: httpx.AsyncClient, user: User, body: dict[str, Any]
                         ) -> httpx.Response:
    return await http.post(f"{CLIENT}/keys/device_signing/upload", json=body,
                           headers=bearer(user.token))


async def signatures(http: httpx.AsyncClient, user: User, body: dict[str, Any]
                     ) -> dict[str, Any]:
    r = await http.post(f"{CLIENT}/keys/signatures/upload", json=body,
                        headers=bearer(user.token))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def query(http: httpx.AsyncClient, user: User, *users: str) -> dict[str, Any]:
    r = await http.post(f"{CLIENT}/keys/query", json={"device_keys": {u: [] for u in users}},
                        headers=bearer(user.token))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_first_upload_needs_no_uia_and_replacement_does(http: httpx.AsyncClient) -> None:
    alice = await new_user(http)
    r = await device_signing(http, alice, alice.full_upload())
    assert r.status_code == 200, r.text
    assert r.json() == {}
    # The same keys again: idempotent, no UIA.
    r = await device_signing(http, alice, alice.full_upload())
    assert r.status_code == 200, r.text

    body = await query(http, alice, alice.user_id)
    assert body["master_keys"][alice.user_id]["keys"] == alice.master_key()["keys"]
    assert body["self_signing_keys"][alice.user_id]["keys"] == {
        f"ed25519:{pub(alice.ssk)}": pub(alice.ssk)}
    assert body["user_signing_keys"][alice.user_id]["usage"] == ["user_signing"]

    alice.master, alice.ssk, alice.usk = (SigningKey.generate(), SigningKey.generate(),
                                          SigningKey.generate())
    upload = alice.full_upload()
    r = await device_signing(http, alice, upload)
    assert r.status_code == 401, r.text
    flows = r.json()["flows"]
    assert any(f["stages"] == ["m.login.password"] for f in flows)
    session = r.json()["session"]
    r = await device_signing(http, alice, {**upload, "auth": password_auth(
        alice.user_id, "wrong password", session)})
    assert r.status_code in (401, 403), r.text
    r = await device_signing(http, alice, {**upload, "auth": password_auth(
        alice.user_id, session=session)})
    assert r.status_code == 200, r.text
    body = await query(http, alice, alice.user_id)
    assert body["master_keys"][alice.user_id]["keys"] == alice.master_key()["keys"]


async def test_keys_not_signed_by_the_master_key_are_rejected(http: httpx.AsyncClient) -> None:
    alice = await new_user(http)
    other = SigningKey.generate()
    upload = alice.full_upload()
    upload["self_signing_key"] = sign(cross_key(alice.user_id, "self_signing", alice.ssk),
                                      alice.user_id, f"ed25519:{pub(alice.master)}", other)
    assert_error(await device_signing(http, alice, upload), 400, "M_INVALID_SIGNATURE")
    # Unsigned, and with no master key at all.
    upload["self_signing_key"] = cross_key(alice.user_id, "self_signing", alice.ssk)
    assert_error(await device_signing(http, alice, upload), 400, "M_INVALID_SIGNATURE")
    r = await device_signing(http, alice, {
        "self_signing_key": alice.signed_by_master("self_signing", alice.ssk)})
    assert_error(r, 400, "M_MISSING_PARAM")
    assert "master_keys" not in await query(http, alice, alice.user_id)


async def test_malformed_cross_signing_keys_are_rejected(http: httpx.AsyncClient) -> None:
    alice, bob = await new_user(http), await new_user(http, with_device_keys=False)
    wrong_user = {"master_key": cross_key(bob.user_id, "master", alice.master)}
    r = await device_signing(http, alice, wrong_user)
    assert r.status_code == 400, r.text
    wrong_usage = {"master_key": cross_key(alice.user_id, "self_signing", alice.master)}
    assert (await device_signing(http, alice, wrong_usage)).status_code == 400
    two_keys = alice.master_key()
    two_keys["keys"] = {**two_keys["keys"], **cross_key(alice.user_id, "master",
                                                        alice.ssk)["keys"]}
    assert (await device_signing(http, alice, {"master_key": two_keys})).status_code == 400


async def test_signatures_upload_for_own_device_and_master(http: httpx.AsyncClient) -> None:
    alice = await new_user(http)
    assert (await device_signing(http, alice, alice.full_upload())).status_code == 200
    device = sign(alice.device_keys(), alice.user_id, f"ed25519:{pub(alice.ssk)}", alice.ssk)
    master = sign(alice.master_key(), alice.user_id, f"ed25519:{alice.device_id}",
                  alice.device_key)
    out = await signatures(http, alice, {alice.user_id: {alice.device_id: device,
                                                         pub(alice.master): master}})
    assert out["failures"] == {}

    body = await query(http, alice, alice.user_id)
    sigs = body["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert sigs[f"ed25519:{pub(alice.ssk)}"] == device["signatures"][alice.user_id][
        f"ed25519:{pub(alice.ssk)}"]
    assert f"ed25519:{alice.device_id}" in sigs  # the device's self-signature is kept
    master_sigs = body["master_keys"][alice.user_id]["signatures"][alice.user_id]
    assert f"ed25519:{alice.device_id}" in master_sigs

    # Re-uploading the device keys keeps the cross-signing signature.
    r = await http.post(f"{CLIENT}/keys/upload", json={"device_keys": alice.device_keys()},
                        headers=bearer(alice.token))
    assert r.status_code == 200, r.text
    body = await query(http, alice, alice.user_id)
    sigs = body["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert f"ed25519:{pub(alice.ssk)}" in sigs


async def test_forged_and_unknown_signatures_land_in_failures(http: httpx.AsyncClient) -> None:
    alice = await new_user(http)
    assert (await device_signing(http, alice, alice.full_upload())).status_code == 200
    forged = sign(alice.device_keys(), alice.user_id, f"ed25519:{pub(alice.ssk)}",
                  SigningKey.generate())
    altered = sign({**alice.device_keys(), "algorithms": ["x"]}, alice.user_id,
                   f"ed25519:{pub(alice.ssk)}", alice.ssk)
    out = await signatures(http, alice, {alice.user_id: {alice.device_id: forged,
                                                         "NOSUCHDEVICE": altered}})
    failures = out["failures"][alice.user_id]
    assert failures[alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures["NOSUCHDEVICE"]["errcode"] == "M_NOT_FOUND"
    out = await signatures(http, alice, {alice.user_id: {alice.device_id: altered}})
    assert out["failures"][alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    body = await query(http, alice, alice.user_id)
    sigs = body["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    assert f"ed25519:{pub(alice.ssk)}" not in sigs


async def test_user_signing_signature_is_visible_only_to_the_signer(
        http: httpx.AsyncClient) -> None:
    alice, bob, carol = await new_user(http), await new_user(http), await new_user(http)
    for user in (alice, bob):
        assert (await device_signing(http, user, user.full_upload())).status_code == 200
    signed = sign(bob.master_key(), alice.user_id, f"ed25519:{pub(alice.usk)}", alice.usk)
    out = await signatures(http, alice, {bob.user_id: {pub(bob.master): signed}})
    assert out["failures"] == {}
    seen = (await query(http, alice, bob.user_id))["master_keys"][bob.user_id]
    assert f"ed25519:{pub(alice.usk)}" in seen["signatures"][alice.user_id]
    for viewer in (bob, carol):
        seen = (await query(http, viewer, bob.user_id))["master_keys"][bob.user_id]
        assert alice.user_id not in seen.get("signatures", {})
    # Signing with a key that is not Alice's user-signing key fails.
    forged = sign(bob.master_key(), alice.user_id, f"ed25519:{pub(alice.usk)}", alice.ssk)
    out = await signatures(http, alice, {bob.user_id: {pub(bob.master): forged}})
    assert out["failures"][bob.user_id][pub(bob.master)]["errcode"] == "M_INVALID_SIGNATURE"


async def test_others_see_the_master_key_and_a_device_list_change(
        http: httpx.AsyncClient) -> None:
    alice, bob = await new_user(http), await new_user(http)
    room = await create_room(http, alice.token, preset="public_chat")
    r = await http.post(room_path(room, "join"), json={}, headers=bearer(bob.token))
    assert r.status_code == 200, r.text
    since = (await sync(http, bob.token))["next_batch"]

    assert (await device_signing(http, alice, alice.full_upload())).status_code == 200
    body = await sync(http, bob.token, since, timeout=5000)
    assert alice.user_id in body.get("device_lists", {}).get("changed", [])
    r = await http.get(f"{CLIENT}/keys/changes", params={"from": since,
                                                         "to": body["next_batch"]},
                       headers=bearer(bob.token))
    assert r.status_code == 200, r.text
    assert alice.user_id in r.json()["changed"]

    seen = await query(http, bob, alice.user_id)
    assert seen["master_keys"][alice.user_id]["keys"] == alice.master_key()["keys"]
    assert alice.user_id in seen["self_signing_keys"]
    assert alice.user_id not in seen.get("user_signing_keys", {})

    # A signature on one of Alice's devices is a device-list change too.
    since = body["next_batch"]
    device = sign(alice.device_keys(), alice.user_id, f"ed25519:{pub(alice.ssk)}", alice.ssk)
    assert (await signatures(http, alice, {alice.user_id: {alice.device_id: device}})
            )["failures"] == {}
    body = await sync(http, bob.token, since, timeout=5000)
    assert alice.user_id in body.get("device_lists", {}).get("changed", [])
