"""The authorisation rules, table-driven from fixtures/*.json (see loader.py), plus focused tests
of the auth events selection and the power level helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest

from tests.unit.auth_rules.loader import Built, Case, build, load_cases, resolve_expect
from trioserver.services.events.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth_events,
    check_event,
    membership_of,
    power_level,
    required_level,
)
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.power_levels import CREATE_KEY, parse_level
from trioserver.services.events.room_versions import ROOM_VERSIONS

CASES = list(load_cases())


def outcome(check: Callable[[], object]) -> str:
    try:
        check()
    except AuthError as e:
        return e.rule
    return "allow"


def via_state(built: Built, state: Mapping[StateKey, Event], create: Event | None) -> str:
    return outcome(
        lambda: check_event(built.event, state, create, verify_server_signature=built.verify)
    )


def via_auth_events(built: Built) -> str:
    """check_auth_events on the event's auth_events, then check_event on what it returns."""
    create = built.create if built.room_version.room_id_is_create_hash else None

    def check() -> None:
        auth_state = check_auth_events(
            built.event, built.all_events, rejected=built.rejected, create_event=create
        )
        check_event(built.event, auth_state, create, verify_server_signature=built.verify)

    return outcome(check)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture(case: Case) -> None:
    built = build(case)
    spec = case.spec
    if "auth_events" in spec or "rejected" in spec:
        # About the auth_events list itself: only the received-event path applies.
        assert via_auth_events(built) == case.expect
        return
    state = dict(built.state)
    if spec.get("omit_create"):
        del state[CREATE_KEY]
        assert via_state(built, state, None) == case.expect
        return
    # As a locally created event: against the current state (create looked up there).
    assert via_state(built, state, None) == case.expect
    # The create event passed separately (v12 auth state never holds it).
    without_create = {k: e for k, e in state.items() if k != CREATE_KEY}
    assert via_state(built, without_create, built.create) == case.expect
    # As a received event: its auth events (chosen by the selection algorithm) are enough.
    assert via_auth_events(built) == case.expect


def test_every_version_has_cases_and_rejections() -> None:
    for version in range(1, 13):
        outcomes = {c.expect for c in CASES if c.version == version}
        assert "allow" in outcomes
        assert len(outcomes) > 40, (version, sorted(outcomes))


def test_resolve_expect_needs_full_coverage() -> None:
    assert resolve_expect({"1-5": "5.1", "6-11": "4.1", "12": "5.1"}, 7) == "4.1"
    with pytest.raises(AssertionError):
        resolve_expect({"1-5": "5.1"}, 7)


# --- auth events selection ----------------------------------------------------------------------

V = ROOM_VERSIONS
ALICE, BOB, MOD = "@alice:a.example", "@bob:b.example", "@mod:a.example"
PL, JR = ("m.room.power_levels", ""), ("m.room.join_rules", "")


def member(user: str) -> StateKey:
    return ("m.room.member", user)


def test_selection_for_create_is_empty() -> None:
    for rv in V.values():
        assert auth_types_for_event("m.room.create", "", ALICE, {}, rv) == []


def test_selection_for_a_message() -> None:
    for version in ("1", "6", "10", "11"):
        got = auth_types_for_event("m.room.message", None, BOB, {"body": "hi"}, V[version])
        assert got == [CREATE_KEY, PL, member(BOB)]
    # v12: the create event MUST NOT be selected.
    got = auth_types_for_event("m.room.message", None, BOB, {"body": "hi"}, V["12"])
    assert got == [PL, member(BOB)]


def test_selection_for_memberships() -> None:
    rv = V["11"]
    join = auth_types_for_event("m.room.member", BOB, BOB, {"membership": "join"}, rv)
    assert join == [CREATE_KEY, PL, member(BOB), JR]  # sender == target: listed once
    invite = auth_types_for_event("m.room.member", BOB, ALICE, {"membership": "invite"}, rv)
    assert invite == [CREATE_KEY, PL, member(ALICE), member(BOB), JR]
    knock = auth_types_for_event("m.room.member", BOB, BOB, {"membership": "knock"}, rv)
    assert knock == [CREATE_KEY, PL, member(BOB), JR]
    for membership in ("leave", "ban"):
        got = auth_types_for_event("m.room.member", BOB, ALICE, {"membership": membership}, rv)
        assert got == [CREATE_KEY, PL, member(ALICE), member(BOB)]


def test_selection_for_third_party_invites() -> None:
    content = {
        "membership": "invite",
        "third_party_invite": {"signed": {"mxid": BOB, "token": "tok"}},
    }
    got = auth_types_for_event("m.room.member", BOB, ALICE, content, V["1"])
    assert got[-1] == ("m.room.third_party_invite", "tok")
    # No usable token: nothing extra.
    content["third_party_invite"] = {"signed": {"mxid": BOB}}
    got = auth_types_for_event("m.room.member", BOB, ALICE, content, V["1"])
    assert got == [CREATE_KEY, PL, member(ALICE), member(BOB), JR]


def test_selection_for_restricted_joins_from_v8() -> None:
    content = {"membership": "join", "join_authorised_via_users_server": MOD}
    for version in ("1", "7"):
        got = auth_types_for_event("m.room.member", BOB, BOB, content, V[version])
        assert member(MOD) not in got
    for version in ("8", "9", "10", "11"):
        got = auth_types_for_event("m.room.member", BOB, BOB, content, V[version])
        assert got == [CREATE_KEY, PL, member(BOB), JR, member(MOD)]
    got = auth_types_for_event("m.room.member", BOB, BOB, content, V["12"])
    assert got == [PL, member(BOB), JR, member(MOD)]
    # Only for joins.
    leave = {"membership": "leave", "join_authorised_via_users_server": MOD}
    assert member(MOD) not in auth_types_for_event("m.room.member", BOB, BOB, leave, V["10"])


# --- power level helpers -----------------------------------------------------------------------


def _state(version: int, preset: str, **extra: object) -> Built:
    spec = {"name": "helper", "preset": preset, "expect": "allow",
            "event": {"type": "m.room.message", "content": {}}, **extra}
    return build(Case("helpers", "helper", version, "allow", spec))


@pytest.mark.parametrize("version", range(1, 12))
def test_power_level_without_power_levels_event(version: int) -> None:
    built = _state(version, "creator_only")
    assert power_level(ALICE, built.state) == 100
    assert power_level(BOB, built.state) == 0
    assert required_level("m.room.name", True, built.state) == 50  # state_default is 50
    assert required_level("m.room.message", False, built.state) == 0


def test_power_level_creator_is_content_creator_before_v11() -> None:
    create = {"content": {"creator": BOB}}
    for version in range(1, 11):
        built = _state(version, "creator_only", create=create)
        assert power_level(BOB, built.state) == 100
        assert power_level(ALICE, built.state) == 0
    built = _state(11, "creator_only", create=create)
    assert power_level(ALICE, built.state) == 100
    assert power_level(BOB, built.state) == 0


def test_power_level_v12_creators_are_infinite() -> None:
    built = _state(12, "standard", create={"content": {"additional_creators": [BOB]}})
    without_create = {k: e for k, e in built.state.items() if k != CREATE_KEY}
    assert power_level(ALICE, built.state) == math.inf
    assert power_level(BOB, built.state) == math.inf
    assert power_level(MOD, built.state) == 50
    # The create event can be given separately (v12 auth events never list it).
    assert power_level(BOB, without_create, built.create) == math.inf
    assert power_level(BOB, without_create) == 0
    for version in range(1, 12):
        built = _state(version, "standard", create={"content": {"additional_creators": [BOB]}})
        assert power_level(BOB, built.state) == 0
        assert power_level(ALICE, built.state) == 100


def test_power_level_reads_users_and_defaults() -> None:
    pl = {"type": "m.room.power_levels", "state_key": "", "content": {
        "users": {MOD: "75", BOB: "junk"}, "users_default": " 5 ",
        "events": {"m.room.name": "60", "m.room.topic": "x"}, "state_default": "40",
        "events_default": 3}}
    for version in range(1, 10):
        built = _state(version, "standard", state=[pl])
        assert power_level(MOD, built.state) == 75
        assert power_level(BOB, built.state) == 5  # unparseable entry: users_default
        assert power_level("@zed:z.example", built.state) == 5
        assert required_level("m.room.name", True, built.state) == 60
        assert required_level("m.room.topic", True, built.state) == 40
        assert required_level("m.room.message", False, built.state) == 3
    # v10+: strings are not power levels, so the defaults apply.
    built = _state(10, "standard", state=[pl])
    assert power_level(MOD, built.state) == 0
    assert required_level("m.room.name", True, built.state) == 50


def test_membership_of() -> None:
    built = _state(10, "standard", state=[
        {"type": "m.room.member", "state_key": "@eve:e.example", "content": {"membership": "ban"}}
    ])
    assert membership_of(BOB, built.state) == "join"
    assert membership_of("@eve:e.example", built.state) == "ban"
    assert membership_of("@nobody:x.example", built.state) == "leave"


@pytest.mark.parametrize(
    ("value", "v1", "v6", "v10"),
    [
        (50, 50, 50, 50),
        (-3, -3, -3, -3),
        ("50", 50, 50, None),
        (" +050 ", 50, 50, None),
        ("-7", -7, -7, None),
        ("\t12\n", 12, 12, None),
        ("5.0", None, None, None),
        ("1e3", None, None, None),
        ("", None, None, None),
        ("+-1", None, None, None),
        ("\u0661", None, None, None),  # a non-ASCII digit
        (50.9, 50, None, None),
        (-50.9, -50, None, None),
        (5.114698e4, 51146, None, None),
        (math.inf, None, None, None),
        (math.nan, None, None, None),
        (True, None, None, None),
        (None, None, None, None),
        ([50], None, None, None),
    ],
)
def test_parse_level(value: object, v1: int | None, v6: int | None, v10: int | None) -> None:
    assert parse_level(value, V["1"]) == v1
    assert parse_level(value, V["5"]) == v1
    assert parse_level(value, V["6"]) == v6
    assert parse_level(value, V["9"]) == v6
    assert parse_level(value, V["10"]) == v10
    assert parse_level(value, V["12"]) == v10


def test_check_auth_events_requires_the_listed_events() -> None:
    built = _state(10, "standard")
    with pytest.raises(ValueError, match="was not provided"):
        check_auth_events(built.event, [])
