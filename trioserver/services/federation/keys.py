"""Server signing keys: ours as published, and other servers' as fetched and cached.

Spec: Server-Server API, "Retrieving server keys" (GET /_matrix/key/v2/server, the notary
endpoints /_matrix/key/v2/query). A key response is trusted only when it is validly signed by
the server it describes, with one of the keys it lists; a response obtained through a notary
must in addition carry a valid signature of that notary. Nothing else is ever cached.

Validity: a signature by a current key counts until the lesser of the response's
`valid_until_ts` and 7 days after we fetched it (the spec's cap); a key the server lists in
`old_verify_keys` counts for signatures made before its `expired_ts`. Callers say how long they
need a key with `minimum_valid_until_ts`: now for a request, the event's `origin_server_ts`
for an event (0 in room versions 1-4, which ignore `valid_until_ts`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from trioserver.concurrency import KeyedSerializer
from trioserver.services.clock import now_ms
from trioserver.services.events.signing import SigningKey, sign_json, verify_json_signature
from trioserver.services.federation.errors import (
    FederationAuthError,
    FederationError,
    KeyResponseError,
)
from trioserver.services.federation.key_response import (
    OldVerifyKey,
    ServerKeyResponse,
    VerifyKey,
    parse_key_response,
    server_key_response,
)
from trioserver.storage.db import Database
from trioserver.storage.repositories import server_keys as repo

__all__ = ["KeyFetchClient", "KeyRing", "OldVerifyKey", "VerifyKey", "server_key_response"]

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
# Our responses say "valid for a week"; one is re-signed after an hour, so what we serve
# always has more than the hour left that the spec asks for.
OWN_RESPONSE_LIFETIME_MS = 7 * DAY_MS
OWN_RESPONSE_REFRESH_MS = 3600 * 1000
# At most one fetch of a server's keys per minute, however many requests name unknown keys.
REFETCH_INTERVAL_MS = 60 * 1000
KEY_SERVER_PATH = "/_matrix/key/v2/server"
KEY_QUERY_PATH = "/_matrix/key/v2/query"


class KeyFetchClient(Protocol):
    """What the key ring needs of the federation client (tests pass a fake)."""

    async def get_json(self, destination: str, path: str, *,
                       query: Mapping[str, str] | None = None,
                       timeout_s: float | None = None) -> Any: ...

    async def post_json(self, destination: str, path: str, body: Any, *,
                        query: Mapping[str, str] | None = None,
                        timeout_s: float | None = None) -> Any: ...


def _merge(old: VerifyKey | None, new: VerifyKey) -> VerifyKey:
    """A key as known after `new` was heard about it.

    Once a server has declared a key old, a later response listing it as current (a notary's
    stale copy) does not revive it; otherwise the longer validity wins.
    """
    if old is None or new.expired_ts is not None:
        return new
    if old.expired_ts is not None:
        return old
    return replace(new, valid_until_ts=max(old.valid_until_ts, new.valid_until_ts))


class KeyRing:
    """Verify keys of every server, ours included: memory, then the database, then the network.

    Fetches go first to the server itself, then to each trusted notary in turn; fetches for
    one server never run concurrently, and happen at most once per REFETCH_INTERVAL_MS.
    """

    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        old_keys: Iterable[OldVerifyKey],
        db: Database,
        client: KeyFetchClient | None,
        trusted_key_servers: Sequence[str] = (),
        fetch_timeout_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        # A crash half-way through a rotation can list the current key as old: it is not.
        self.old_keys = tuple(k for k in old_keys if k.key_id != signing_key.key_id)
        self._db = db
        self._client = client
        self._notaries = tuple(s for s in trusted_key_servers if s != server_name)
        self._fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        self._cache: dict[str, dict[str, VerifyKey]] = {}
        self._last_fetch: dict[str, int] = {}
        self._serializer = KeyedSerializer()
        self._own_response: dict[str, Any] | None = None
        self._own_signed_at = 0

    def now_ms(self) -> int:
        return self._clock()

    # -- our own keys ----------------------------------------------------------------------

    def own_key_response(self) -> dict[str, Any]:
        """The signed body of GET /_matrix/key/v2/server, re-signed every hour."""
        now = self._clock()
        if self._own_response is None or now - self._own_signed_at >= OWN_RESPONSE_REFRESH_MS:
            self._own_response = server_key_response(
                self.server_name, self.signing_key, self.old_keys,
                now + OWN_RESPONSE_LIFETIME_MS)
            self._own_signed_at = now
        return self._own_response

    def _own_keys(self) -> dict[str, VerifyKey]:
        keys = {k.key_id: VerifyKey(k.key, k.expired_ts, k.expired_ts) for k in self.old_keys}
        # Our current key signs whatever we sign now: it has no end of validity to us.
        keys[self.signing_key.key_id] = VerifyKey(self.signing_key.verify_key_bytes, 2**63 - 1)
        return keys

    # -- lookups -----------------------------------------------------------------------------

    async def verify_keys(
        self, server_name: str, key_ids: Iterable[str], *, minimum_valid_until_ts: int
    ) -> dict[str, bytes]:
        """key_id -> ed25519 public key of `server_name`, for those of `key_ids` that are
        known (fetching them if needed) and valid until at least `minimum_valid_until_ts`.

        Keys that cannot be found are left out; fetch failures are logged, not raised.
        """
        return await self._lookup(server_name, list(dict.fromkeys(key_ids)),
                                  minimum_valid_until_ts, use_notaries=True)

    async def verify_json(
        self, server_name: str, obj: dict[str, Any], *, minimum_valid_until_ts: int = 0
    ) -> None:
        """Raise FederationAuthError unless `obj` carries a valid signature by `server_name`
        with one of its keys valid until at least `minimum_valid_until_ts`."""
        signatures = obj.get("signatures")
        entry = signatures.get(server_name) if isinstance(signatures, dict) else None
        if not isinstance(entry, dict) or not entry:
            raise FederationAuthError(f"not signed by {server_name}")
        keys = await self.verify_keys(server_name, [k for k in entry if isinstance(k, str)],
                                      minimum_valid_until_ts=minimum_valid_until_ts)
        if not keys:
            listed = ", ".join(sorted(map(str, entry))[:5])
            raise FederationAuthError(f"no valid key of {server_name} among {listed}")
        for key_id, key in keys.items():
            if verify_json_signature(obj, server_name, key_id, key):
                return
        raise FederationAuthError(f"bad signature by {server_name}")

    async def _lookup(self, server_name: str, key_ids: list[str], minimum: int, *,
                      use_notaries: bool) -> dict[str, bytes]:
        if server_name == self.server_name:
            return _valid(self._own_keys(), key_ids, minimum)
        found = _valid(await self._known(server_name), key_ids, minimum)
        if len(found) == len(key_ids) or self._client is None:
            return found
        if not use_notaries:
            # A notary's own keys, looked up while the lock of the server it vouches for is
            # held: taking the notary's lock too could deadlock two notaries vouching for each
            # other. At worst the same keys are fetched twice.
            await self._fetch_unless_recent(server_name, key_ids, minimum, use_notaries=False)
        else:
            async with self._serializer.hold(server_name):
                # Another task may have fetched while this one waited for the lock.
                if len(_valid(await self._known(server_name), key_ids, minimum)) < len(key_ids):
                    await self._fetch_unless_recent(server_name, key_ids, minimum,
                                                    use_notaries=True)
        return _valid(await self._known(server_name), key_ids, minimum)

    async def _fetch_unless_recent(self, server_name: str, key_ids: list[str], minimum: int, *,
                                   use_notaries: bool) -> None:
        now = self._clock()
        if now - self._last_fetch.get(server_name, -REFETCH_INTERVAL_MS) < REFETCH_INTERVAL_MS:
            return
        self._last_fetch[server_name] = now
        await self._fetch(server_name, key_ids, minimum, use_notaries=use_notaries)

    async def _known(self, server_name: str) -> dict[str, VerifyKey]:
        cached = self._cache.get(server_name)
        if cached is None:
            rows = await self._db.read(lambda conn: repo.keys_of(conn, server_name))
            cached = {r.key_id: VerifyKey(r.verify_key, r.valid_until_ts, r.expired_ts)
                      for r in rows}
            self._cache[server_name] = cached
        return cached

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch(self, server_name: str, key_ids: list[str], minimum: int, *,
                     use_notaries: bool) -> None:
        """Ask the server, then each notary, until every key in `key_ids` is valid long
        enough. Runs with the server's lock held."""
        assert self._client is not None
        try:
            body = await self._client.get_json(server_name, KEY_SERVER_PATH,
                                               timeout_s=self._fetch_timeout_s)
            await self._store(parse_key_response(body, server_name, now_ms=self._clock()))
        except FederationError as e:
            log.info("fetching the keys of %s from itself failed: %s", server_name, e)
        if not use_notaries:
            return
        for notary in self._notaries:
            if notary == server_name:
                continue
            if len(_valid(await self._known(server_name), key_ids, minimum)) == len(key_ids):
                return
            try:
                await self._fetch_from_notary(notary, server_name, key_ids, minimum)
            except FederationError as e:
                log.info("fetching the keys of %s from notary %s failed: %s",
                         server_name, notary, e)

    async def _fetch_from_notary(self, notary: str, server_name: str, key_ids: list[str],
                                 minimum: int) -> None:
        assert self._client is not None
        criteria = {k: {"minimum_valid_until_ts": minimum} for k in key_ids}
        body = await self._client.post_json(
            notary, KEY_QUERY_PATH, {"server_keys": {server_name: criteria}},
            timeout_s=self._fetch_timeout_s)
        listed = body.get("server_keys") if isinstance(body, dict) else None
        if not isinstance(listed, list):
            raise KeyResponseError(f"notary {notary} answered without a server_keys list")
        for item in listed:
            if not isinstance(item, dict) or item.get("server_name") != server_name:
                continue
            response = parse_key_response(item, server_name, now_ms=self._clock())
            await self._check_notary_signature(notary, item)
            await self._store(response)

    async def _check_notary_signature(self, notary: str, obj: dict[str, Any]) -> None:
        signatures = obj.get("signatures", {}).get(notary)
        if not isinstance(signatures, dict) or not signatures:
            raise KeyResponseError(f"notary {notary} did not sign its answer")
        keys = await self._lookup(notary, list(signatures), self._clock(), use_notaries=False)
        if not any(verify_json_signature(obj, notary, k, v) for k, v in keys.items()):
            raise KeyResponseError(f"the answer of notary {notary} is not validly signed by it")

    async def _store(self, response: ServerKeyResponse) -> None:
        known = await self._known(response.server_name)
        merged = {key_id: _merge(known.get(key_id), key)
                  for key_id, key in response.keys.items()}
        fetched = response.fetched_ts
        rows = [repo.KeyRow(key_id, k.key, k.valid_until_ts, k.expired_ts)
                for key_id, k in merged.items()]

        def write(conn: Any) -> None:
            repo.upsert_keys(conn, response.server_name, rows, fetched)
            repo.store_response(conn, response.server_name, response.raw,
                                response.valid_until_ts, fetched)

        await self._db.write(write)
        known.update(merged)

    # -- notary ------------------------------------------------------------------------------

    async def notary_query(self, server_name: str, *,
                           minimum_valid_until_ts: int | None = None) -> list[dict[str, Any]]:
        """Key responses of `server_name` for /_matrix/key/v2/query, co-signed by us.

        A stored response is served again until half its lifetime has passed (or it is not
        valid until `minimum_valid_until_ts`); then the server is asked afresh, and when that
        fails the stored response is still served, so that old signatures stay checkable.
        """
        now = self._clock()
        minimum = now if minimum_valid_until_ts is None else minimum_valid_until_ts
        if server_name == self.server_name:
            return [self.own_key_response()]
        stored = await self._db.read(lambda conn: repo.response_of(conn, server_name))
        if self._client is not None and (
            stored is None or stored.valid_until_ts < minimum
            or now >= (stored.fetched_ts + stored.valid_until_ts) // 2
        ):
            await self._refresh_for_notary(server_name)
            stored = await self._db.read(lambda conn: repo.response_of(conn, server_name))
        if stored is None:
            return []
        return [sign_json(stored.response, self.server_name, self.signing_key)]

    async def _refresh_for_notary(self, server_name: str) -> None:
        async with self._serializer.hold(server_name):
            # Only the server itself: a notary vouches for what it has seen, not for hearsay.
            await self._fetch_unless_recent(server_name, [], 0, use_notaries=False)


def _valid(keys: Mapping[str, VerifyKey], key_ids: list[str], minimum: int) -> dict[str, bytes]:
    return {k: v.key for k in key_ids
            if (v := keys.get(k)) is not None and v.valid_until_ts >= minimum}
