"""Builds rooms from the state resolution fixtures in fixtures/*.json.

A fixture file describes one scenario:

- description, source: what it shows and where the scenario comes from (prose only).
- versions: the room versions it runs in: "2-12", "1,2", "all" (1-12).
- preset: events prepended from fixtures/_presets.json (default: none).
- events: minimal events, in an order where prev_events come first:
    id: the event's name; its ID is "$" + id (so the v12 room ID is "!" + the create's id);
    type, state_key (absent: not a state event), sender, content ({} by default);
    prev: the names of its prev_events (default: the event listed before it);
    auth: the names of its auth_events (default: the auth events selection over the state
      before the event, as the DAG gives it);
    ts: origin_server_ts (default: its position in the list); depth (default: 1 + the
      deepest prev_event).
  `sender` and an m.room.member `state_key` are user IDs, or names: "bob" is
  "@bob:example.com". The m.room.create event gets `room_version` (and `creator` before v11)
  in its content; v1-11 events are in "!room:example.com". In v12 the room creators are dropped
  from every m.room.power_levels `users` (they may not be listed there).
- resolve: what to resolve, either
    {"at": NAME}: the states after NAME's prev_events (the state before NAME), or
    {"state_sets": [set, ...]}: each set a list of names or "after:NAME".
- expected: the resolved state: a list of names (the whole state), or
  {"like": REF, "with": [names], "without": [[type, state_key], ...]} where REF is
  "after:NAME" or a list of names; or {"by_version": {"2-11": expected, "12": expected}}.

Every event is checked against its own auth events (check_auth_events, check_event) as it is
built: events that fail their auth chain never reach state resolution, as the spec notes.
The state before an event with several prev_events is computed with resolve_state itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trioserver.services.events.auth_events import auth_types_for_event, check_auth_events
from trioserver.services.events.auth_rules import check_event
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.room_versions import ROOM_VERSIONS, RoomVersion
from trioserver.services.events.state_res import StateMap, resolve_state

FIXTURES = Path(__file__).parent / "fixtures"
DOMAIN = "example.com"
ROOM_ID = f"!room:{DOMAIN}"  # v1-11
ALL_VERSIONS = tuple(range(1, 13))


def parse_versions(text: str) -> list[int]:
    if text == "all":
        return list(ALL_VERSIONS)
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        out += range(int(low), int(high or low) + 1)
    assert out, text
    assert all(v in ALL_VERSIONS for v in out), text
    return out


def user(name: str) -> str:
    return name if name.startswith("@") else f"@{name}:{DOMAIN}"


@dataclass(frozen=True)
class Case:
    name: str
    version: int
    spec: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.name}:v{self.version}"


def load_presets() -> dict[str, list[dict[str, Any]]]:
    data = json.loads((FIXTURES / "_presets.json").read_text())
    presets: dict[str, list[dict[str, Any]]] = data["presets"]
    return presets


def load_cases() -> Iterator[Case]:
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name.startswith("_"):
            continue
        spec = json.loads(path.read_text())
        for version in parse_versions(spec["versions"]):
            yield Case(path.stem, version, spec)


@dataclass
class Room:
    """The events of a fixture built for one room version, with the state after each."""

    room_version: RoomVersion
    events: dict[str, Event] = field(default_factory=dict)  # by event ID
    names: dict[str, str] = field(default_factory=dict)  # name -> event ID
    state_after: dict[str, dict[StateKey, str]] = field(default_factory=dict)  # by name
    prevs: dict[str, list[str]] = field(default_factory=dict)  # name -> prev names

    def event(self, name: str) -> Event:
        return self.events[self.names[name]]

    def state_ref(self, ref: str | list[str]) -> dict[StateKey, str]:
        """A state: "after:NAME", or a list of names (one event per key)."""
        if isinstance(ref, str):
            kind, _, name = ref.partition(":")
            assert kind == "after", ref
            return dict(self.state_after[name])
        state: dict[StateKey, str] = {}
        for name in ref:
            event = self.event(name)
            assert event.state_tuple not in state, f"two events for {event.state_tuple}"
            state[event.state_tuple] = event.event_id
        return state

    def state_sets(self, resolve: Mapping[str, Any]) -> list[dict[StateKey, str]]:
        if "at" in resolve:
            return [dict(self.state_after[p]) for p in self.prevs[resolve["at"]]]
        return [self.state_ref(ref) for ref in resolve["state_sets"]]

    def expected(self, spec: Any, version: int) -> dict[StateKey, str]:
        if isinstance(spec, dict) and "by_version" in spec:
            matches = [v for k, v in spec["by_version"].items() if version in parse_versions(k)]
            assert len(matches) == 1, f"expected covers v{version} {len(matches)} times"
            spec = matches[0]
        if isinstance(spec, list):
            return self.state_ref(spec)
        state = self.state_ref(spec["like"])
        for key in spec.get("without", []):
            state.pop((key[0], key[1]), None)
        state.update(self.state_ref(spec.get("with", [])))
        return state


def build(case: Case) -> Room:
    rv = ROOM_VERSIONS[str(case.version)]
    specs = [*load_presets().get(case.spec.get("preset", ""), []), *case.spec["events"]]
    room = Room(rv)
    create_id: str | None = None
    for index, spec in enumerate(specs):
        name = spec["id"]
        assert name not in room.names, f"duplicate event {name}"
        prev = spec.get("prev", [specs[index - 1]["id"]] if index else [])
        room.prevs[name] = prev
        states = [room.state_after[p] for p in prev]
        before = dict(states[0]) if len(states) == 1 else resolve_state(rv, states, room.events)
        event = _build_event(spec, index, room, before, create_id)
        if event.type == "m.room.create":
            create_id = event.event_id
        _check_auth_chain(event, room, create_id)
        room.names[name] = event.event_id
        room.events[event.event_id] = event
        after = dict(before)
        if event.state_key is not None:
            after[event.state_tuple] = event.event_id
        room.state_after[name] = after
    return room


def _build_event(
    spec: dict[str, Any], index: int, room: Room, before: StateMap, create_id: str | None
) -> Event:
    rv = room.room_version
    event_type: str = spec["type"]
    sender = user(spec["sender"])
    state_key: str | None = spec.get("state_key")
    if event_type == "m.room.member" and state_key is not None:
        state_key = user(state_key)
    content = copy.deepcopy(spec.get("content", {}))
    if event_type == "m.room.create":
        content.setdefault("room_version", rv.identifier)
        if not rv.implicit_room_creator:
            content.setdefault("creator", sender)
    if event_type == "m.room.power_levels" and rv.room_id_is_create_hash and create_id:
        creators = _creators(room.events[create_id])
        users = content.get("users")
        if isinstance(users, dict):
            content["users"] = {u: lv for u, lv in users.items() if u not in creators}
    event_id = "$" + spec["id"]
    # v12: the room ID is the create event's ID with "!" (for the create event: its own).
    room_id = "!" + (create_id or event_id)[1:] if rv.room_id_is_create_hash else ROOM_ID
    prev_ids = tuple(room.names[p] for p in room.prevs[spec["id"]])
    if "auth" in spec:
        auth_ids = tuple(room.names[a] for a in spec["auth"])
    else:
        keys = auth_types_for_event(event_type, state_key, sender, content, rv)
        auth_ids = tuple(before[k] for k in keys if k in before)
    depth = spec.get("depth", 1 + max((room.events[p].depth for p in prev_ids), default=0))
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": content,
        "prev_events": list(prev_ids),
        "auth_events": list(auth_ids),
        "depth": depth,
        "origin_server_ts": spec.get("ts", index),
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    if not (rv.room_id_is_create_hash and event_type == "m.room.create"):
        pdu["room_id"] = room_id
    return Event(
        event_id=event_id,
        room_id=room_id,
        sender=sender,
        type=event_type,
        state_key=state_key,
        content=content,
        prev_events=prev_ids,
        auth_events=auth_ids,
        depth=depth,
        origin_server_ts=pdu["origin_server_ts"],
        redacts=None,
        room_version=rv,
        pdu=pdu,
    )


def _creators(create: Event) -> set[str]:
    extra = create.content.get("additional_creators", [])
    return {create.sender, *extra}


def _check_auth_chain(event: Event, room: Room, create_id: str | None) -> None:
    """The checks on receipt against the event's own auth events: fixtures hold only events
    that pass them."""
    create = room.events[create_id] if create_id and event.type != "m.room.create" else None
    if not room.room_version.room_id_is_create_hash:
        create = None
    auth = [room.events[a] for a in event.auth_events]
    auth_state = check_auth_events(event, auth, create_event=create)
    check_event(event, auth_state, create, verify_server_signature=lambda _e, _s: True)
