"""Sliding sync request parsing: the unstable shape (Element X) and the MSC4186 `/v4/sync` one."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from trioserver.errors import Codes, MatrixError
from trioserver.services.sliding_sync.model import (
    MAX_TIMELINE_LIMIT,
    Extensions,
    ExtensionScope,
    RequiredState,
    RoomFilters,
    StatePattern,
)
from trioserver.services.sliding_sync.request import (
    MAX_TO_DEVICE_LIMIT,
    parse_unstable,
    parse_v4,
    unstable_required_state,
)

ME = "@alice:example.org"

# What matrix-rust-sdk's RoomListService (Element X) sends on its first request.
ELEMENT_X = {
    "conn_id": "room-list",
    "pos": "ignored-in-body",
    "timeout": 30000,
    "lists": {
        "all_rooms": {
            "ranges": [[0, 19]],
            "timeline_limit": 1,
            "required_state": [
                ["m.room.encryption", ""],
                ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"],
                ["m.room.name", ""],
                ["m.room.canonical_alias", ""],
                ["m.room.power_levels", ""],
                ["org.matrix.msc3401.call.member", "*"],
                ["m.room.join_rules", ""],
                ["m.room.tombstone", ""],
                ["m.room.create", ""],
                ["m.room.history_visibility", ""],
                ["m.space.parent", "*"],
            ],
            "include_heroes": True,
            "filters": {"not_room_types": ["m.space"]},
        }
    },
    "room_subscriptions": {
        "!open:example.org": {
            "timeline_limit": 20,
            "required_state": [["m.room.topic", ""], ["m.room.pinned_events", ""]],
        }
    },
    "extensions": {
        "to_device": {"enabled": True, "since": "1234"},
        "e2ee": {"enabled": True},
        "account_data": {"enabled": True},
        "receipts": {"enabled": True, "rooms": ["*"]},
        "typing": {"enabled": True},
        "io.element.msc4308.thread_subscriptions": {"enabled": True, "limit": 10},
    },
}

# The MSC4186 "Example request", plus the newer fields.
MSC_V4 = {
    "conn_id": "main",
    "pos": "e5.sc1.sn2",
    "timeout": 30000,
    "set_presence": "unavailable",
    "lists": {
        "foo-list": {
            "range": [0, 99],
            "required_state": {
                "include": [{"type": "m.room.create", "state_key": ""}],
                "lazy_members": True,
            },
            "timeline_limit": 10,
            "filters": {"is_dm": True},
        }
    },
    "room_subscriptions": {
        "!sub1:bar": {"required_state": {"include": [{}]}, "timeline_limit": 10},
    },
}


def _err(call: Any, *args: Any) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        call(*args)
    assert info.value.status == 400
    return info.value


def v4_error(body: Any) -> MatrixError:
    return _err(parse_v4, body, ME)


def unstable_error(body: Any, query: dict[str, str] | None = None) -> MatrixError:
    return _err(parse_unstable, body, query or {}, ME)


def v4_list(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"timeline_limit": 1, "required_state": {}}
    entry.update(overrides)
    return {"lists": {"l": entry}}


def unstable_list(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"timeline_limit": 1, "required_state": []}
    entry.update(overrides)
    return {"lists": {"l": entry}}


# --- the two realistic bodies ------------------------------------------------------------------


def test_element_x_unstable_request() -> None:
    req = parse_unstable(ELEMENT_X, {"pos": "e1.sc2.sn3", "timeout": "30000"}, ME)
    assert req.conn_id == "room-list"
    assert req.pos == "e1.sc2.sn3"
    assert req.timeout_ms == 30000
    assert req.set_presence is None
    (name, lst), = req.lists.items()
    assert name == "all_rooms"
    assert lst.ranges == ((0, 19),)
    assert lst.config.timeline_limit == 1
    assert lst.filters == RoomFilters(not_room_types=("m.space",))
    rs = lst.config.required_state
    assert rs.lazy_members is True
    assert rs.exclude == frozenset()
    assert rs.include == {
        StatePattern("m.room.encryption", ""),
        StatePattern("m.room.member", ME),
        StatePattern("m.room.name", ""),
        StatePattern("m.room.canonical_alias", ""),
        StatePattern("m.room.power_levels", ""),
        StatePattern("org.matrix.msc3401.call.member", None),
        StatePattern("m.room.join_rules", ""),
        StatePattern("m.room.tombstone", ""),
        StatePattern("m.room.create", ""),
        StatePattern("m.room.history_visibility", ""),
        StatePattern("m.space.parent", None),
    }
    sub = req.room_subscriptions["!open:example.org"]
    assert sub.timeline_limit == 20
    assert sub.required_state == RequiredState(include=frozenset(
        {StatePattern("m.room.topic", ""), StatePattern("m.room.pinned_events", "")}))
    assert req.extensions == Extensions(
        to_device=True, to_device_since="1234", to_device_limit=100, e2ee=True,
        account_data=ExtensionScope(), receipts=ExtensionScope(), typing=ExtensionScope())


def test_unstable_ignores_pos_and_timeout_in_the_body() -> None:
    req = parse_unstable(ELEMENT_X, {}, ME)
    assert req.pos is None
    assert req.timeout_ms == 0


def test_msc_v4_example_request() -> None:
    req = parse_v4(MSC_V4, ME)
    assert (req.conn_id, req.pos, req.timeout_ms, req.set_presence) == (
        "main", "e5.sc1.sn2", 30000, "unavailable")
    lst = req.lists["foo-list"]
    assert lst.ranges == ((0, 99),)
    assert lst.filters == RoomFilters(is_dm=True)
    assert lst.config.timeline_limit == 10
    assert lst.config.required_state == RequiredState(
        include=frozenset({StatePattern("m.room.create", "")}), lazy_members=True)
    sub = req.room_subscriptions["!sub1:bar"]
    assert sub.required_state == RequiredState(include=frozenset({StatePattern()}))
    assert req.extensions == Extensions()


def test_empty_bodies_are_all_defaults() -> None:
    for req in (parse_v4({}, ME), parse_unstable({}, {}, ME)):
        assert (req.conn_id, req.pos, req.timeout_ms, req.lists, req.room_subscriptions) == (
            "", None, 0, {}, {})
        assert req.extensions == Extensions()


def test_json_null_reads_as_absent() -> None:
    body = {"conn_id": None, "pos": None, "timeout": None, "set_presence": None, "lists": None,
            "room_subscriptions": None, "extensions": None}
    assert parse_v4(body, ME) == parse_v4({}, ME)


# --- top level errors --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "x", 5, None, True, [{"lists": {}}]])
def test_body_must_be_an_object(body: Any) -> None:
    for err in (v4_error(body), unstable_error(body)):
        assert err.errcode == Codes.BAD_JSON


@pytest.mark.parametrize(("field", "value"), [
    ("conn_id", 5), ("pos", 5), ("timeout", "30000"), ("timeout", 1.5), ("timeout", True),
    ("lists", []), ("room_subscriptions", ["!a:b"]), ("extensions", "to_device"),
])
def test_v4_wrong_types_are_bad_json(field: str, value: Any) -> None:
    err = v4_error({field: value})
    assert err.errcode == Codes.BAD_JSON
    assert field in err.message


@pytest.mark.parametrize("timeout", [-1, 10**16])
def test_v4_timeout_out_of_range(timeout: int) -> None:
    assert v4_error({"timeout": timeout}).errcode == Codes.INVALID_PARAM


@pytest.mark.parametrize("state", ["online", "offline", "unavailable"])
def test_v4_set_presence_values(state: str) -> None:
    assert parse_v4({"set_presence": state}, ME).set_presence == state


@pytest.mark.parametrize("state", ["busy", "", "Online", 5, ["online"], {"a": 1}, True])
def test_v4_set_presence_unknown_is_invalid_param(state: Any) -> None:
    err = v4_error({"set_presence": state})
    assert err.errcode == Codes.INVALID_PARAM
    assert "set_presence" in err.message


def test_unstable_set_presence_from_query_only() -> None:
    assert parse_unstable({"set_presence": "offline"}, {}, ME).set_presence is None
    assert parse_unstable({}, {"set_presence": "offline"}, ME).set_presence == "offline"
    # Synapse ignores the parameter altogether: never refuse it.
    assert parse_unstable({}, {"set_presence": "bogus"}, ME).set_presence is None


@pytest.mark.parametrize("timeout", ["-1", "abc", "", "1.5", " 5", "+5", "1" * 16, "٣"])
def test_unstable_bad_timeout_query(timeout: str) -> None:
    err = unstable_error({}, {"timeout": timeout})
    assert err.errcode == Codes.INVALID_PARAM
    assert "timeout" in err.message


def test_unstable_timeout_and_pos_from_query() -> None:
    req = parse_unstable({}, {"timeout": "0", "pos": "abc"}, ME)
    assert (req.timeout_ms, req.pos) == (0, "abc")


def test_overlong_strings_are_invalid() -> None:
    assert v4_error({"conn_id": "c" * 5000}).errcode == Codes.INVALID_PARAM
    assert unstable_error({}, {"pos": "p" * 5000}).errcode == Codes.INVALID_PARAM


# --- lists -------------------------------------------------------------------------------------


def test_at_most_100_lists() -> None:
    lists = {f"l{i}": {"timeline_limit": 1, "required_state": {}} for i in range(100)}
    assert len(parse_v4({"lists": lists}, ME).lists) == 100
    lists["one-more"] = lists["l0"]
    assert v4_error({"lists": lists}).errcode == Codes.INVALID_PARAM
    unstable = {k: {"timeline_limit": 1, "required_state": []} for k in lists}
    assert unstable_error({"lists": unstable}).errcode == Codes.INVALID_PARAM


@pytest.mark.parametrize("key", ["", "a b", "x" * 65, "é", "a/b", "a:b", "*"])
def test_v4_list_keys_are_opaque_identifiers(key: str) -> None:
    body = {"lists": {key: {"timeline_limit": 1, "required_state": {}}}}
    assert v4_error(body).errcode == Codes.INVALID_PARAM


def test_v4_list_key_grammar_accepts() -> None:
    key = "aZ09._~-" + "x" * 56
    body = {"lists": {key: {"timeline_limit": 1, "required_state": {}}}}
    assert list(parse_v4(body, ME).lists) == [key]


def test_unstable_list_keys_only_capped_at_64() -> None:
    ok = {"lists": {"a b/é": {"timeline_limit": 1, "required_state": []}}}
    assert list(parse_unstable(ok, {}, ME).lists) == ["a b/é"]
    long = {"lists": {"x" * 65: {"timeline_limit": 1, "required_state": []}}}
    assert unstable_error(long).errcode == Codes.INVALID_PARAM


def test_list_config_must_be_an_object() -> None:
    assert v4_error({"lists": {"l": [1]}}).errcode == Codes.BAD_JSON
    assert unstable_error({"lists": {"l": "x"}}).errcode == Codes.BAD_JSON


@pytest.mark.parametrize("make", [v4_list, unstable_list])
def test_timeline_limit(make: Any) -> None:
    parse = (lambda b: parse_v4(b, ME)) if make is v4_list else (
        lambda b: parse_unstable(b, {}, ME))
    error = v4_error if make is v4_list else unstable_error
    assert parse(make(timeline_limit=0)).lists["l"].config.timeline_limit == 0
    assert parse(make(timeline_limit=5000)).lists["l"].config.timeline_limit == MAX_TIMELINE_LIMIT
    missing = make()
    del missing["lists"]["l"]["timeline_limit"]
    err = error(missing)
    assert err.errcode == Codes.MISSING_PARAM
    assert "lists.l.timeline_limit" in err.message
    assert error(make(timeline_limit=None)).errcode == Codes.MISSING_PARAM
    for bad in ("1", True, 1.0, [1]):
        err = error(make(timeline_limit=bad))
        assert err.errcode == Codes.BAD_JSON
        assert "lists.l.timeline_limit" in err.message
    assert error(make(timeline_limit=-1)).errcode == Codes.INVALID_PARAM


def test_v4_required_state_is_required() -> None:
    body = v4_list()
    del body["lists"]["l"]["required_state"]
    assert v4_error(body).errcode == Codes.MISSING_PARAM


def test_unstable_required_state_may_be_omitted() -> None:
    # ruma skips an empty required_state when serialising (Synapse would want it).
    body = unstable_list()
    del body["lists"]["l"]["required_state"]
    assert parse_unstable(body, {}, ME).lists["l"].config.required_state == RequiredState()


def test_v4_range() -> None:
    assert parse_v4(v4_list(range=[0, 19]), ME).lists["l"].ranges == ((0, 19),)
    assert parse_v4(v4_list(range=[3, 3]), ME).lists["l"].ranges == ((3, 3),)
    assert parse_v4(v4_list(), ME).lists["l"].ranges is None
    # v4 has `range` only: an unstable `ranges` is an unknown key.
    assert parse_v4(v4_list(ranges=[[0, 1]]), ME).lists["l"].ranges is None


@pytest.mark.parametrize(("value", "code"), [
    ([5, 2], Codes.INVALID_PARAM), ([-1, 3], Codes.INVALID_PARAM), ([0], Codes.BAD_JSON),
    ([0, 1, 2], Codes.BAD_JSON), ("0-1", Codes.BAD_JSON), ([0, True], Codes.BAD_JSON),
    ([0, 1.0], Codes.BAD_JSON), ([[0, 1]], Codes.BAD_JSON), ({"start": 0}, Codes.BAD_JSON),
])
def test_bad_ranges(value: Any, code: Codes) -> None:
    err = v4_error(v4_list(range=value))
    assert err.errcode == code
    assert "lists.l.range" in err.message
    assert unstable_error(unstable_list(ranges=[[0, 1], value])).errcode == code
    assert unstable_error(unstable_list(range=value)).errcode == code


def test_unstable_ranges() -> None:
    def ranges(**kw: Any) -> Any:
        return parse_unstable(unstable_list(**kw), {}, ME).lists["l"].ranges

    assert ranges(ranges=[[0, 19]]) == ((0, 19),)
    assert ranges(ranges=[[0, 9], [20, 29]]) == ((0, 9), (20, 29))
    assert ranges(range=[0, 5]) == ((0, 5),)
    assert ranges(ranges=[[0, 1]], range=[0, 5]) == ((0, 1),)
    assert ranges() is None
    assert ranges(ranges=[]) == ()  # no window: no rooms
    assert ranges(ranges=[[0, 19]], slow_get_all_rooms=True) is None
    assert ranges(ranges=[[0, 19]], slow_get_all_rooms=False) == ((0, 19),)
    assert unstable_error(unstable_list(ranges=[[0, 1]] * 1001)).errcode == Codes.INVALID_PARAM
    assert unstable_error(unstable_list(slow_get_all_rooms="yes")).errcode == Codes.BAD_JSON


# --- filters -----------------------------------------------------------------------------------

ALL_FILTERS = {
    "is_dm": False,
    "spaces": ["!space:x"],
    "is_encrypted": True,
    "room_types": [None, "m.space"],
    "not_room_types": ["org.example.custom"],
    "tags": ["m.favourite"],
    "not_tags": ["m.lowpriority"],
    "room_name_like": "foo",
    "unknown": {"nested": 1},
}
EXPECTED_FILTERS = RoomFilters(
    is_dm=False, spaces=("!space:x",), is_encrypted=True, is_invited=True,
    room_types=(None, "m.space"), not_room_types=("org.example.custom",), tags=("m.favourite",),
    not_tags=("m.lowpriority",))


def test_v4_filters() -> None:
    filters = {**ALL_FILTERS, "is_invited": True}
    assert parse_v4(v4_list(filters=filters), ME).lists["l"].filters == EXPECTED_FILTERS
    # `is_invite` is the unstable name.
    only_old = {"is_invite": True}
    assert parse_v4(v4_list(filters=only_old), ME).lists["l"].filters == RoomFilters()


@pytest.mark.parametrize("key", ["is_invite", "is_invited"])
def test_unstable_filters(key: str) -> None:
    filters = {**ALL_FILTERS, key: True}
    assert parse_unstable(unstable_list(filters=filters), {}, ME).lists["l"].filters == (
        EXPECTED_FILTERS)


def test_unstable_is_invite_wins_over_is_invited() -> None:
    filters = {"is_invite": False, "is_invited": True}
    lst = parse_unstable(unstable_list(filters=filters), {}, ME).lists["l"]
    assert lst.filters.is_invited is False


@pytest.mark.parametrize(("key", "value"), [
    ("is_dm", "true"), ("is_encrypted", 1), ("is_invited", "no"), ("spaces", "!a:b"),
    ("spaces", [1]), ("tags", [None]), ("not_tags", {"a": 1}), ("room_types", [5]),
    ("not_room_types", "m.space"),
])
def test_bad_filters(key: str, value: Any) -> None:
    err = v4_error(v4_list(filters={key: value}))
    assert err.errcode == Codes.BAD_JSON
    assert f"lists.l.filters.{key}" in err.message
    assert v4_error(v4_list(filters=[key])).errcode == Codes.BAD_JSON


# --- required_state ----------------------------------------------------------------------------


def test_v4_required_state_include_exclude_lazy_and_me() -> None:
    rs = {
        "include": [{}, {"type": "m.room.member", "state_key": "$ME"}, {"state_key": "@b:x"},
                    {"type": "m.room.create"}],
        "exclude": [{"type": "m.room.create", "state_key": ""}],
        "lazy_members": True,
    }
    config = parse_v4(v4_list(required_state=rs), ME).lists["l"].config
    assert config.required_state == RequiredState(
        include=frozenset({StatePattern(), StatePattern("m.room.member", ME),
                           StatePattern(None, "@b:x"), StatePattern("m.room.create", None)}),
        exclude=frozenset({StatePattern("m.room.create", "")}),
        lazy_members=True,
    )


def test_v4_star_and_lazy_are_literal() -> None:
    rs = {"include": [{"type": "*", "state_key": "*"}, {"type": "m.room.member",
                                                        "state_key": "$LAZY"}]}
    config = parse_v4(v4_list(required_state=rs), ME).lists["l"].config
    assert config.required_state == RequiredState(include=frozenset(
        {StatePattern("*", "*"), StatePattern("m.room.member", "$LAZY")}))


def test_v4_empty_required_state_asks_for_nothing() -> None:
    config = parse_v4(v4_list(required_state={}), ME).lists["l"].config
    assert config.required_state == RequiredState()


@pytest.mark.parametrize("rs", [
    [["m.room.name", ""]], "all", {"include": {}}, {"include": [[]]}, {"include": ["m.room.name"]},
    {"include": [{"type": 5}]}, {"exclude": [{"state_key": ["x"]}]}, {"lazy_members": "true"},
    {"include": [{"type": "t" * 5000}]},
])
def test_v4_bad_required_state(rs: Any) -> None:
    err = v4_error(v4_list(required_state=rs))
    assert err.errcode in (Codes.BAD_JSON, Codes.INVALID_PARAM)
    assert "lists.l.required_state" in err.message


@pytest.mark.parametrize("rs", [
    {"include": []}, "x", [["m.room.name"]], [["m.room.name", "", ""]], [["m.room.name", None]],
    [[1, ""]], ["m.room.name"], [{"type": "m.room.name"}], [["t" * 5000, ""]],
])
def test_unstable_bad_required_state(rs: Any) -> None:
    err = unstable_error(unstable_list(required_state=rs))
    assert err.errcode == Codes.BAD_JSON
    assert "lists.l.required_state" in err.message


def test_unstable_wildcards_and_me() -> None:
    rs = unstable_required_state(
        [("m.space.child", "*"), ("*", "$ME"), ("*", ""), ("m.room.name", "$LAZY")], ME)
    assert rs == RequiredState(include=frozenset({
        StatePattern("m.space.child", None), StatePattern(None, ME), StatePattern(None, ""),
        StatePattern("m.room.name", "$LAZY"),  # $LAZY is special for members only
    }))


def test_unstable_lazy() -> None:
    rs = unstable_required_state([("m.room.member", "$LAZY"), ("m.room.name", "")], ME)
    assert rs == RequiredState(include=frozenset({StatePattern("m.room.name", "")}),
                               lazy_members=True)


@pytest.mark.parametrize("order", [1, -1])
def test_unstable_member_wildcard_beats_lazy(order: int) -> None:
    pairs = [("m.room.member", "$LAZY"), ("m.room.member", "*")][::order]
    rs = unstable_required_state(pairs, ME)
    assert rs == RequiredState(include=frozenset({StatePattern("m.room.member", None)}))


@pytest.mark.parametrize("pairs", [
    [("*", "*")],
    [("*", "*"), ("m.room.member", "$LAZY")],
    [("m.room.member", "$LAZY"), ("*", "*"), ("m.room.member", "@bob:x")],
    [("m.room.name", ""), ("*", "*"), ("m.space.child", "*")],
])
def test_unstable_all_state_swallows_everything_else(pairs: list[tuple[str, str]]) -> None:
    # Synapse's RoomSyncConfig.from_room_config: ["*", "*"] is "all state", the rest ignored.
    assert unstable_required_state(pairs, ME) == RequiredState(include=frozenset({StatePattern()}))


def test_unstable_subscription_with_all_state_and_lazy() -> None:
    # What a client sends for an open room: all state; Synapse then sends all members too.
    body = {"room_subscriptions": {"!r:x": {
        "timeline_limit": 20, "required_state": [["*", "*"], ["m.room.member", "$LAZY"]]}}}
    sub = parse_unstable(body, {}, ME).room_subscriptions["!r:x"]
    assert sub.required_state == RequiredState(include=frozenset({StatePattern()}))


# --- room subscriptions ------------------------------------------------------------------------


def test_v4_room_subscriptions() -> None:
    subs = {f"!r{i}:x": {"timeline_limit": 3, "required_state": {}} for i in range(100)}
    assert len(parse_v4({"room_subscriptions": subs}, ME).room_subscriptions) == 100
    subs["!r100:x"] = subs["!r0:x"]
    assert v4_error({"room_subscriptions": subs}).errcode == Codes.INVALID_PARAM
    for key in ("#alias:x", "", "r:x", "!" + "r" * 300):
        err = v4_error({"room_subscriptions": {key: {"timeline_limit": 1, "required_state": {}}}})
        assert err.errcode == Codes.INVALID_PARAM
    err = v4_error({"room_subscriptions": {"!a:x": {"timeline_limit": 1}}})
    assert err.errcode == Codes.MISSING_PARAM
    assert "room_subscriptions.!a:x.required_state" in err.message
    assert v4_error({"room_subscriptions": {"!a:x": 5}}).errcode == Codes.BAD_JSON


def test_unstable_room_subscriptions_like_synapse() -> None:
    subs = {f"!r{i}:x": {"timeline_limit": 3, "required_state": []} for i in range(150)}
    subs["#alias:x"] = {"timeline_limit": 1, "required_state": "not even checked"}
    req = parse_unstable({"room_subscriptions": subs}, {}, ME)
    assert len(req.room_subscriptions) == 150  # no limit; non-room IDs skipped like unknown rooms
    assert "#alias:x" not in req.room_subscriptions
    bad = {"room_subscriptions": {"!a:x": {"timeline_limit": -2, "required_state": []}}}
    assert unstable_error(bad).errcode == Codes.INVALID_PARAM


# --- extensions --------------------------------------------------------------------------------


def test_extensions_enabled_defaults_to_false() -> None:
    body: dict[str, Any] = {"extensions": {name: {} for name in (
        "to_device", "e2ee", "account_data", "receipts", "typing")}}
    assert parse_unstable(body, {}, ME).extensions == Extensions()
    body = {"extensions": {name: {"enabled": None, "lists": []} for name in
                           ("account_data", "receipts", "typing")}}
    assert parse_unstable(body, {}, ME).extensions == Extensions()


def test_extension_scopes() -> None:
    def typing(**kw: Any) -> ExtensionScope | None:
        body = {"extensions": {"typing": {"enabled": True, **kw}}}
        return parse_unstable(body, {}, ME).extensions.typing

    assert typing() == ExtensionScope(lists=None, rooms=None)
    assert typing(lists=["*"], rooms=["*"]) == ExtensionScope()
    assert typing(lists=["a", "*"]) == ExtensionScope()
    assert typing(lists=[], rooms=[]) == ExtensionScope(lists=(), rooms=())
    assert typing(lists=["all_rooms"], rooms=["!a:x"]) == ExtensionScope(("all_rooms",), ("!a:x",))
    assert typing(lists=None, rooms=None) == ExtensionScope((), ())  # as Synapse: null = none


def test_to_device_extension() -> None:
    def to_device(v4: bool = False, **kw: Any) -> Extensions:
        body = {"extensions": {"to_device": {"enabled": True, **kw}}}
        return parse_v4(body, ME).extensions if v4 else parse_unstable(body, {}, ME).extensions

    assert to_device(since="17", limit=5) == Extensions(
        to_device=True, to_device_since="17", to_device_limit=5)
    assert to_device(limit=10**6).to_device_limit == MAX_TO_DEVICE_LIMIT
    assert to_device(limit=0).to_device_limit == 0  # Synapse accepts 0
    assert to_device(v4=True, limit=1).to_device_limit == 1
    for bad, code in ((0, Codes.INVALID_PARAM), (-1, Codes.INVALID_PARAM),
                      ("5", Codes.BAD_JSON), (5.5, Codes.BAD_JSON)):
        body = {"extensions": {"to_device": {"enabled": True, "limit": bad}}}
        assert v4_error(body).errcode == code
    assert unstable_error({"extensions": {"to_device": {"limit": -1}}}).errcode == (
        Codes.INVALID_PARAM)
    err = unstable_error({"extensions": {"to_device": {"enabled": True, "since": 17}}})
    assert err.errcode == Codes.BAD_JSON
    assert "extensions.to_device.since" in err.message
    # Disabled: checked, but the defaults stay.
    body = {"extensions": {"to_device": {"enabled": False, "since": "5", "limit": 3}}}
    assert parse_unstable(body, {}, ME).extensions == Extensions()


@pytest.mark.parametrize("ext", [
    {"to_device": []}, {"e2ee": True}, {"typing": {"enabled": "true"}},
    {"receipts": {"enabled": True, "rooms": "*"}}, {"account_data": {"lists": [1]}},
])
def test_bad_extensions(ext: dict[str, Any]) -> None:
    assert unstable_error({"extensions": ext}).errcode == Codes.BAD_JSON


def test_unknown_extensions_ignored_whatever_their_value() -> None:
    body = {"extensions": {"presence": 5, "org.example.thing": {"enabled": "x"}, "": []}}
    assert parse_v4(body, ME).extensions == Extensions()
    assert parse_unstable(body, {}, ME).extensions == Extensions()


V4_PREFIXED = {
    "org.matrix.msc4538.to_device": {"enabled": True, "since": "9"},
    "org.matrix.msc4543.e2ee": {"enabled": True},
    "org.matrix.msc3959.account_data": {"enabled": True, "lists": []},
    "org.matrix.msc3960.receipts": {"enabled": True, "rooms": []},
    "org.matrix.msc4508.typing": {"enabled": True, "lists": ["l"]},
}
V4_EXPECTED = Extensions(
    to_device=True, to_device_since="9", e2ee=True,
    account_data=ExtensionScope(lists=()), receipts=ExtensionScope(rooms=()),
    typing=ExtensionScope(lists=("l",)))


def test_v4_prefixed_extension_keys() -> None:
    assert parse_v4({"extensions": V4_PREFIXED}, ME).extensions == V4_EXPECTED
    # The unstable endpoint keeps the plain keys only.
    assert parse_unstable({"extensions": V4_PREFIXED}, {}, ME).extensions == Extensions()


def test_v4_plain_extension_keys_too() -> None:
    plain = {key.rsplit(".", 1)[1]: value for key, value in V4_PREFIXED.items()}
    assert parse_v4({"extensions": plain}, ME).extensions == V4_EXPECTED


def test_v4_prefixed_key_wins_over_plain() -> None:
    body = {"extensions": {"typing": {"enabled": False},
                           "org.matrix.msc4508.typing": {"enabled": True}}}
    assert parse_v4(body, ME).extensions.typing == ExtensionScope()


# --- robustness --------------------------------------------------------------------------------

_JUNK: list[Any] = [None, True, False, 0, -1, 1.5, 10**30, "", "*", "$ME", [], [[]], [0, -1],
                    [None], {}, {"": None}, ["*", "*"], [[0, 1]], {"include": [{}]}]


def _mutations(value: Any, rng: random.Random) -> Any:
    """`value` with one random node replaced by junk."""
    value = copy.deepcopy(value)
    node, path = value, []
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    if not path:
        return rng.choice(_JUNK)
    parent, key = path[-1]
    parent[key] = rng.choice(_JUNK)
    return value


def _failure(parse: Any, body: Any) -> MatrixError | None:
    try:
        parse(body)
    except MatrixError as e:
        return e
    return None


@pytest.mark.parametrize("seed", range(20))
def test_bad_bodies_only_raise_matrix_errors(seed: int) -> None:
    rng = random.Random(seed)
    bodies = [json.loads(json.dumps(b)) for b in (ELEMENT_X, MSC_V4)]
    for _ in range(200):
        body = _mutations(rng.choice(bodies), rng)
        for parse in (lambda b: parse_v4(b, ME), lambda b: parse_unstable(b, {}, ME)):
            err = _failure(parse, body)
            assert err is None or (err.status, err.errcode) in {
                (400, Codes.BAD_JSON), (400, Codes.INVALID_PARAM), (400, Codes.MISSING_PARAM)}
