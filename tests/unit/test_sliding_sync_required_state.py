"""required_state rules: matching, combining room configs, expansion, lazy members (MSC4186)."""

from __future__ import annotations

import itertools
import random

import pytest

from trioserver.services.sliding_sync.model import RequiredState, RoomConfig, StatePattern
from trioserver.services.sliding_sync.request import parse_v4
from trioserver.services.sliding_sync.required_state import (
    CombinedRequiredState,
    combine,
    combine_required_state,
    is_empty,
    matches,
    newly_matching,
    select,
    types_wanted,
    wants_all_members,
)

ME = "@me:x"
MEMBER = "m.room.member"
ALL = StatePattern()


def rs(*include: StatePattern, exclude: tuple[StatePattern, ...] = (),
       lazy: bool = False) -> RequiredState:
    return RequiredState(frozenset(include), frozenset(exclude), lazy)


def P(event_type: str | None = None, state_key: str | None = None) -> StatePattern:
    return StatePattern(event_type, state_key)


ROOM_STATE = [
    ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.name", ""),
    ("m.room.topic", ""), ("m.room.encryption", ""), ("m.space.child", "!a:x"),
    ("m.space.child", "!b:x"), (MEMBER, ME), (MEMBER, "@bob:x"), (MEMBER, "@carol:x"),
    ("org.example", "@bob:x"),
]


def from_v4(required_state: object) -> RequiredState:
    body = {"lists": {"l": {"timeline_limit": 1, "required_state": required_state}}}
    return parse_v4(body, ME).lists["l"].config.required_state


# --- matching: the MSC examples ----------------------------------------------------------------


def test_msc_example_create_and_power_levels() -> None:
    r = from_v4({"include": [{"type": "m.room.create", "state_key": ""},
                             {"type": "m.room.power_levels", "state_key": ""}]})
    assert select(r, ROOM_STATE) == {("m.room.create", ""), ("m.room.power_levels", "")}


def test_msc_example_all_state_except_create() -> None:
    r = from_v4({"include": [{}], "exclude": [{"type": "m.room.create", "state_key": ""}]})
    assert select(r, ROOM_STATE) == set(ROOM_STATE) - {("m.room.create", "")}


def test_msc_example_lazy_members_all_other_state() -> None:
    r = from_v4({"include": [{}], "lazy_members": True})
    assert select(r, ROOM_STATE) == {k for k in ROOM_STATE if k[0] != MEMBER}


def test_msc_example_lazy_members_plus_named_user() -> None:
    r = from_v4({"include": [{}, {"type": MEMBER, "state_key": "@bob:x"}], "lazy_members": True})
    assert select(r, ROOM_STATE) == {k for k in ROOM_STATE if k[0] != MEMBER} | {(MEMBER, "@bob:x")}


def test_own_membership_with_me() -> None:
    r = from_v4({"include": [{"type": MEMBER, "state_key": "$ME"}], "lazy_members": True})
    assert select(r, ROOM_STATE) == {(MEMBER, ME)}


def test_nothing_requested() -> None:
    assert select(RequiredState(), ROOM_STATE) == set()
    assert select(from_v4({}), ROOM_STATE) == set()
    assert select(from_v4({"exclude": [{}]}), ROOM_STATE) == set()


def test_wildcards() -> None:
    assert select(rs(P("m.space.child")), ROOM_STATE) == {("m.space.child", "!a:x"),
                                                         ("m.space.child", "!b:x")}
    # A state key for every type.
    assert select(rs(P(None, "@bob:x")), ROOM_STATE) == {(MEMBER, "@bob:x"),
                                                        ("org.example", "@bob:x")}
    assert select(rs(ALL), ROOM_STATE) == set(ROOM_STATE)


def test_exclude_wins_over_include() -> None:
    r = rs(ALL, exclude=(P(MEMBER), P(None, "!a:x")))
    assert select(r, ROOM_STATE) == {k for k in ROOM_STATE if k[0] != MEMBER} - {
        ("m.space.child", "!a:x")}
    assert not matches(rs(P("m.room.name", "")), "m.room.name", "x")
    assert not matches(rs(P("m.room.name", ""), exclude=(ALL,)), "m.room.name", "")


def test_lazy_only_hides_member_wildcards() -> None:
    r = rs(P(MEMBER), P(None, "@carol:x"), P("org.example"), lazy=True)
    assert select(r, ROOM_STATE) == {(MEMBER, "@carol:x"), ("org.example", "@bob:x")}


# --- combining ---------------------------------------------------------------------------------


def test_combine_single_and_empty() -> None:
    config = RoomConfig(5, rs(P("m.room.name", "")))
    assert combine([config]) is config
    assert combine([config, config]) == config
    with pytest.raises(ValueError, match="at least one"):
        combine([])


def test_combine_timeline_limit_is_max() -> None:
    configs = [RoomConfig(1, RequiredState()), RoomConfig(20, RequiredState()),
               RoomConfig(0, RequiredState())]
    assert combine(configs).timeline_limit == 20


def test_combine_includes_union() -> None:
    a = RoomConfig(1, rs(P("m.room.name", "")))
    b = RoomConfig(1, rs(P("m.room.topic", ""), P("m.space.child")))
    combined = combine([a, b]).required_state
    assert combined == rs(P("m.room.name", ""), P("m.room.topic", ""), P("m.space.child"))
    assert type(combined) is RequiredState


def test_excluded_by_one_included_by_other_is_returned() -> None:
    a = rs(ALL, exclude=(P("m.room.create", ""),))
    b = rs(P("m.room.create", ""))
    combined = combine_required_state([a, b])
    assert select(combined, ROOM_STATE) == set(ROOM_STATE)


def test_union_needing_parts() -> None:
    # A: everything but members; B: Bob's membership. No single include/exclude pair says it.
    a = rs(ALL, exclude=(P(MEMBER),))
    b = rs(P(MEMBER, "@bob:x"))
    combined = combine_required_state([a, b])
    assert isinstance(combined, CombinedRequiredState)
    assert select(combined, ROOM_STATE) == (
        {k for k in ROOM_STATE if k[0] != MEMBER} | {(MEMBER, "@bob:x")})
    assert combined.lazy_members is False
    # Order and repetition do not matter, and nested combinations flatten.
    assert combine_required_state([b, a, b]) == combined
    assert combine_required_state([combined, a]) == combined
    assert combined != rs(*combined.include)


def test_shared_exclude_stays_plain() -> None:
    ex = (P("m.room.create", ""),)
    combined = combine_required_state([rs(P("m.room.name"), exclude=ex),
                                       rs(P("m.room.create"), P("m.room.topic"), exclude=ex)])
    assert combined == rs(P("m.room.name"), P("m.room.create"), P("m.room.topic"), exclude=ex)


def test_empty_configs_add_nothing() -> None:
    a = rs(ALL, exclude=(P(MEMBER),))
    assert combine_required_state([a, RequiredState(), rs(exclude=(ALL,))]) == a
    assert combine_required_state([RequiredState(), RequiredState()]) == RequiredState()


# --- lazy members when combining (MSC4186 "Combining room configs") -----------------------------


def test_lazy_kept_when_no_config_wants_all_members() -> None:
    combined = combine_required_state([rs(ALL, lazy=True), rs(P(MEMBER, ME), P("m.room.name"))])
    assert combined.lazy_members is True
    assert select(combined, ROOM_STATE) == {k for k in ROOM_STATE if k[0] != MEMBER} | {
        (MEMBER, ME)}


@pytest.mark.parametrize("everyone", [P(MEMBER), ALL])
def test_lazy_dropped_when_a_config_returns_all_members(everyone: StatePattern) -> None:
    combined = combine_required_state([rs(P("m.room.name", ""), lazy=True), rs(everyone)])
    assert combined.lazy_members is False
    assert {(MEMBER, "@bob:x"), (MEMBER, "@carol:x")} <= select(combined, ROOM_STATE)


def test_lazy_kept_when_the_other_config_excludes_a_member() -> None:
    # B returns every member but Carol: not "all members", so Carol may still come lazily.
    combined = combine_required_state([rs(ALL, lazy=True),
                                       rs(P(MEMBER), exclude=(P(MEMBER, "@carol:x"),))])
    assert combined.lazy_members is True
    assert matches(combined, MEMBER, "@bob:x")
    assert not matches(combined, MEMBER, "@carol:x")
    assert matches(combined, "m.room.name", "")


def test_lazy_from_both() -> None:
    combined = combine_required_state([rs(P("m.room.name", ""), lazy=True),
                                       rs(P("m.room.topic", ""), lazy=True)])
    assert combined == rs(P("m.room.name", ""), P("m.room.topic", ""), lazy=True)


def test_wants_all_members() -> None:
    assert wants_all_members(rs(ALL))
    assert wants_all_members(rs(P(MEMBER), exclude=(P("m.room.name"),)))
    assert not wants_all_members(rs(ALL, lazy=True))
    assert not wants_all_members(rs(P(MEMBER, ME)))
    assert not wants_all_members(rs(P(MEMBER), exclude=(P(MEMBER, "@bob:x"),)))
    assert not wants_all_members(rs(ALL, exclude=(P(None, "@bob:x"),)))
    assert not wants_all_members(RequiredState())
    assert wants_all_members(combine_required_state(
        [rs(ALL, exclude=(P("m.room.create", ""),)), rs(P(MEMBER), exclude=(P("x"),))]))


# --- expansion (MSC4186 "Changes to required_state") --------------------------------------------


def test_newly_matching() -> None:
    old = rs(P("m.room.name", ""))
    new = rs(P("m.room.name", ""), P("m.room.topic", ""), P("m.space.child"))
    assert newly_matching(old, new, ROOM_STATE) == {
        ("m.room.topic", ""), ("m.space.child", "!a:x"), ("m.space.child", "!b:x")}
    assert newly_matching(new, old, ROOM_STATE) == set()  # shrinking sends nothing
    assert newly_matching(old, old, ROOM_STATE) == set()


def test_newly_matching_lazy_to_all_members() -> None:
    old = rs(ALL, P(MEMBER, ME), lazy=True)
    new = rs(ALL)
    assert newly_matching(old, new, ROOM_STATE) == {(MEMBER, "@bob:x"), (MEMBER, "@carol:x")}


def test_newly_matching_exclusion_lifted() -> None:
    old = rs(ALL, exclude=(P("m.room.create", ""),))
    assert newly_matching(old, rs(ALL), ROOM_STATE) == {("m.room.create", "")}


# --- helpers for the engine --------------------------------------------------------------------


def test_is_empty() -> None:
    assert is_empty(RequiredState())
    assert is_empty(rs(exclude=(ALL,)))
    assert not is_empty(rs(lazy=True))
    assert not is_empty(rs(P("m.room.name", "")))


def test_types_wanted() -> None:
    assert types_wanted(rs(P("m.room.name", ""), P("m.space.child"))) == frozenset(
        {"m.room.name", "m.space.child"})
    assert types_wanted(rs(P("m.room.name", ""), lazy=True)) == frozenset({"m.room.name", MEMBER})
    assert types_wanted(rs(P(None, "@bob:x"))) is None
    assert types_wanted(RequiredState()) == frozenset()
    combined = combine_required_state([rs(ALL, exclude=(P(MEMBER),)), rs(P(MEMBER, "@bob:x"))])
    assert types_wanted(combined) is None


# --- the union, checked exhaustively ----------------------------------------------------------

_TYPES = [None, MEMBER, "m.room.name"]
_KEYS = [None, "", "@bob:x"]
_PATTERNS = [StatePattern(t, k) for t, k in itertools.product(_TYPES, _KEYS)]
_PROBE = [(t, k) for t in (MEMBER, "m.room.name", "other") for k in ("", "@bob:x", "@carol:x")]


def _random_rs(rng: random.Random) -> RequiredState:
    return RequiredState(
        frozenset(rng.sample(_PATTERNS, rng.randint(0, 3))),
        frozenset(rng.sample(_PATTERNS, rng.choice([0, 0, 1, 2]))),
        rng.random() < 0.4,
    )


@pytest.mark.parametrize("seed", range(10))
def test_combine_is_the_union(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        parts = [_random_rs(rng) for _ in range(rng.randint(1, 4))]
        combined = combine_required_state(parts)
        for key in _PROBE:
            assert matches(combined, *key) == any(matches(p, *key) for p in parts), (parts, key)
        assert combined.lazy_members == (
            any(p.lazy_members for p in parts) and not any(wants_all_members(p) for p in parts))
        assert wants_all_members(combined) == any(wants_all_members(p) for p in parts)
        assert combine_required_state(reversed(parts)) == combined
