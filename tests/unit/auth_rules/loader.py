"""Builds real events from the table-driven fixtures in fixtures/*.json.

A fixture file is {"description": ..., "cases": [case, ...]}. A case:

- name: unique within its file.
- versions: which room versions it runs in: "all" (default), "7", "1-5", "1-5,8", ...
- expect: "allow" or the rejecting rule number, either one string for all its versions or an
  object from version ranges (same syntax) to outcomes, which must cover every version.
- preset: the starting state, from fixtures/_presets.json (default "standard").
- create: overrides for the preset's m.room.create event: "sender", "content" (merged into
  the generated content: `creator` in v1-10, `room_version`), "room_id" (v1-11).
- state: simplified state events (type, state_key, sender [alice], content, room_id) added
  after the preset's, replacing the preset's event with the same (type, state_key) in place.
- remove: [[type, state_key], ...] preset events to leave out.
- event: the event under test, simplified: type, state_key (absent: not a state event),
  sender [alice], content, plus
    patch: for m.room.power_levels, a deep merge onto the current power levels content
      (null deletes a key) instead of content;
    prev: "create" (prev_events = [the create event]), "none", or default the last state event;
    redacts: the redacted event ID (top level, and in content from v11);
    event_id: the event's ID in v1-2 (others are computed; v1-2 default "$ev:<sender domain>");
    pdu: top-level PDU keys to set last (e.g. room_id).
- signed_by: servers whose signature verify_server_signature accepts (default none).
- omit_create: the auth state has no m.room.create event (and none is passed in v12).
- extra: simplified events built in the room but not part of the state (for auth_events).
- auth_events: the event's auth_events as references, instead of the selection algorithm's:
  [type, state_key] for a state event (or the create event) or "extra:N".
- rejected: references of auth events to treat as rejected (check_auth_events rule 2.3).

In v12 the room creators are dropped from every state m.room.power_levels `users` (they may not
be listed there); the event under test is left as written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trioserver.services.events.auth_rules import auth_types_for_event
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.room_versions import ROOM_VERSIONS, EventIdFormat, RoomVersion

FIXTURES = Path(__file__).parent / "fixtures"
ALICE = "@alice:a.example"
ALL_VERSIONS = tuple(range(1, 13))
_TS = 1_700_000_000_000


def parse_versions(text: str) -> list[int]:
    if text == "all":
        return list(ALL_VERSIONS)
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        out += range(int(low), int(high or low) + 1)
    assert all(v in ALL_VERSIONS for v in out), text
    return out


def resolve_expect(expect: str | dict[str, str], version: int) -> str:
    if isinstance(expect, str):
        return expect
    matches = [value for key, value in expect.items() if version in parse_versions(key)]
    assert len(matches) == 1, f"expect covers v{version} {len(matches)} times: {expect}"
    return matches[0]


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    version: int
    expect: str
    spec: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}:v{self.version}"


def load_presets() -> dict[str, list[dict[str, Any]]]:
    presets: dict[str, list[dict[str, Any]]] = json.loads(
        (FIXTURES / "_presets.json").read_text()
    )["presets"]
    return presets


def load_cases() -> Iterator[Case]:
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name.startswith("_"):
            continue
        names: set[str] = set()
        for spec in json.loads(path.read_text())["cases"]:
            assert spec["name"] not in names, f"{path.name}: duplicate case {spec['name']}"
            names.add(spec["name"])
            for version in parse_versions(str(spec.get("versions", "all"))):
                expect = resolve_expect(spec["expect"], version)
                yield Case(path.stem, spec["name"], version, expect, spec)


def _domain(user_id: str) -> str:
    return user_id.partition(":")[2]


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Built:
    room_version: RoomVersion
    create: Event
    state: dict[StateKey, Event]  # including the create event
    extra: list[Event]
    event: Event
    verify: Callable[[Event, str], bool]
    rejected: frozenset[str]

    @property
    def all_events(self) -> list[Event]:
        return [*self.state.values(), *self.extra]


class _Room:
    def __init__(self, rv: RoomVersion) -> None:
        self.rv = rv
        self.count = 0
        self.room_id = ""
        self.state: dict[StateKey, Event] = {}
        self.last: Event | None = None

    def refs(self, ids: list[str]) -> list[Any]:
        if self.rv.event_id_format is EventIdFormat.V1:
            return [[i, {"sha256": "AAAA"}] for i in ids]
        return ids

    def pdu(self, spec: dict[str, Any], prev: list[str], auth: list[str]) -> dict[str, Any]:
        self.count += 1
        sender = spec.get("sender", ALICE)
        pdu: dict[str, Any] = {
            "type": spec["type"],
            "sender": sender,
            "content": copy.deepcopy(spec.get("content", {})),
            "room_id": spec.get("room_id", self.room_id),
            "depth": self.count,
            "origin_server_ts": _TS + self.count,
            "prev_events": self.refs(prev),
            "auth_events": self.refs(auth),
            "hashes": {"sha256": "AAAA"},
            "signatures": {},
        }
        if "state_key" in spec:
            pdu["state_key"] = spec["state_key"]
        if self.rv.event_id_format is EventIdFormat.V1:
            pdu["event_id"] = spec.get("event_id", f"$s{self.count}:{_domain(sender)}")
        return pdu

    def auth_ids(self, spec: dict[str, Any]) -> list[str]:
        keys = auth_types_for_event(
            spec["type"], spec.get("state_key"), spec.get("sender", ALICE),
            spec.get("content", {}), self.rv,
        )
        return [self.state[k].event_id for k in keys if k in self.state]

    def add_state(self, event: Event) -> None:
        assert event.state_key is not None
        self.state[event.state_tuple] = event
        self.last = event


def _create_spec(case: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
    override = case.get("create", {})
    sender = override.get("sender", ALICE)
    content: dict[str, Any] = {"room_version": rv.identifier}
    if not rv.implicit_room_creator:
        content["creator"] = sender
    content.update(override.get("content", {}))
    spec = {"type": "m.room.create", "state_key": "", "sender": sender, "content": content}
    if not rv.room_id_is_create_hash:
        spec["room_id"] = override.get("room_id", f"!room:{_domain(sender)}")
    return spec


def _creators(create: Event) -> set[str]:
    extra = create.content.get("additional_creators", [])
    return {create.sender, *extra} if create.room_version.room_id_is_create_hash else set()


def build(case: Case) -> Built:
    spec = case.spec
    rv = ROOM_VERSIONS[str(case.version)]
    room = _Room(rv)
    create_spec = _create_spec(spec, rv)
    create_pdu = room.pdu(create_spec, [], [])
    if rv.room_id_is_create_hash:
        del create_pdu["room_id"]
    create = Event.from_pdu(create_pdu, rv)
    room.room_id = create.room_id
    room.add_state(create)

    # The state: the preset, minus `remove`, with `state` replacing or appending.
    removed = {tuple(key) for key in spec.get("remove", [])}
    state_specs = [
        s for s in load_presets()[spec.get("preset", "standard")]
        if (s["type"], s["state_key"]) not in removed
    ]
    for extra_spec in spec.get("state", []):
        key = (extra_spec["type"], extra_spec["state_key"])
        positions = [i for i, s in enumerate(state_specs) if (s["type"], s["state_key"]) == key]
        if positions:
            state_specs[positions[0]] = extra_spec
        else:
            state_specs.append(extra_spec)
    creators = _creators(create)
    for state_spec in state_specs:
        if state_spec["type"] == "m.room.power_levels" and creators:
            users = state_spec.get("content", {}).get("users")
            if isinstance(users, dict):
                kept = {u: level for u, level in users.items() if u not in creators}
                state_spec = _merge(state_spec, {"content": {"users": None}})
                state_spec["content"]["users"] = kept
        assert room.last is not None
        pdu = room.pdu(state_spec, [room.last.event_id], room.auth_ids(state_spec))
        room.add_state(Event.from_pdu(pdu, rv))

    extra = [
        Event.from_pdu(room.pdu(s, [], room.auth_ids(s)), rv) for s in spec.get("extra", [])
    ]

    def ref(r: Any) -> Event:
        if isinstance(r, str) and r.startswith("extra:"):
            return extra[int(r.split(":")[1])]
        return room.state[(r[0], r[1])]

    event = _build_event(spec["event"], room, create, ref, spec.get("auth_events"))
    signed_by = frozenset(spec.get("signed_by", []))
    return Built(
        room_version=rv,
        create=create,
        state=dict(room.state),
        extra=extra,
        event=event,
        verify=lambda _event, server: server in signed_by,
        rejected=frozenset(ref(r).event_id for r in spec.get("rejected", [])),
    )


def _build_event(
    spec: dict[str, Any],
    room: _Room,
    create: Event,
    ref: Callable[[Any], Event],
    auth_refs: list[Any] | None,
) -> Event:
    rv = room.rv
    spec = copy.deepcopy(spec)
    if "patch" in spec:
        current = room.state.get(("m.room.power_levels", ""))
        spec["content"] = _merge(dict(current.content) if current else {}, spec.pop("patch"))
    if "redacts" in spec and rv.redacts_in_content:
        spec.setdefault("content", {})["redacts"] = spec["redacts"]
    prev = spec.get("prev")
    assert room.last is not None
    if prev == "create":
        prev_ids = [create.event_id]
    elif prev == "none":
        prev_ids = []
    else:
        prev_ids = [room.last.event_id]
    if spec["type"] == "m.room.create" and prev is None:
        prev_ids = []
    if auth_refs is not None:
        auth_ids = [ref(r).event_id for r in auth_refs]
    elif spec["type"] == "m.room.create":
        auth_ids = []
    else:
        auth_ids = room.auth_ids(spec)
    if rv.event_id_format is EventIdFormat.V1:
        spec.setdefault("event_id", f"$ev:{_domain(spec.get('sender', ALICE))}")
    pdu = room.pdu(spec, prev_ids, auth_ids)
    if "redacts" in spec:
        pdu["redacts"] = spec["redacts"]
    if spec["type"] == "m.room.create" and rv.room_id_is_create_hash:
        del pdu["room_id"]
    pdu.update(copy.deepcopy(spec.get("pdu", {})))
    return Event.from_pdu(pdu, rv)
