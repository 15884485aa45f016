"""KeyRing: fetch, verify, cache in memory and in the database, expiry, old keys, notaries."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.unit.federation.conftest import DAY, NOW, Clock, FakeFetchClient, RemoteServer
from trioserver.services.events.signing import SigningKey, sign_json
from trioserver.services.federation.errors import FederationAuthError
from trioserver.services.federation.keys import REFETCH_INTERVAL_MS, KeyRing, OldVerifyKey
from trioserver.storage.db import Database
from trioserver.storage.repositories import server_keys as repo

US = "us.example"
REMOTE = "remote.example"
NOTARY = "notary.example"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fetch(clock: Clock) -> FakeFetchClient:
    return FakeFetchClient(clock)


def make_ring(db: Database, fetch: FakeFetchClient | None, clock: Clock, *,
              notaries: tuple[str, ...] = (), key: SigningKey | None = None,
              old: list[OldVerifyKey] | None = None) -> KeyRing:
    return KeyRing(server_name=US, signing_key=key or SigningKey.generate(), old_keys=old or [],
                   db=db, client=fetch, trusted_key_servers=notaries, clock=clock)


def gets(fetch: FakeFetchClient, server: str = REMOTE) -> int:
    return sum(1 for m, d, _ in fetch.calls if m == "GET" and d == server)


async def test_fetches_once_then_serves_from_memory(db: Database, fetch: FakeFetchClient,
                                                    clock: Clock) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    ring = make_ring(db, fetch, clock)
    found = await ring.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW)
    assert found == {remote.key.key_id: remote.key.verify_key_bytes}
    again = await ring.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW)
    assert again == found
    assert gets(fetch) == 1


async def test_keys_survive_a_restart_in_the_database(db: Database, fetch: FakeFetchClient,
                                                      clock: Clock) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    await make_ring(db, fetch, clock).verify_keys(REMOTE, [remote.key.key_id],
                                                  minimum_valid_until_ts=NOW)
    fetch.down.add(REMOTE)
    fresh = make_ring(db, fetch, clock)
    found = await fresh.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW)
    assert found == {remote.key.key_id: remote.key.verify_key_bytes}
    assert gets(fetch) == 1
    rows = await db.read(lambda c: repo.keys_of(c, REMOTE))
    assert [r.key_id for r in rows] == [remote.key.key_id]
    stored = await db.read(lambda c: repo.response_of(c, REMOTE))
    assert stored is not None
    assert stored.response["server_name"] == REMOTE


async def test_expiry_refetches_and_honours_minimum(db: Database, fetch: FakeFetchClient,
                                                    clock: Clock) -> None:
    remote = fetch.add(RemoteServer(REMOTE, valid_for=DAY))
    ring = make_ring(db, fetch, clock)
    kid = remote.key.key_id
    assert await ring.verify_keys(REMOTE, [kid], minimum_valid_until_ts=NOW + DAY)
    # Valid until NOW + DAY only: asking for longer refetches (and still falls short), but
    # not again within the refetch interval.
    assert await ring.verify_keys(REMOTE, [kid], minimum_valid_until_ts=NOW + 2 * DAY) == {}
    assert gets(fetch) == 1
    clock.now += REFETCH_INTERVAL_MS
    assert await ring.verify_keys(REMOTE, [kid], minimum_valid_until_ts=NOW + 2 * DAY) == {}
    assert gets(fetch) == 2
    # The next day the server publishes a later valid_until_ts: the key is valid again.
    clock.now += DAY + 1
    assert kid in await ring.verify_keys(REMOTE, [kid], minimum_valid_until_ts=clock.now)
    assert gets(fetch) == 3


async def test_seven_day_cap_on_long_validity(db: Database, fetch: FakeFetchClient,
                                              clock: Clock) -> None:
    remote = fetch.add(RemoteServer(REMOTE, valid_for=365 * DAY))
    ring = make_ring(db, fetch, clock)
    kid = remote.key.key_id
    assert await ring.verify_keys(REMOTE, [kid], minimum_valid_until_ts=NOW + 7 * DAY)
    fetch.down.add(REMOTE)
    clock.now += REFETCH_INTERVAL_MS
    assert await ring.verify_keys(REMOTE, [kid], minimum_valid_until_ts=NOW + 8 * DAY) == {}


async def test_old_verify_keys_verify_old_signatures_only(db: Database, fetch: FakeFetchClient,
                                                          clock: Clock) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    retired = remote.rotate(NOW - 1000)
    ring = make_ring(db, fetch, clock)
    event = sign_json({"type": "m.room.message", "origin_server_ts": NOW - 5000}, REMOTE,
                      retired)
    await ring.verify_json(REMOTE, event, minimum_valid_until_ts=NOW - 5000)
    with pytest.raises(FederationAuthError, match="no valid key"):
        await ring.verify_json(REMOTE, event, minimum_valid_until_ts=NOW)
    # A stale copy listing the retired key as current does not revive it.
    clock.now += REFETCH_INTERVAL_MS
    fetch.raw_answers[REMOTE] = RemoteServer(REMOTE, key=retired).response(clock.now)
    assert await ring.verify_keys(REMOTE, [retired.key_id], minimum_valid_until_ts=NOW) == {}


async def test_verify_json_refuses_bad_and_missing_signatures(
    db: Database, fetch: FakeFetchClient, clock: Clock
) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    ring = make_ring(db, fetch, clock)
    signed = sign_json({"a": 1}, REMOTE, remote.key)
    await ring.verify_json(REMOTE, signed)
    with pytest.raises(FederationAuthError, match="bad signature"):
        await ring.verify_json(REMOTE, {**signed, "a": 2})
    with pytest.raises(FederationAuthError, match="not signed"):
        await ring.verify_json(REMOTE, {"a": 1})
    with pytest.raises(FederationAuthError, match=r"not signed by other\.example"):
        await ring.verify_json("other.example", signed)


async def test_mis_signed_response_is_never_cached(db: Database, fetch: FakeFetchClient,
                                                   clock: Clock) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    forged = remote.response(NOW)
    forged["verify_keys"][remote.key.key_id]["key"] = SigningKey.generate().public_key_b64
    fetch.raw_answers[REMOTE] = forged
    ring = make_ring(db, fetch, clock)
    assert await ring.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW) == {}
    unsigned: dict[str, Any] = {k: v for k, v in remote.response(NOW).items()
                                if k != "signatures"}
    fetch.raw_answers[REMOTE] = unsigned
    clock.now += REFETCH_INTERVAL_MS
    assert await ring.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW) == {}
    assert await db.read(lambda c: repo.keys_of(c, REMOTE)) == []
    assert await db.read(lambda c: repo.response_of(c, REMOTE)) is None


async def test_refetch_is_throttled(db: Database, fetch: FakeFetchClient, clock: Clock) -> None:
    fetch.add(RemoteServer(REMOTE))
    ring = make_ring(db, fetch, clock)
    for _ in range(5):
        assert await ring.verify_keys(REMOTE, ["ed25519:nope"], minimum_valid_until_ts=NOW) == {}
    assert gets(fetch) == 1
    clock.now += REFETCH_INTERVAL_MS
    await ring.verify_keys(REMOTE, ["ed25519:nope"], minimum_valid_until_ts=NOW)
    assert gets(fetch) == 2


async def test_falls_back_to_a_notary_whose_signature_is_checked(
    db: Database, fetch: FakeFetchClient, clock: Clock
) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    fetch.add(RemoteServer(NOTARY))
    fetch.down.add(REMOTE)
    ring = make_ring(db, fetch, clock, notaries=(NOTARY,))
    found = await ring.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW)
    assert found == {remote.key.key_id: remote.key.verify_key_bytes}
    assert ("POST", NOTARY, "/_matrix/key/v2/query") in fetch.calls
    # The notary's own key came straight from the notary.
    assert ("GET", NOTARY, "/_matrix/key/v2/server") in fetch.calls


async def test_notary_answer_signed_by_someone_else_is_refused(
    db: Database, fetch: FakeFetchClient, clock: Clock
) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    notary = fetch.add(RemoteServer(NOTARY))
    fetch.down.add(REMOTE)
    # The notary signs its answers with a key it does not publish.
    notary.key, published = SigningKey.generate(), notary.key
    fetch.raw_answers[NOTARY] = RemoteServer(NOTARY, key=published).response(NOW)
    ring = make_ring(db, fetch, clock, notaries=(NOTARY,))
    assert await ring.verify_keys(REMOTE, [remote.key.key_id], minimum_valid_until_ts=NOW) == {}
    assert await db.read(lambda c: repo.keys_of(c, REMOTE)) == []


async def test_own_keys_need_no_fetch(db: Database, fetch: FakeFetchClient,
                                      clock: Clock) -> None:
    key = SigningKey.generate()
    old = SigningKey.generate()
    ring = make_ring(db, fetch, clock, key=key,
                     old=[OldVerifyKey(old.key_id, old.verify_key_bytes, NOW - 10),
                          OldVerifyKey(key.key_id, key.verify_key_bytes, NOW - 10)])
    assert await ring.verify_keys(US, [key.key_id, old.key_id],
                                  minimum_valid_until_ts=NOW - 20) == {
        key.key_id: key.verify_key_bytes, old.key_id: old.verify_key_bytes}
    assert await ring.verify_keys(US, [key.key_id, old.key_id],
                                  minimum_valid_until_ts=NOW) == {key.key_id: key.verify_key_bytes}
    await ring.verify_json(US, sign_json({"x": 1}, US, old), minimum_valid_until_ts=NOW - 20)
    # The current key listed as old (a rotation interrupted half-way) stays current.
    response = ring.own_key_response()
    assert set(response["verify_keys"]) == {key.key_id}
    assert set(response["old_verify_keys"]) == {old.key_id}
    assert fetch.calls == []


async def test_own_response_is_resigned_hourly(db: Database, clock: Clock) -> None:
    ring = make_ring(db, None, clock)
    first = ring.own_key_response()
    assert first["valid_until_ts"] == NOW + 7 * DAY
    clock.now += 1000
    assert ring.own_key_response() is first
    clock.now += 3600 * 1000
    assert ring.own_key_response()["valid_until_ts"] == clock.now + 7 * DAY


async def test_without_a_client_nothing_is_fetched(db: Database, clock: Clock) -> None:
    ring = make_ring(db, None, clock)
    assert await ring.verify_keys(REMOTE, ["ed25519:a"], minimum_valid_until_ts=0) == {}


async def test_notary_query_serves_cosigned_and_cached_responses(
    db: Database, fetch: FakeFetchClient, clock: Clock
) -> None:
    remote = fetch.add(RemoteServer(REMOTE))
    key = SigningKey.generate()
    ring = make_ring(db, fetch, clock, key=key)
    [answer] = await ring.notary_query(REMOTE)
    assert set(answer["signatures"]) == {REMOTE, US}
    await ring.verify_json(US, answer)
    await ring.verify_json(REMOTE, answer)
    # Within half its lifetime the stored answer is served without asking again.
    clock.now += DAY
    await ring.notary_query(REMOTE)
    assert gets(fetch) == 1
    # Past half its lifetime it is refetched; if the server is down, the old one is served.
    clock.now += 3 * DAY
    fetch.down.add(REMOTE)
    [stale] = await ring.notary_query(REMOTE)
    assert gets(fetch) == 2
    assert stale["verify_keys"] == answer["verify_keys"]
    # A minimum later than what is stored triggers a fetch too (throttled per minute).
    fetch.down.clear()
    clock.now += REFETCH_INTERVAL_MS
    [fresh] = await ring.notary_query(REMOTE, minimum_valid_until_ts=clock.now + 6 * DAY)
    assert fresh["valid_until_ts"] == clock.now + 7 * DAY
    assert remote.key.key_id in fresh["verify_keys"]
    assert await ring.notary_query("unknown.example") == []
    [own] = await ring.notary_query(US)
    assert own == ring.own_key_response()


async def test_notaries_vouching_for_each_other_do_not_deadlock(
    db: Database, fetch: FakeFetchClient, clock: Clock
) -> None:
    fetch.add(RemoteServer(NOTARY))
    fetch.add(RemoteServer("notary2.example"))
    # Each notary's own key endpoint is broken, its query endpoint works: checking either's
    # answer needs the other's keys while the other looks up this one's.
    fetch.raw_answers[NOTARY] = fetch.raw_answers["notary2.example"] = {}
    ring = make_ring(db, fetch, clock, notaries=(NOTARY, "notary2.example"))
    results: list[dict[str, bytes]] = []

    async def ask(server: str) -> None:
        results.append(await ring.verify_keys(server, ["ed25519:unknown"],
                                              minimum_valid_until_ts=NOW))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, NOTARY)
            nursery.start_soon(ask, "notary2.example")
    assert results == [{}, {}]
