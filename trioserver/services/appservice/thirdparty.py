"""Third-party lookups answered by application services (spec "Third-party Networks" and
"Application Service API": Third-party networks).

The homeserver asks each appservice whose registration lists the protocol (and has a URL),
concurrently, with `Authorization: Bearer <hs_token>`:
GET /_matrix/app/v1/thirdparty/protocol/{protocol}, .../location/{protocol}, .../user/{protocol},
.../location?alias= and .../user?userid=. An appservice that fails, is slow or answers something
malformed is skipped: the answer is what the others said. Malformed entries are dropped.

Protocol metadata is merged as Synapse does: the first answer's fields, with the `instances` of
every appservice, each given `instance_id` "{appservice id}|{network_id}" (the
third_party_instance_id /publicRooms takes). Good metadata is cached for a few minutes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import trio

from trioserver.services.appservice.registration import Registration
from trioserver.services.appservice.registry import AppServices

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 1 << 20
MAX_RESULTS = 1000  # per appservice and lookup
MAX_INSTANCES = 1000
PROTOCOL_CACHE_S = 300.0

# The field each kind of lookup result must carry (besides `protocol` and `fields`).
KEY_FIELD = {"location": "alias", "user": "userid"}

JsonObject = dict[str, Any]
QueryFields = Sequence[tuple[str, str]]


def instance_id(appservice_id: str, network_id: str) -> str:
    return f"{appservice_id}|{network_id}"


def valid_protocol(appservice_id: str, info: object) -> JsonObject | None:
    """An appservice's protocol metadata with its good instances, each with an `instance_id`;
    None unless it is an object with an `instances` list (Synapse's test too)."""
    if not isinstance(info, dict) or not isinstance(info.get("instances"), list):
        return None
    instances = []
    for instance in info["instances"][:MAX_INSTANCES]:
        if not (isinstance(instance, dict) and isinstance(instance.get("network_id"), str)
                and isinstance(instance.get("desc"), str)
                and isinstance(instance.get("fields", {}), dict)):
            continue
        instances.append({**instance,
                          "instance_id": instance_id(appservice_id, instance["network_id"])})
    return {**info, "instances": instances}


def merge_protocols(infos: Sequence[JsonObject]) -> JsonObject | None:
    """One protocol's metadata from several appservices: the first one's fields (they ought
    to agree) and everyone's instances."""
    if not infos:
        return None
    return {**infos[0], "instances": [i for info in infos for i in info["instances"]]}


def valid_results(kind: str, response: object) -> list[JsonObject]:
    """The well-formed entries of a location or user lookup answer (a JSON list of objects
    with string `alias`/`userid` and `protocol`, and a `fields` object)."""
    if not isinstance(response, list):
        return []
    key = KEY_FIELD[kind]
    return [r for r in response[:MAX_RESULTS]
            if isinstance(r, dict) and isinstance(r.get(key), str)
            and isinstance(r.get("protocol"), str) and isinstance(r.get("fields"), dict)]


class ThirdPartyLookups:
    def __init__(self, appservices: AppServices, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._appservices = appservices
        self._transport = transport
        # (appservice ID, protocol) -> (expiry on trio's clock, validated metadata)
        self._protocol_cache: dict[tuple[str, str], tuple[float, JsonObject]] = {}

    def knows_protocol(self, protocol: str) -> bool:
        return bool(self._appservices.with_protocol(protocol))

    async def _get(self, reg: Registration, path: str, params: QueryFields = ()) -> object:
        """The JSON an appservice answered with 200, or None for any failure."""
        assert reg.url
        try:
            with trio.fail_after(LOOKUP_TIMEOUT_S + 1):
                async with httpx.AsyncClient(timeout=LOOKUP_TIMEOUT_S, transport=self._transport,
                                             follow_redirects=False) as client:
                    body = await _read_capped(client, f"{reg.url}{path}", params,
                                              {"Authorization": f"Bearer {reg.hs_token}"})
        except (httpx.HTTPError, trio.TooSlowError, _Unusable) as e:
            log.info("appservice %s: %s failed: %s", reg.id, path, e)
            return None
        try:
            return json.loads(body)
        except ValueError:
            log.info("appservice %s: %s answered invalid JSON", reg.id, path)
            return None

    async def _protocol_of(self, reg: Registration, protocol: str) -> JsonObject | None:
        key = (reg.id, protocol)
        cached = self._protocol_cache.get(key)
        if cached is not None and cached[0] > trio.current_time():
            return cached[1]
        info = valid_protocol(reg.id, await self._get(
            reg, f"/_matrix/app/v1/thirdparty/protocol/{quote(protocol, safe='')}"))
        if info is not None:  # failures are not cached: ask again next time
            self._protocol_cache[key] = (trio.current_time() + PROTOCOL_CACHE_S, info)
        return info

    async def protocols(self, only: str | None = None) -> dict[str, JsonObject]:
        """GET /thirdparty/protocols (or, with `only`, the one protocol): protocol -> merged
        metadata, for the protocols at least one appservice described."""
        asks = [(reg, p) for reg in self._appservices.all() if reg.url
                for p in reg.protocols if only is None or p == only]
        answers: list[JsonObject | None] = [None] * len(asks)

        async def ask(i: int, reg: Registration, protocol: str) -> None:
            answers[i] = await self._protocol_of(reg, protocol)

        async with trio.open_nursery() as nursery:
            for i, (reg, protocol) in enumerate(asks):
                nursery.start_soon(ask, i, reg, protocol)
        by_protocol: dict[str, list[JsonObject]] = {}
        for (_, protocol), info in zip(asks, answers, strict=True):
            if info is not None:
                by_protocol.setdefault(protocol, []).append(info)
        merged = {p: merge_protocols(infos) for p, infos in by_protocol.items()}
        return {p: info for p, info in merged.items() if info is not None}

    async def _gather(self, regs: Sequence[Registration], kind: str, path: str,
                      params: QueryFields) -> list[JsonObject]:
        answers: list[list[JsonObject]] = [[] for _ in regs]

        async def ask(i: int, reg: Registration) -> None:
            answers[i] = valid_results(kind, await self._get(reg, path, params))

        async with trio.open_nursery() as nursery:
            for i, reg in enumerate(regs):
                nursery.start_soon(ask, i, reg)
        return [r for answer in answers for r in answer]

    async def lookup(self, kind: str, protocol: str, fields: QueryFields) -> list[JsonObject]:
        """GET /thirdparty/{location,user}/{protocol}: every answer of the appservices of the
        protocol, the query's fields passed through."""
        regs = [r for r in self._appservices.with_protocol(protocol) if r.url]
        path = f"/_matrix/app/v1/thirdparty/{kind}/{quote(protocol, safe='')}"
        return await self._gather(regs, kind, path, fields)

    async def reverse_lookup(self, kind: str, value: str) -> list[JsonObject]:
        """GET /thirdparty/location?alias= or /thirdparty/user?userid=: asked of every
        appservice that bridges some protocol (Synapse asks none and always answers [])."""
        regs = [r for r in self._appservices.all() if r.url and r.protocols]
        return await self._gather(regs, kind, f"/_matrix/app/v1/thirdparty/{kind}",
                                  [(KEY_FIELD[kind], value)])


class _Unusable(Exception):
    """An answer that is not a 200 or is too large."""


async def _read_capped(client: httpx.AsyncClient, url: str, params: QueryFields,
                       headers: dict[str, str]) -> bytes:
    async with client.stream("GET", url, params=list(params), headers=headers) as response:
        if response.status_code != 200:
            raise _Unusable(f"status {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise _Unusable("answer too large")
        return bytes(body)


def query_fields(args: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """The client's query string to pass on, without its access token."""
    return [(k, v) for k, values in args.items() if k != "access_token" for v in values]
