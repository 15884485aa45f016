"""End-to-end encryption keys: upload, query, claim, and device-list tracking for /sync.

One-time key claims are exactly-once: each claim runs under the target user's key in the
`KeyedSerializer` and takes the key in one write transaction (DELETE ... RETURNING), and the
single writer serializes transactions anyway, so no key is ever handed out twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import apsw
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import is_local_user, split_user_id
from trioserver.services.events import canonical_json
from trioserver.services.events.hashing import decode_unpadded_b64
from trioserver.services.sessions import Requester
from trioserver.services.stream_position import StreamPosition
from trioserver.services.sync.streams import SyncContext, SyncResult, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import e2ee_keys as keys_repo
from trioserver.storage.repositories import events as events_repo

log = logging.getLogger(__name__)

MAX_KEYS_PER_UPLOAD = 1000
MAX_CLAIMS = 1000


def _bad(message: str, errcode: str = Codes.BAD_JSON) -> MatrixError:
    return MatrixError(400, errcode, message)


def verify_signed(obj: Mapping[str, Any], user_id: str, key_id: str, public_key_b64: str) -> bool:
    """Whether `obj` carries a valid ed25519 signature by `user_id` with `key_id`."""
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    by_user = signatures.get(user_id)
    signature = by_user.get(key_id) if isinstance(by_user, Mapping) else None
    if not isinstance(signature, str):
        return False
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    try:
        VerifyKey(decode_unpadded_b64(public_key_b64)).verify(
            canonical_json.encode(unsigned), decode_unpadded_b64(signature))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def cross_signing_public_key(key: Mapping[str, Any]) -> str | None:
    """The public part of a cross-signing key's single ed25519 key, if it has one."""
    keys = key.get("keys")
    if not isinstance(keys, Mapping) or len(keys) != 1:
        return None
    value = next(iter(keys.values()))
    return value if isinstance(value, str) else None


def with_signatures(obj: dict[str, Any], target_key_id: str,
                    extra: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """A copy of `obj` with the stored extra signatures on `target_key_id` merged in."""
    mine = [(s, k, sig) for t, s, k, sig in extra if t == target_key_id]
    if not mine:
        return obj
    out = dict(obj)
    signatures = {u: dict(v) for u, v in out.get("signatures", {}).items()
                  if isinstance(v, dict)}
    for signer, key_id, signature in mine:
        signatures.setdefault(signer, {})[key_id] = signature
    out["signatures"] = signatures
    return out


@dataclass(frozen=True)
class DeviceListChange:
    """A user's device list changed at `position`: one device's keys (`device_id`), their
    cross-signing keys or signatures (`cross_signing`), or something else (neither)."""

    user_id: str
    position: int
    device_id: str | None = None
    cross_signing: bool = False


@dataclass(frozen=True)
class _Upload:
    device_keys: dict[str, Any] | None
    one_time_keys: dict[str, Any]
    fallback_keys: dict[str, Any]


class E2EEKeys:
    def __init__(self, server_name: str, db: Database, notifier: Notifier,
                 serializer: KeyedSerializer) -> None:
        self._server_name = server_name
        self._db = db
        self._notifier = notifier
        self._serializer = serializer
        self.position = StreamPosition(db, "device_list_changes")
        self.source = DeviceListSource(self, db)
        self.change_listeners: list[Callable[[DeviceListChange], Awaitable[None]]] = []

    def _is_local(self, user_id: str) -> bool:
        return is_local_user(user_id, self._server_name)

    # -- upload ---------------------------------------------------------------------------

    def _check_device_keys(self, requester: Requester, keys: Any) -> dict[str, Any]:
        if not isinstance(keys, dict):
            raise _bad("device_keys must be an object")
        if keys.get("user_id") != requester.user_id or keys.get("device_id") != \
                requester.device_id:
            raise _bad("device_keys must be for the uploading user and device",
                       Codes.INVALID_PARAM)
        algorithms = keys.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise _bad("device_keys.algorithms must be a list of strings")
        key_map = keys.get("keys")
        if not isinstance(key_map, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in key_map.items()):
            raise _bad("device_keys.keys must map key IDs to keys")
        ed_key = key_map.get(f"ed25519:{requester.device_id}")
        if not isinstance(ed_key, str):
            raise _bad("device_keys needs the device's ed25519 key", Codes.INVALID_PARAM)
        if not verify_signed(keys, requester.user_id, f"ed25519:{requester.device_id}", ed_key):
            raise _bad("device_keys are not signed by the device's key", "M_INVALID_SIGNATURE")
        return keys

    @staticmethod
    def _check_key_map(raw: Any, name: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise _bad(f"{name} must be an object")
        if len(raw) > MAX_KEYS_PER_UPLOAD:
            raise MatrixError(413, Codes.TOO_LARGE, f"At most {MAX_KEYS_PER_UPLOAD} {name}")
        for key_id, key in raw.items():
            algorithm, sep, ident = key_id.partition(":")
            if not sep or not algorithm or not ident:
                raise _bad(f"{name}: key IDs are <algorithm>:<id>", Codes.INVALID_PARAM)
            if not isinstance(key, dict | str):
                raise _bad(f"{name}: keys must be objects (or strings for unsigned keys)")
        return dict(raw)

    def _check_signed_key(self, requester: Requester, key_id: str, key: Any,
                          ed_key: str | None) -> None:
        if key_id.startswith("signed_curve25519:"):
            if not isinstance(key, dict) or not isinstance(key.get("key"), str):
                raise _bad(f"{key_id} must be an object with a key")
            if ed_key is None or not verify_signed(key, requester.user_id,
                                                   f"ed25519:{requester.device_id}", ed_key):
                raise _bad(f"{key_id} is not signed by the device's key", "M_INVALID_SIGNATURE")

    async def upload(self, requester: Requester, device_keys: Any, one_time_keys: Any,
                     fallback_keys: Any) -> dict[str, int]:
        if not requester.device_id:
            # An application service acting without ?device_id= (spec: identity assertion).
            raise MatrixError(400, Codes.MISSING_PARAM,
                              "To upload keys, the request must name a device (device_id)")
        up = _Upload(
            self._check_device_keys(requester, device_keys) if device_keys is not None else None,
            self._check_key_map(one_time_keys, "one_time_keys"),
            self._check_key_map(fallback_keys, "fallback_keys"),
        )
        user_id, device_id = requester.user_id, requester.device_id
        async with self._serializer.hold(f"keys:{user_id}"):
            stored = await self._db.read(
                lambda c: keys_repo.get_device_keys(c, user_id, device_id))
            current = up.device_keys or stored
            ed_key = None
            if current is not None:
                value = current.get("keys", {}).get(f"ed25519:{device_id}")
                ed_key = value if isinstance(value, str) else None
            for key_id, key in (*up.one_time_keys.items(), *up.fallback_keys.items()):
                self._check_signed_key(requester, key_id, key, ed_key)
            fallback_algorithms = [k.split(":", 1)[0] for k in up.fallback_keys]
            if len(set(fallback_algorithms)) != len(fallback_algorithms):
                raise _bad("At most one fallback key per algorithm", Codes.INVALID_PARAM)

            def txn(conn: apsw.Connection) -> tuple[dict[str, int], int | None]:
                position = None
                if up.device_keys is not None and up.device_keys != stored:
                    keys_repo.set_device_keys(conn, user_id, device_id, up.device_keys)
                    position = keys_repo.record_device_list_change(conn, user_id)
                for key_id, key in up.one_time_keys.items():
                    existing = keys_repo.get_one_time_key(conn, user_id, device_id, key_id)
                    if existing is None:
                        keys_repo.add_one_time_key(conn, user_id, device_id,
                                                   key_id.split(":", 1)[0], key_id, key)
                    elif existing != key:
                        raise _bad(f"One-time key {key_id} already exists with another value",
                                   Codes.INVALID_PARAM)
                for key_id, key in up.fallback_keys.items():
                    keys_repo.set_fallback_key(conn, user_id, device_id,
                                               key_id.split(":", 1)[0], key_id, key)
                return keys_repo.one_time_key_counts(conn, user_id, device_id), position

            counts, position = await self._db.write(txn)
        if position is not None:
            self.position.advance(position)
            await self._announce(user_id, position, device_id=device_id)
        elif up.one_time_keys or up.fallback_keys:
            # Only the uploader's key counts changed: their next sync must say so.
            self._notifier.notify([user_key(user_id)])
        return counts

    async def announce_change(self, user_id: str, position: int, *,
                              cross_signing: bool = False) -> None:
        """A device-list change of `user_id` was recorded at `position`: publish it.
        `cross_signing`: the user's cross-signing keys or signatures changed."""
        self.position.advance(position)
        await self._announce(user_id, position, cross_signing=cross_signing)

    async def _announce(self, user_id: str, position: int, *, device_id: str | None = None,
                        cross_signing: bool = False) -> None:
        """Wake everyone sharing a room with `user_id` (their device list changed), and tell
        the listeners (federation: other servers sharing a room)."""
        users = await self._db.read(lambda c: events_repo.users_sharing_rooms(c, user_id))
        self._notifier.notify([user_key(u) for u in users | {user_id}])
        change = DeviceListChange(user_id, position, device_id, cross_signing)
        for listener in self.change_listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("device-list listener failed for %s", user_id)

    # -- query and claim ------------------------------------------------------------------

    async def query(self, requester: Requester, wanted: Mapping[str, Any]) -> dict[str, Any]:
        device_keys: dict[str, Any] = {}
        master: dict[str, Any] = {}
        self_signing: dict[str, Any] = {}
        user_signing: dict[str, Any] = {}
        failures: dict[str, Any] = {}
        for user_id, devices in wanted.items():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise _bad("device_keys must map user IDs to lists of device IDs")
            parts = split_user_id(user_id)
            if parts is None:
                continue
            if parts[1] != self._server_name:
                failures[parts[1]] = {"status": 503, "message": "Federation is not enabled"}
                continue

            def txn(conn: apsw.Connection, uid: str = user_id) -> tuple[
                    list[tuple[str, dict[str, Any], str | None]], dict[str, dict[str, Any]],
                    list[tuple[str, str, str, str]]]:
                return (keys_repo.users_device_keys(conn, uid),
                        keys_repo.cross_signing_keys(conn, uid),
                        keys_repo.visible_signatures(conn, uid, requester.user_id))

            found, cross, extra = await self._db.read(txn)
            found = [(d, with_signatures(k, d, extra), n) for d, k, n in found]
            if "master" in cross:
                master_pub = cross_signing_public_key(cross["master"])
                if master_pub is not None:
                    cross["master"] = with_signatures(cross["master"], master_pub, extra)
            entries: dict[str, Any] = {}
            for device_id, keys, display_name in found:
                if devices and device_id not in devices:
                    continue
                keys = dict(keys)
                keys["unsigned"] = {"device_display_name": display_name} if display_name \
                    else {}
                entries[device_id] = keys
            device_keys[user_id] = entries
            if "master" in cross:
                master[user_id] = cross["master"]
            if "self_signing" in cross:
                self_signing[user_id] = cross["self_signing"]
            if "user_signing" in cross and user_id == requester.user_id:
                user_signing[user_id] = cross["user_signing"]
        out: dict[str, Any] = {"device_keys": device_keys, "failures": failures}
        if master:
            out["master_keys"] = master
        if self_signing:
            out["self_signing_keys"] = self_signing
        if user_signing:
            out["user_signing_keys"] = user_signing
        return out

    async def claim(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        one_time_keys: dict[str, Any] = {}
        failures: dict[str, Any] = {}
        total = 0
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(
                    isinstance(d, str) and isinstance(a, str) for d, a in devices.items()):
                raise _bad("one_time_keys must map users to {device: algorithm}")
            total += len(devices)
            if total > MAX_CLAIMS:
                raise MatrixError(413, Codes.TOO_LARGE, f"At most {MAX_CLAIMS} claims")
            parts = split_user_id(user_id)
            if parts is None:
                continue
            if parts[1] != self._server_name:
                failures[parts[1]] = {"status": 503, "message": "Federation is not enabled"}
                continue

            def txn(conn: apsw.Connection, uid: str = user_id,
                    devs: dict[str, str] = devices) -> dict[str, dict[str, Any]]:
                claimed: dict[str, dict[str, Any]] = {}
                for device_id, algorithm in devs.items():
                    got = keys_repo.claim(conn, uid, device_id, algorithm)
                    if got is not None:
                        claimed[device_id] = {got.key_id: got.key}
                return claimed

            # One user's claims never interleave: check-then-take runs in one transaction
            # under the user's key (the single writer would serialize them regardless).
            async with self._serializer.hold(f"keys:{user_id}"):
                claimed = await self._db.write(txn)
            if claimed:
                one_time_keys[user_id] = claimed
                # The owner's key counts changed: their next sync must say so.
                self._notifier.notify([user_key(user_id)])
        return {"one_time_keys": one_time_keys, "failures": failures}

    async def counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        def txn(conn: apsw.Connection) -> tuple[dict[str, int], list[str]]:
            return (keys_repo.one_time_key_counts(conn, user_id, device_id),
                    keys_repo.unused_fallback_algorithms(conn, user_id, device_id))

        return await self._db.read(txn)

    # -- device lists ---------------------------------------------------------------------

    @staticmethod
    def changes_in(conn: apsw.Connection, user_id: str, since_events: int, upto_events: int,
                   since_dl: int, upto_dl: int) -> tuple[list[str], list[str]]:
        """(changed, left) for `user_id` between two positions of the event and device-list
        streams: the user themself and users sharing a room whose devices or cross-signing keys
        changed, users newly sharing a room, and users who no longer share any room."""
        if since_dl >= upto_dl and since_events >= upto_events:
            return [], []
        sharing = events_repo.users_sharing_rooms(conn, user_id)
        # The user's own changes count too: their other devices learn of a new device or of
        # new cross-signing keys this way (as in Synapse).
        changed = keys_repo.users_with_device_changes(conn, since_dl, upto_dl,
                                                      sharing | {user_id})
        touched: set[str] = set()
        if since_events < upto_events:
            for change in events_repo.membership_changes(conn, user_id, since_events,
                                                         upto_events):
                # We joined or left a room: all its members may start or stop sharing.
                touched.update(u for u, _, _ in events_repo.members(conn, change.room_id))
            active = events_repo.rooms_with_events(conn, since_events, upto_events)
            for room_id in active & set(events_repo.rooms_with_membership(conn, user_id,
                                                                          "join")):
                for stored in events_repo.room_events(conn, room_id, after=since_events,
                                                      before=upto_events + 1,
                                                      backwards=False, limit=10_000):
                    if stored.pdu.get("type") == "m.room.member":
                        touched.add(str(stored.pdu.get("state_key")))
        touched.discard(user_id)
        changed |= touched & sharing  # newly sharing a room: their devices are new to us
        left = touched - sharing
        return sorted(changed), sorted(left)

    async def changes(self, user_id: str, since_events: int, upto_events: int,
                      since_dl: int, upto_dl: int) -> tuple[list[str], list[str]]:
        return await self._db.read(lambda c: self.changes_in(
            c, user_id, since_events, upto_events, since_dl, upto_dl))


class DeviceListSource:
    """Device-list changes ("dl") plus the device's one-time-key counts for /sync."""

    name = "dl"

    def __init__(self, keys: E2EEKeys, db: Database) -> None:
        self._keys = keys
        self._db = db

    async def current_position(self) -> int:
        # Device deletions are recorded by a trigger, so ask the database, not memory.
        position = await self._db.read(keys_repo.device_list_position)
        self._keys.position.advance(position)
        return await self._keys.position.current()

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        user_id, device_id = ctx.user_id, ctx.device_id
        events_since = ctx.events_since

        def txn(conn: apsw.Connection) -> tuple[dict[str, int], list[str], list[str],
                                                list[str]]:
            counts = keys_repo.one_time_key_counts(conn, user_id, device_id)
            unused = keys_repo.unused_fallback_algorithms(conn, user_id, device_id)
            if since is None or events_since is None:
                # An initial sync: the client queries every device it needs anyway.
                return counts, unused, [], []
            changed, left = E2EEKeys.changes_in(conn, user_id, events_since, ctx.events_upto,
                                                since, upto)
            return counts, unused, changed, left

        counts, unused, changed, left = await self._db.read(txn)
        out.one_time_keys_count = {"signed_curve25519": 0, **counts}
        out.unused_fallback_key_types = unused
        out.device_lists_changed.extend(changed)
        out.device_lists_left.extend(left)
