"""End-to-end encryption keys across servers (Server-Server API "End-to-End Encryption").

Two directions:

* serving: other servers query and claim our users' keys (`/user/keys/query`,
  `/user/keys/claim`) and fetch their device lists (`/user/devices/{userId}`);
* asking: our clients' `/keys/query` and `/keys/claim` for users of other servers go to those
  servers, one request per server, all at once, within the request's timeout. A server that
  does not answer in time is named in `failures`.

Remote device lists are cached in memory. A cached user is dropped when their server sends an
`m.device_list_update` or `m.signing_key_update` for them, when their membership of any room
changes (while no room was shared, their server sent us no updates), and after CACHE_TTL_S
in any case. An update also records a device-list change for the remote user, so local users
sharing a room with them see it in /sync `device_lists.changed` and query again.

`m.device_list_update` carries `stream_id` and `prev_id`: we remember the last `stream_id`
seen per remote user (in memory). An update whose `prev_id` does not name it means we missed
updates, so the user's whole list is fetched again with GET /user/devices/{userId} and
replaces the cache ("resync"). Without a remembered ID (first update, or after a restart)
the cache is just dropped: the next /keys/query asks the server anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import apsw
import trio

from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import split_user_id
from trioserver.services.e2ee import E2EEKeys
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.errors import FederationRequestError, FederationUnreachable
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import e2ee_keys as keys_repo

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
CACHE_TTL_S = 600.0
MAX_CACHED_USERS = 50_000
# Nobody asks on behalf of a remote server: signatures by other users are never shown to it.
_FEDERATION_VIEWER = Requester(user_id="", device_id="", is_guest=False, token_hash=b"")


def _server_of(user_id: str) -> str | None:
    parts = split_user_id(user_id)
    return None if parts is None else parts[1]


def timeout_seconds(raw: Any) -> float:
    """The `timeout` (ms) of /keys/query or /keys/claim as seconds, default 10 s."""
    if raw is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise MatrixError(400, Codes.BAD_JSON, "timeout must be a non-negative integer")
    return min(raw / 1000, MAX_TIMEOUT_S)


@dataclass
class _Cached:
    fetched: float
    devices: dict[str, Any]  # device ID -> signed device keys
    master: dict[str, Any] | None
    self_signing: dict[str, Any] | None


def _unreachable(message: str) -> dict[str, Any]:
    return {"status": 503, "message": message}


class RemoteKeys:
    def __init__(self, server_name: str, db: Database, e2ee: E2EEKeys,
                 client: FederationClient, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._server_name = server_name
        self._db = db
        self._e2ee = e2ee
        self._client = client
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._last_stream_id: dict[str, int] = {}  # remote user -> last stream_id seen

    def _is_local(self, user_id: str) -> bool:
        return _server_of(user_id) == self._server_name

    # -- serving other servers -------------------------------------------------------------

    async def serve_query(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """POST /_matrix/federation/v1/user/keys/query: our users' keys only."""
        local = {u: d for u, d in wanted.items() if self._is_local(u)}
        out = await self._e2ee.query(_FEDERATION_VIEWER, local)
        out.pop("failures", None)
        out.pop("user_signing_keys", None)
        return out

    async def serve_claim(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """POST /_matrix/federation/v1/user/keys/claim: our users' one-time keys only."""
        local = {u: d for u, d in wanted.items() if self._is_local(u)}
        out = await self._e2ee.claim(local)
        return {"one_time_keys": out["one_time_keys"]}

    async def serve_devices(self, user_id: str) -> dict[str, Any]:
        """GET /_matrix/federation/v1/user/devices/{userId}."""
        if not self._is_local(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Not a user of this server")

        def read(conn: apsw.Connection) -> tuple[list[devices_repo.DeviceRow],
                                                 dict[str, dict[str, Any]],
                                                 dict[str, dict[str, Any]], int]:
            keys = {d: k for d, k, _ in keys_repo.users_device_keys(conn, user_id)}
            return (devices_repo.list_devices(conn, user_id), keys,
                    keys_repo.cross_signing_keys(conn, user_id),
                    keys_repo.latest_change_of(conn, user_id))

        devices, keys, cross, stream_id = await self._db.read(read)
        listed = await self.serve_query({user_id: []})
        signed = listed.get("device_keys", {}).get(user_id, {})
        out: dict[str, Any] = {"user_id": user_id, "stream_id": stream_id, "devices": []}
        for device in devices:
            entry: dict[str, Any] = {"device_id": device.device_id}
            if device.device_id in keys:
                entry["keys"] = {k: v for k, v in signed.get(device.device_id, {}).items()
                                 if k != "unsigned"}
            if device.display_name:
                entry["device_display_name"] = device.display_name
            out["devices"].append(entry)
        if "master" in cross:
            out["master_key"] = listed.get("master_keys", {}).get(user_id, cross["master"])
        if "self_signing" in cross:
            out["self_signing_key"] = cross["self_signing"]
        return out

    # -- asking other servers for our clients ---------------------------------------------------

    async def query(self, requester: Requester, wanted: Mapping[str, Any], timeout_s: float
                    ) -> dict[str, Any]:
        """POST /_matrix/client/v3/keys/query across servers."""
        local: dict[str, Any] = {}
        remote: dict[str, dict[str, list[str]]] = {}  # server -> user -> devices
        for user_id, devices in wanted.items():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise MatrixError(400, Codes.BAD_JSON,
                                  "device_keys must map user IDs to lists of device IDs")
            server = _server_of(user_id)
            if server is None:
                continue
            if server == self._server_name:
                local[user_id] = devices
            else:
                remote.setdefault(server, {})[user_id] = devices
        out = await self._e2ee.query(requester, local)
        failures: dict[str, Any] = out.setdefault("failures", {})
        to_fetch: dict[str, list[str]] = {}
        for server, users in remote.items():
            missing = [u for u in users if self._cached(u) is None]
            if missing:
                to_fetch[server] = missing
        failures.update(await self._fetch_all(to_fetch, timeout_s))
        for users in remote.values():
            for user_id, devices in users.items():
                cached = self._cached(user_id)
                if cached is None:
                    continue
                out.setdefault("device_keys", {})[user_id] = {
                    d: k for d, k in cached.devices.items() if not devices or d in devices}
                if cached.master is not None:
                    out.setdefault("master_keys", {})[user_id] = cached.master
                if cached.self_signing is not None:
                    out.setdefault("self_signing_keys", {})[user_id] = cached.self_signing
        return out

    def _cached(self, user_id: str) -> _Cached | None:
        cached = self._cache.get(user_id)
        if cached is not None and self._clock() - cached.fetched > CACHE_TTL_S:
            del self._cache[user_id]
            return None
        return cached

    async def _fetch_all(self, to_fetch: Mapping[str, list[str]], timeout_s: float
                         ) -> dict[str, Any]:
        failures = {server: _unreachable("Timed out") for server in to_fetch}

        async def one(server: str, users: list[str]) -> None:
            try:
                body = await self._client.post_json(
                    server, "/_matrix/federation/v1/user/keys/query",
                    {"device_keys": {u: [] for u in users}}, timeout_s=timeout_s)
            except (FederationUnreachable, FederationRequestError) as e:
                failures[server] = _unreachable(str(e))
                return
            self._store(server, users, body)
            del failures[server]

        with trio.move_on_after(timeout_s):
            async with trio.open_nursery() as nursery:
                for server, users in to_fetch.items():
                    nursery.start_soon(one, server, users)
        return failures

    def _store(self, server: str, users: list[str], body: Any) -> None:
        """Cache what `server` said of its `users`, dropping anything not about them."""
        if not isinstance(body, dict):
            return
        device_keys = body.get("device_keys")
        device_keys = device_keys if isinstance(device_keys, dict) else {}
        now = self._clock()
        if len(self._cache) + len(users) > MAX_CACHED_USERS:
            self._cache.clear()
        for user_id in users:
            if _server_of(user_id) != server:
                continue
            by_device = device_keys.get(user_id)
            devices = {
                d: k for d, k in (by_device.items() if isinstance(by_device, dict) else ())
                if isinstance(k, dict) and k.get("user_id") == user_id
                and k.get("device_id") == d}
            self._cache[user_id] = _Cached(
                now, devices, _cross_key(body, "master_keys", user_id),
                _cross_key(body, "self_signing_keys", user_id))

    async def claim(self, wanted: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        """POST /_matrix/client/v3/keys/claim across servers."""
        local: dict[str, Any] = {}
        remote: dict[str, dict[str, Any]] = {}
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(
                    isinstance(d, str) and isinstance(a, str) for d, a in devices.items()):
                raise MatrixError(400, Codes.BAD_JSON,
                                  "one_time_keys must map users to {device: algorithm}")
            server = _server_of(user_id)
            if server == self._server_name:
                local[user_id] = devices
            elif server is not None:
                remote.setdefault(server, {})[user_id] = devices
        out = await self._e2ee.claim(local)
        failures: dict[str, Any] = out["failures"]
        failures.update({server: _unreachable("Timed out") for server in remote})
        claimed: dict[str, Any] = out["one_time_keys"]

        async def one(server: str, users: dict[str, Any]) -> None:
            try:
                body = await self._client.post_json(
                    server, "/_matrix/federation/v1/user/keys/claim",
                    {"one_time_keys": users}, timeout_s=timeout_s)
            except (FederationUnreachable, FederationRequestError) as e:
                failures[server] = _unreachable(str(e))
                return
            del failures[server]
            keys = body.get("one_time_keys") if isinstance(body, dict) else None
            for user_id, by_device in (keys.items() if isinstance(keys, dict) else ()):
                if user_id in users and isinstance(by_device, dict):
                    claimed[user_id] = {d: k for d, k in by_device.items()
                                        if d in users[user_id] and isinstance(k, dict)}

        with trio.move_on_after(timeout_s):
            async with trio.open_nursery() as nursery:
                for server, users in remote.items():
                    nursery.start_soon(one, server, users)
        return out

    # -- updates from other servers ---------------------------------------------------------

    def forget(self, user_id: str) -> None:
        self._cache.pop(user_id, None)

    def on_membership(self, room_id: str, user_id: str, membership: str) -> None:
        """Appender listener: a remote user joined or left a room; re-ask next time."""
        self._cache.pop(user_id, None)

    async def on_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        """EDU m.device_list_update: the user's devices changed on their server."""
        user_id = content.get("user_id")
        stream_id = content.get("stream_id")
        prev_ids = content.get("prev_id")
        if (isinstance(user_id, str) and _server_of(user_id) == origin
                and isinstance(stream_id, int) and not isinstance(stream_id, bool)):
            last = self._last_stream_id.get(user_id)
            if last is not None and stream_id <= last:
                return  # seen already (a retried transaction): nothing new
            gap = last is not None and (not isinstance(prev_ids, list) or last not in prev_ids)
            self._last_stream_id[user_id] = stream_id
            if len(self._last_stream_id) > MAX_CACHED_USERS:
                self._last_stream_id.clear()
            if gap:
                await self.resync(origin, user_id)
                await self._announce(user_id)
                return
        await self._changed(origin, user_id)

    async def resync(self, server: str, user_id: str) -> None:
        """Replace the cached devices of `user_id` with what GET /user/devices says.

        On failure the cache is dropped instead, so the next /keys/query asks again.
        """
        self._cache.pop(user_id, None)
        try:
            body = await self._client.get_json(
                server, f"/_matrix/federation/v1/user/devices/{quote(user_id, safe='')}",
                timeout_s=DEFAULT_TIMEOUT_S)
        except (FederationUnreachable, FederationRequestError) as e:
            log.info("resync of %s's devices failed: %s", user_id, e)
            return
        if not isinstance(body, dict) or body.get("user_id") != user_id:
            return
        devices: dict[str, Any] = {}
        listed = body.get("devices")
        for entry in listed if isinstance(listed, list) else ():
            keys = entry.get("keys") if isinstance(entry, dict) else None
            if isinstance(keys, dict) and keys.get("user_id") == user_id and \
                    keys.get("device_id") == entry.get("device_id"):
                devices[entry["device_id"]] = keys
        master = body.get("master_key")
        self_signing = body.get("self_signing_key")
        self._cache[user_id] = _Cached(
            self._clock(), devices,
            master if isinstance(master, dict) and master.get("user_id") == user_id else None,
            self_signing if isinstance(self_signing, dict)
            and self_signing.get("user_id") == user_id else None)
        stream_id = body.get("stream_id")
        if isinstance(stream_id, int) and not isinstance(stream_id, bool):
            self._last_stream_id[user_id] = max(stream_id,
                                                self._last_stream_id.get(user_id, stream_id))

    async def on_signing_key_update(self, origin: str, content: dict[str, Any]) -> None:
        """EDU m.signing_key_update: the user's cross-signing keys changed."""
        await self._changed(origin, content.get("user_id"))

    async def _changed(self, origin: str, user_id: Any) -> None:
        if not isinstance(user_id, str) or _server_of(user_id) != origin:
            raise MatrixError(400, Codes.INVALID_PARAM, "user_id is not on the origin server")
        self._cache.pop(user_id, None)
        await self._announce(user_id)

    async def _announce(self, user_id: str) -> None:
        """Record a device-list change of the remote user: local users see it in /sync."""
        position = await self._db.write(
            lambda c: keys_repo.record_device_list_change(c, user_id))
        await self._e2ee.announce_change(user_id, position)


def _cross_key(body: Mapping[str, Any], field: str, user_id: str) -> dict[str, Any] | None:
    keys = body.get(field)
    key = keys.get(user_id) if isinstance(keys, dict) else None
    return key if isinstance(key, dict) and key.get("user_id") == user_id else None
