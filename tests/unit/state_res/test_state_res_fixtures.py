"""State resolution, table-driven from fixtures/*.json (see loader.py for the format)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest

from tests.unit.state_res.loader import FIXTURES, Case, Room, build, load_cases
from trioserver.services.events.event import StateKey
from trioserver.services.events.state_res import resolve_state

CASES = list(load_cases())


def named(room: Room, state: Mapping[StateKey, str]) -> dict[str, str]:
    """A state as {"type|state_key": name}, for readable failures."""
    names = {event_id: name for name, event_id in room.names.items()}
    return {f"{t}|{k}": names.get(e, e) for (t, k), e in sorted(state.items())}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture(case: Case) -> None:
    room = build(case)
    state_sets = room.state_sets(case.spec["resolve"])
    assert len(state_sets) > 1
    got = resolve_state(room.room_version, state_sets, room.events)
    expected = room.expected(case.spec["expected"], case.version)
    assert named(room, got) == named(room, expected)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture_is_order_independent(case: Case) -> None:
    """Neither the order of the state sets nor that of the events mapping matters."""
    room = build(case)
    state_sets = room.state_sets(case.spec["resolve"])
    first = resolve_state(room.room_version, state_sets, room.events)
    reversed_events = dict(reversed(list(room.events.items())))
    for order in itertools.permutations(state_sets):
        assert resolve_state(room.room_version, list(order), reversed_events) == first


def test_there_are_enough_fixtures() -> None:
    files = {case.name for case in CASES}
    assert len(files) >= 20
    assert (FIXTURES / "_presets.json").exists()
    for case in CASES:
        assert case.spec.get("description"), case.name
