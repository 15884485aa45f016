"""Focused tests of the pieces of state resolution: auth chains, the split into conflicted and
unconflicted state, the orderings, the conflicted state subgraph, errors, determinism."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.state_res.loader import FIXTURES, Case, Room, build
from trioserver.services.events import state_res_v2 as v2
from trioserver.services.events.event import Event
from trioserver.services.events.room_versions import ROOM_VERSIONS
from trioserver.services.events.state_res import (
    StateResolutionError,
    auth_chain,
    resolve_state,
)


def room(version: int, events: list[dict[str, Any]], preset: str = "room") -> Room:
    return build(Case("inline", version, {"preset": preset, "events": events}))


def fixture_room(name: str, version: int) -> tuple[Room, dict[str, Any]]:
    spec = json.loads((FIXTURES / f"{name}.json").read_text())
    return build(Case(name, version, spec)), spec


def ids(r: Room, *names: str) -> set[str]:
    return {r.names[n] for n in names}


# --- auth_chain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 11, 12])
def test_auth_chain_follows_auth_events_transitively(version: int) -> None:
    r = room(version, [])
    # IMB cites the create event (not in v12), the power levels and the join rules; those cite
    # Alice's join, which cites the create event (not in v12).
    expected = ids(r, "IPOWER", "IJR", "IMA")
    if version != 12:
        expected |= ids(r, "CREATE")
    assert auth_chain([r.names["IMB"]], r.events) == expected


def test_auth_chain_leaves_out_the_given_events_unless_reached() -> None:
    r = room(11, [])
    got = auth_chain([r.names["IMB"], r.names["IPOWER"], r.names["IMZ"]], r.events)
    assert r.names["IPOWER"] in got  # IMB's auth event
    assert r.names["IMB"] not in got
    assert r.names["IMZ"] not in got
    assert auth_chain([r.names["CREATE"]], r.events) == set()
    assert auth_chain([], r.events) == set()


def test_auth_chain_needs_every_event() -> None:
    r = room(11, [])
    events = dict(r.events)
    del events[r.names["IPOWER"]]
    with pytest.raises(StateResolutionError, match="IPOWER"):
        auth_chain([r.names["IMB"]], events)
    with pytest.raises(StateResolutionError):
        auth_chain(["$nope"], r.events)


def test_auth_chain_terminates_on_a_cycle() -> None:
    r = room(11, [])
    a, b = r.event("IMB"), r.event("IMC")
    events = {
        a.event_id: replace(a, auth_events=(b.event_id,)),
        b.event_id: replace(b, auth_events=(a.event_id,)),
    }
    assert auth_chain([a.event_id], events) == {a.event_id, b.event_id}


# --- resolve_state: trivial inputs, errors, determinism -------------------------------------------


def test_no_state_sets_and_one_state_set() -> None:
    r = room(11, [])
    rv = ROOM_VERSIONS["11"]
    assert resolve_state(rv, [], r.events) == {}
    state = r.state_after["START"]
    got = resolve_state(rv, [state], r.events)
    assert got == state
    assert got is not state


def test_identical_state_sets_need_no_events() -> None:
    r = room(11, [])
    state = r.state_after["START"]
    for version in ("1", "2", "12"):
        assert resolve_state(ROOM_VERSIONS[version], [state, dict(state)], {}) == state


@pytest.mark.parametrize("version", [1, 2, 11, 12])
def test_a_missing_event_is_an_error(version: int) -> None:
    r, spec = fixture_room("ban_vs_power_levels", version)
    state_sets = r.state_sets(spec["resolve"])
    for name in ("PB", "IPOWER"):  # a conflicted event; an event of an auth chain
        if version == 1 and name == "IPOWER":
            continue  # v1 does not walk auth chains
        events = {k: e for k, e in r.events.items() if k != r.names[name]}
        with pytest.raises(StateResolutionError):
            resolve_state(r.room_version, state_sets, events)


def test_v12_needs_the_create_event() -> None:
    r, spec = fixture_room("ban_vs_power_levels", 12)
    events = {k: e for k, e in r.events.items() if k != r.names["CREATE"]}
    with pytest.raises(StateResolutionError, match="CREATE"):
        resolve_state(r.room_version, r.state_sets(spec["resolve"]), events)


@pytest.mark.parametrize(
    "name", ["topic_reset", "msc4297_problem_b_conflicted_subgraph", "three_way_topics"]
)
@pytest.mark.parametrize("version", [1, 10, 12])
def test_shuffled_inputs_give_the_same_result(name: str, version: int) -> None:
    if name.startswith("msc4297") and version == 1:
        return
    r, spec = fixture_room(name, version)
    state_sets = r.state_sets(spec["resolve"])
    first = resolve_state(r.room_version, state_sets, r.events)
    rng = random.Random(version)
    for _ in range(20):
        items = list(r.events.items())
        rng.shuffle(items)
        sets = [dict(rng.sample(list(s.items()), len(s))) for s in state_sets]
        rng.shuffle(sets)
        assert resolve_state(r.room_version, sets, dict(items)) == first


# --- the pieces of v2 ---------------------------------------------------------------------------


def test_a_key_missing_from_one_state_set_is_conflicted() -> None:
    a = {("m.room.topic", ""): "$T", ("m.room.name", ""): "$N"}
    b = {("m.room.topic", ""): "$T"}
    c = {("m.room.topic", ""): "$T", ("m.room.name", ""): "$N2"}
    assert v2.separate([a, b]) == ({("m.room.topic", ""): "$T"}, {("m.room.name", ""): {"$N"}})
    assert v2.separate([a, c])[1] == {("m.room.name", ""): {"$N", "$N2"}}
    assert v2.separate([a, a]) == (a, {})


def test_power_events() -> None:
    r = room(11, [
        {"id": "KB", "type": "m.room.member", "state_key": "bob", "sender": "alice",
         "content": {"membership": "leave"}},
        {"id": "BAN", "type": "m.room.member", "state_key": "bob", "sender": "alice",
         "content": {"membership": "ban"}},
        {"id": "T", "type": "m.room.topic", "state_key": "", "sender": "alice"},
        {"id": "LC", "type": "m.room.member", "state_key": "charlie", "sender": "charlie",
         "content": {"membership": "leave"}},
    ])
    power = {n for n in r.names if v2.is_power_event(r.event(n))}
    assert power == {"IPOWER", "IJR", "KB", "BAN"}  # not the create event, joins, self-leaves


def test_power_ordering_follows_auth_chains_not_only_direct_auth_events() -> None:
    # Bob's PB is in the auth chain of Alice's topic T only through Alice's later PA2 (which is
    # not being sorted): PB must still come first, although Alice has more power.
    r = room(11, [
        {"id": "PA1", "type": "m.room.power_levels", "state_key": "", "sender": "alice",
         "content": {"users": {"@alice:example.com": 100, "@bob:example.com": 50}}},
        {"id": "PB", "type": "m.room.power_levels", "state_key": "", "sender": "bob",
         "content": {"users": {"@alice:example.com": 100, "@bob:example.com": 50,
                               "@charlie:example.com": 10}}},
        {"id": "PA2", "type": "m.room.power_levels", "state_key": "", "sender": "alice",
         "content": {"users": {"@alice:example.com": 100, "@bob:example.com": 50}}},
        {"id": "T", "type": "m.room.topic", "state_key": "", "sender": "alice"},
    ])
    assert r.names["PB"] not in r.event("T").auth_events
    got = v2.reverse_topological_power_order(ids(r, "T", "PB"), r.events)
    assert got == [r.names["PB"], r.names["T"]]
    # Otherwise the greater power level first, then the earlier timestamp (IMB is in T's auth
    # chain, through PB; IMC and IMZ are not).
    got = v2.reverse_topological_power_order(ids(r, "IMZ", "IMC", "IMB", "T"), r.events)
    assert got == [r.names[n] for n in ("IMB", "T", "IMC", "IMZ")]


def test_sender_power_level_comes_from_the_auth_events() -> None:
    r = room(11, [
        {"id": "PA1", "type": "m.room.power_levels", "state_key": "", "sender": "alice",
         "content": {"users": {"@alice:example.com": 100, "@bob:example.com": 50}}},
        {"id": "TB", "type": "m.room.topic", "state_key": "", "sender": "bob"},
    ])
    assert v2.sender_power_level(r.event("TB"), r.events) == 50
    assert v2.sender_power_level(r.event("IMB"), r.events) == 0  # cites IPOWER
    assert v2.sender_power_level(r.event("IMA"), r.events) == 100  # creator, no power levels
    r12 = room(12, [])
    assert v2.sender_power_level(r12.event("IJR"), r12.events) == float("inf")


def test_mainline_order() -> None:
    r, _ = fixture_room("topic_basic", 11)
    # Mainline of PA2: PA2, PA1, IPOWER. IMA cites no power levels (position infinity); T1
    # rests on IPOWER (2); T2 on PA1 (1); T3 on PB, whose power levels is PA1 (1).
    got = v2.mainline_order(ids(r, "T3", "T2", "T1", "IMA"), r.names["PA2"], r.events)
    assert got == [r.names[n] for n in ("IMA", "T1", "T2", "T3")]
    # Without a power levels event, everything ties: by timestamp.
    got = v2.mainline_order(ids(r, "T3", "T1", "T2"), None, r.events)
    assert got == [r.names[n] for n in ("T1", "T2", "T3")]


def test_mainline_order_breaks_timestamp_ties_by_event_id() -> None:
    r = room(11, [
        {"id": "TB", "type": "m.room.topic", "state_key": "", "sender": "alice", "ts": 5},
        {"id": "TA", "type": "m.room.topic", "state_key": "", "sender": "alice", "ts": 5,
         "prev": ["START"]},
    ])
    got = v2.mainline_order(ids(r, "TB", "TA"), r.names["IPOWER"], r.events)
    assert got == [r.names["TA"], r.names["TB"]]


def test_conflicted_state_subgraph() -> None:
    r, _ = fixture_room("msc4297_problem_b_conflicted_subgraph", 12)
    conflicted = ids(r, "PL00", "PL02", "E2", "ZJ")
    got = v2.conflicted_subgraph(conflicted, r.events)
    # On paths from PL02, ZJ and E2 down to PL00 (endpoints included)...
    assert ids(r, "PL00", "PL01", "PL02", "BJ", "JR", "EJ", "E2", "ZJ") <= got
    # ...but not what no path between two conflicted events passes through.
    assert not ids(r, "CREATE", "AJ", "CJ") & got


def test_conflicted_state_subgraph_of_unrelated_events_is_empty() -> None:
    r = room(12, [
        {"id": "TA", "type": "m.room.topic", "state_key": "", "sender": "alice"},
        {"id": "TB", "type": "m.room.topic", "state_key": "", "sender": "alice",
         "prev": ["START"]},
    ])
    assert v2.conflicted_subgraph(ids(r, "TA", "TB"), r.events) == set()


def test_iterative_auth_checks_fall_back_to_the_auth_events() -> None:
    r = room(11, [
        {"id": "TB", "type": "m.room.topic", "state_key": "", "sender": "alice"},
    ])
    topic = r.event("TB")
    # From an empty state: every key the topic needs comes from its own auth events.
    assert v2.iterative_auth_checks([topic.event_id], {}, r.events) == {
        topic.state_tuple: topic.event_id
    }
    # A state in which Alice has left wins over her join among the auth events.
    leave = room(11, [
        {"id": "AL", "type": "m.room.member", "state_key": "alice", "sender": "alice",
         "content": {"membership": "leave"}},
    ])
    events: dict[str, Event] = {**r.events, **{leave.names["AL"]: leave.event("AL")}}
    state = {leave.event("AL").state_tuple: leave.names["AL"]}
    assert v2.iterative_auth_checks([topic.event_id], state, events) == state
