"""Push rule evaluation: every predefined rule against crafted events, the conditions
(globs, property paths, exact values, display names, member counts, notification power), and
how a user's own rules and changes to the defaults take precedence."""

from __future__ import annotations

import time
from typing import Any

import pytest

from trioserver.errors import MatrixError
from trioserver.services.push.conditions import (
    DefaultEvaluation,
    RoomFacts,
    condition_matches,
    evaluate,
    glob_matches,
    highlights,
    lookup,
    notifies,
    split_path,
)
from trioserver.services.push.rules import (
    DefaultChange,
    PushRule,
    Ruleset,
    build_ruleset,
    check_new_rule_id,
    parse_actions,
    parse_conditions,
    predefined_rules,
)

ME = "@me:hs"
OTHER = "@other:hs"
ROOM = "!room:hs"
SOUND = {"set_tweak": "sound", "value": "default"}
HIGHLIGHT = {"set_tweak": "highlight"}

# Spec, "Predefined Rules" (v1.17+: the legacy body-mention rules are gone).
SPEC_ORDER = [
    ("override", ".m.rule.master"), ("override", ".m.rule.suppress_notices"),
    ("override", ".m.rule.invite_for_me"), ("override", ".m.rule.member_event"),
    ("override", ".m.rule.is_user_mention"), ("override", ".m.rule.is_room_mention"),
    ("override", ".m.rule.tombstone"), ("override", ".m.rule.reaction"),
    ("override", ".m.rule.room.server_acl"), ("override", ".m.rule.suppress_edits"),
    ("underride", ".m.rule.call"), ("underride", ".m.rule.encrypted_room_one_to_one"),
    ("underride", ".m.rule.room_one_to_one"), ("underride", ".m.rule.message"),
    ("underride", ".m.rule.encrypted"),
]


def event(event_type: str = "m.room.message", content: dict[str, Any] | None = None, *,
          sender: str = OTHER, state_key: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": "$e", "type": event_type, "sender": sender,
                           "room_id": ROOM, "content": content or {}}
    if state_key is not None:
        out["state_key"] = state_key
    return out


def text(body: str, **extra: Any) -> dict[str, Any]:
    return event(content={"msgtype": "m.text", "body": body, **extra})


def facts(members: int = 5, power: float = 0, levels: dict[str, int] | None = None
          ) -> RoomFacts:
    return RoomFacts(members, power, levels or {})


def defaults(changes: dict[tuple[str, str], DefaultChange] | None = None,
             own: list[PushRule] | None = None) -> Ruleset:
    return build_ruleset(ME, own or [], changes or {})


def matched(ev: dict[str, Any], room: RoomFacts | None = None, *,
            ruleset: Ruleset | None = None, name: str | None = "Me Myself") -> str | None:
    rule = evaluate(ruleset or defaults(), ev, room or facts(), name)
    return rule.rule_id if rule else None


def actions_for(ev: dict[str, Any], room: RoomFacts | None = None, **kw: Any
                ) -> tuple[Any, ...] | None:
    rule = evaluate(kw.pop("ruleset", None) or defaults(), ev, room or facts(), None)
    return rule.actions if rule else None


# -- the predefined rules --------------------------------------------------------------------


def test_predefined_rules_in_spec_order_with_the_user_id() -> None:
    rules = predefined_rules(ME)
    assert [(r.kind, r.rule_id) for r in rules] == SPEC_ORDER
    assert all(r.default for r in rules)
    assert [r.rule_id for r in rules if not r.enabled] == [".m.rule.master"]
    by_id = {r.rule_id: r for r in rules}
    assert by_id[".m.rule.invite_for_me"].conditions[2] == {
        "kind": "event_match", "key": "state_key", "pattern": ME}
    assert by_id[".m.rule.is_user_mention"].conditions == (
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
         "value": ME},)
    # The ruleset's JSON: every kind, conditions only on override/underride.
    as_json = defaults().to_json()
    assert as_json["content"] == as_json["room"] == as_json["sender"] == []
    assert as_json["underride"][0] == {
        "rule_id": ".m.rule.call", "default": True, "enabled": True,
        "actions": ["notify", {"set_tweak": "sound", "value": "ring"}],
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.call.invite"}]}


def test_master_is_off_by_default_and_silences_everything_when_on() -> None:
    assert matched(text("hi")) == ".m.rule.message"
    on = defaults({("override", ".m.rule.master"): DefaultChange(enabled=True)})
    for ev in (text("hi"), text("x", **{"m.mentions": {"user_ids": [ME]}}),
               event("m.room.member", {"membership": "invite"}, state_key=ME)):
        assert matched(ev, ruleset=on) == ".m.rule.master"
        assert actions_for(ev, ruleset=on) == ()


def test_suppress_notices() -> None:
    notice = event(content={"msgtype": "m.notice", "body": "beep"})
    assert matched(notice) == ".m.rule.suppress_notices"
    assert not notifies(actions_for(notice) or ())


def test_invite_for_me_and_member_events() -> None:
    invite = event("m.room.member", {"membership": "invite"}, state_key=ME)
    assert matched(invite) == ".m.rule.invite_for_me"
    assert actions_for(invite) == ("notify", SOUND)
    someone_else = event("m.room.member", {"membership": "invite"}, state_key=OTHER)
    assert matched(someone_else) == ".m.rule.member_event"
    assert actions_for(someone_else) == ()
    join = event("m.room.member", {"membership": "join"}, state_key=OTHER)
    assert matched(join) == ".m.rule.member_event"


def test_is_user_mention() -> None:
    mention = text("hello", **{"m.mentions": {"user_ids": [OTHER, ME]}})
    assert matched(mention) == ".m.rule.is_user_mention"
    actions = actions_for(mention) or ()
    assert notifies(actions)
    assert highlights(actions)
    assert matched(text("hello", **{"m.mentions": {"user_ids": [OTHER]}})) == ".m.rule.message"
    # The legacy body mention rules are gone: the user ID or name in the body does nothing.
    assert matched(text(f"hello {ME} me Me Myself")) == ".m.rule.message"


def test_is_room_mention_needs_the_notification_power() -> None:
    room_mention = text("all", **{"m.mentions": {"room": True}})
    assert matched(room_mention, facts(power=50)) == ".m.rule.is_room_mention"
    assert highlights(actions_for(room_mention, facts(power=50)) or ())
    assert matched(room_mention, facts(power=49)) == ".m.rule.message"
    # notifications.room from the power levels.
    assert matched(room_mention, facts(power=10, levels={"room": 10})) == \
        ".m.rule.is_room_mention"
    assert matched(room_mention, facts(power=99, levels={"room": 100})) == ".m.rule.message"
    assert matched(room_mention, facts(power=float("inf"), levels={"room": 100})) == \
        ".m.rule.is_room_mention"
    # `room` must be exactly true.
    assert matched(text("all", **{"m.mentions": {"room": "true"}}), facts(power=100)) == \
        ".m.rule.message"


def test_tombstone_only_for_the_state_event() -> None:
    tombstone = event("m.room.tombstone", {"body": "moved"}, state_key="")
    assert matched(tombstone) == ".m.rule.tombstone"
    assert highlights(actions_for(tombstone) or ())
    assert matched(event("m.room.tombstone", {"body": "moved"}, state_key="x")) is None
    assert matched(event("m.room.tombstone", {"body": "moved"})) is None


def test_reactions_server_acls_and_edits_are_suppressed() -> None:
    reaction = event("m.reaction", {"m.relates_to": {"rel_type": "m.annotation",
                                                     "event_id": "$t", "key": "x"}})
    assert matched(reaction) == ".m.rule.reaction"
    assert matched(event("m.room.server_acl", {"allow": ["*"]}, state_key="")) == \
        ".m.rule.room.server_acl"
    edit = text("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$t"}})
    assert matched(edit) == ".m.rule.suppress_edits"
    for ev in (reaction, edit):
        assert actions_for(ev) == ()
    # A reply is not an edit.
    reply = text("re", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$t"}}})
    assert matched(reply) == ".m.rule.message"


def test_underride_rules() -> None:
    assert matched(event("m.call.invite", {"call_id": "1"})) == ".m.rule.call"
    assert actions_for(event("m.call.invite")) == \
        ("notify", {"set_tweak": "sound", "value": "ring"})
    encrypted = event("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"})
    assert matched(encrypted, facts(2)) == ".m.rule.encrypted_room_one_to_one"
    assert actions_for(encrypted, facts(2)) == ("notify", SOUND)
    assert matched(encrypted, facts(3)) == ".m.rule.encrypted"
    assert actions_for(encrypted, facts(3)) == ("notify",)
    assert matched(text("hi"), facts(2)) == ".m.rule.room_one_to_one"
    assert actions_for(text("hi"), facts(2)) == ("notify", SOUND)
    assert matched(text("hi"), facts(3)) == ".m.rule.message"
    assert actions_for(text("hi"), facts(3)) == ("notify",)
    # Nothing matches other events at all.
    assert matched(event("m.room.topic", {"topic": "t"}, state_key="")) is None


# -- conditions ------------------------------------------------------------------------------


def test_event_match_globs_whole_values_case_insensitively() -> None:
    def topic(value: Any) -> dict[str, Any]:
        return event("m.room.topic", {"topic": value}, state_key="")

    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    for value, expected in (("Lunch plans", True), ("LUNCH", True), (" lunch", False),
                            ("lunc", False), (None, False), (5, False)):
        assert condition_matches(cond, topic(value), facts(), None) is expected, value
    anything = {"kind": "event_match", "key": "content.missing", "pattern": "*"}
    assert not condition_matches(anything, topic("x"), facts(), None)
    assert condition_matches({"kind": "event_match", "key": "state_key", "pattern": ""},
                             topic("x"), facts(), None)
    assert not condition_matches({"kind": "event_match", "key": "type"}, topic("x"), facts(),
                                 None)


def test_content_body_matches_at_word_boundaries() -> None:
    for body, expected in (("An example event.", True), ("exple", True),
                           ("An exciting triple-whammy", True), ("exampled", False),
                           ("anexample", False), ("ex_ple", True), ("ex_pled", False),
                           ("xex ple", False), ("EX ... PLE!", True),
                           ("line one\nexample", True), ("é example", True)):
        assert glob_matches("ex*ple", body, word_boundary=True) is expected, body
        cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
        assert condition_matches(cond, text(body), facts(), None) is expected, body
    # Any other key must match whole.
    assert not glob_matches("ex*ple", "An example", word_boundary=False)
    assert glob_matches("a?c", "abc", word_boundary=False)
    assert not glob_matches("a?c", "ac", word_boundary=False)
    assert glob_matches("a*", "a", word_boundary=False)
    assert glob_matches("*", "", word_boundary=False)
    assert glob_matches("a**b*c", "aXbYc", word_boundary=False)
    assert not glob_matches("ab*ba", "aba", word_boundary=False)  # pieces must not overlap
    assert glob_matches("[x]", "[X]", word_boundary=False)  # no character classes


def test_glob_matching_is_linear_in_the_body() -> None:
    body = "a" * 65_000 + " "
    start = time.perf_counter()
    assert not glob_matches("a*b*c*d", body, word_boundary=True)
    assert not glob_matches("a*a*a*a*b", body, word_boundary=False)
    assert glob_matches("a*a*a*a", body.strip(), word_boundary=False)
    assert time.perf_counter() - start < 0.5


def test_dot_separated_paths() -> None:
    assert split_path("content.m\\.relates_to.rel_type") == ("content", "m.relates_to",
                                                             "rel_type")
    assert split_path("content.m\\\\foo") == ("content", "m\\foo")
    assert split_path("content.a\\x") == ("content", "a\\x")
    assert split_path("type") == ("type",)
    ev = event(content={"m.relates_to": {"rel_type": "m.thread"}, "a": {"b": "c"}, "m": "no"})
    assert lookup(ev, "content.m\\.relates_to.rel_type") == "m.thread"
    assert lookup(ev, "content.a.b") == "c"
    through_a_string = {"kind": "event_match", "key": "content.a.b.c", "pattern": "*"}
    assert not condition_matches(through_a_string, ev, facts(), None)
    assert lookup(ev, "content.m") == "no"


def test_event_property_is_compares_exactly() -> None:
    def is_(value: Any, actual: Any) -> bool:
        cond = {"kind": "event_property_is", "key": "content.v", "value": value}
        return condition_matches(cond, event(content={"v": actual}), facts(), None)

    assert is_(True, True)
    assert not is_(True, 1)
    assert not is_(1, True)
    assert not is_(True, "true")
    assert is_(None, None)
    assert is_(2**53 - 1, 2**53 - 1)
    assert not is_(2**53, 2**53)  # beyond canonical JSON's integers
    assert not is_("a", "A")
    assert not is_(1, 1.0)
    assert not is_([1], [1])  # compound values never match
    missing = {"kind": "event_property_is", "key": "content.absent", "value": None}
    assert not condition_matches(missing, event(), facts(), None)


def test_event_property_contains() -> None:
    cond = {"kind": "event_property_contains", "key": "content.alt_aliases",
            "value": "#myroom:example.com"}

    def contains(aliases: Any) -> bool:
        ev = event("m.room.canonical_alias", {"alt_aliases": aliases}, state_key="")
        return condition_matches(cond, ev, facts(), None)

    assert contains(["#somewhere:example.org", "#myroom:example.com"])
    assert not contains([":example.com"])
    assert not contains("#myroom:example.com")
    assert not contains([["#myroom:example.com"]])
    assert contains([{"x": 1}, "#myroom:example.com"])
    flag = {"kind": "event_property_contains", "key": "content.v", "value": True}
    assert not condition_matches(flag, event(content={"v": [1]}), facts(), None)


def test_contains_display_name_at_word_boundaries() -> None:
    cond = {"kind": "contains_display_name"}
    for body, expected in (("hello alice!", True), ("Alice", True), ("malice", False),
                           ("alice_b", False), ("alice-b", True), ("al ice", False)):
        assert condition_matches(cond, text(body), facts(), "Alice") is expected, body
    # The name is literal text, not a glob or a regex.
    assert condition_matches(cond, text("hi a.b*"), facts(), "a.b*")
    assert not condition_matches(cond, text("hi aXbYY"), facts(), "a.b*")
    assert not condition_matches(cond, text("hi"), facts(), "")
    assert not condition_matches(cond, text("hi"), facts(), None)
    assert not condition_matches(cond, event(content={"body": 5}), facts(), "5")


@pytest.mark.parametrize(("spec", "count", "expected"), [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<3", 2, True), ("<3", 3, False),
    (">1", 2, True), (">2", 2, False), (">=2", 2, True), ("<=1", 2, False), ("<=2", 2, True),
    ("abc", 2, False), ("=2", 2, False), ("", 2, False), ("2.0", 2, False), (2, 2, False),
])
def test_room_member_count(spec: Any, count: int, expected: bool) -> None:
    cond = {"kind": "room_member_count", "is": spec}
    assert condition_matches(cond, text("x"), facts(count), None) is expected


def test_sender_notification_permission() -> None:
    cond = {"kind": "sender_notification_permission", "key": "room"}
    assert condition_matches(cond, text("x"), facts(power=50), None)
    assert not condition_matches(cond, text("x"), facts(power=49), None)
    assert condition_matches(cond, text("x"), facts(power=0, levels={"room": 0}), None)
    other = {"kind": "sender_notification_permission", "key": "other"}
    assert not condition_matches(other, text("x"), facts(power=49, levels={"room": 0}), None)
    assert not condition_matches({"kind": "sender_notification_permission"}, text("x"),
                                 facts(power=100), None)


def test_unknown_conditions_never_match() -> None:
    rule = PushRule("override", "mystery", ("notify",),
                    conditions=({"kind": "org.example.future"},))
    assert matched(text("hi"), ruleset=defaults(own=[rule])) == ".m.rule.message"
    always = PushRule("override", "always", (HIGHLIGHT,))
    assert matched(text("hi"), ruleset=defaults(own=[always])) == "always"


def test_actions() -> None:
    assert highlights(["notify", {"set_tweak": "highlight"}])
    assert highlights([{"set_tweak": "highlight", "value": True}])
    assert not highlights([{"set_tweak": "highlight", "value": False}])
    assert not highlights(["notify", SOUND])
    assert notifies(["notify"])
    assert not notifies([])


# -- user rules and changes to the defaults --------------------------------------------------


def test_user_rules_take_precedence_in_kind_order() -> None:
    mention = text("urgent", **{"m.mentions": {"user_ids": [ME]}})
    override = PushRule("override", "mine", ("notify",), conditions=(
        {"kind": "event_match", "key": "content.body", "pattern": "urgent"},))
    content = PushRule("content", "cake", ("notify", HIGHLIGHT), pattern="cake")
    room = PushRule("room", ROOM, ())
    sender = PushRule("sender", OTHER, ())
    underride = PushRule("underride", "fallback", ("notify",))
    ruleset = defaults(own=[underride, sender, room, content, override])
    order = [r.rule_id for r in ruleset.ordered()]
    assert order[:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]
    assert order.index("cake") < order.index(ROOM) < order.index(OTHER) < \
        order.index("fallback") < order.index(".m.rule.call")
    # A user override beats the default overrides (here .m.rule.is_user_mention).
    assert matched(mention, ruleset=ruleset) == "mine"
    # Content rules come next (word-bounded on the body), before room and sender rules.
    assert matched(text("Cake!"), ruleset=ruleset) == "cake"
    assert matched(text("cakes"), ruleset=ruleset) == ROOM
    elsewhere = {**text("cakes"), "room_id": "!else:hs"}
    assert matched(elsewhere, ruleset=ruleset) == OTHER
    by_someone = {**elsewhere, "sender": "@third:hs"}
    assert matched(by_someone, ruleset=ruleset) == "fallback"
    # A disabled rule is skipped.
    disabled = defaults(own=[PushRule("override", "mine", ("notify",), enabled=False)])
    assert matched(text("hi"), ruleset=disabled) == ".m.rule.message"


def test_changes_to_default_rules() -> None:
    ruleset = defaults({
        ("underride", ".m.rule.message"): DefaultChange(enabled=False),
        ("underride", ".m.rule.room_one_to_one"): DefaultChange(actions=("notify", HIGHLIGHT)),
    })
    assert matched(text("hi"), facts(3), ruleset=ruleset) is None
    assert actions_for(text("hi"), facts(2), ruleset=ruleset) == ("notify", HIGHLIGHT)
    rule = ruleset.find("underride", ".m.rule.message")
    assert rule is not None
    assert rule.to_json()["enabled"] is False
    assert rule.default


# -- validating client input -----------------------------------------------------------------


def test_parse_actions() -> None:
    assert parse_actions(["notify", "dont_notify", "coalesce", SOUND]) == ("notify", SOUND)
    assert parse_actions(["dont_notify"]) == ()
    for bad in ("notify", ["explode"], [{"value": 1}], [5], [{"set_tweak": 1}]):
        with pytest.raises(MatrixError):
            parse_actions(bad)


def test_parse_conditions_and_rule_ids() -> None:
    assert parse_conditions(None) == ()
    assert parse_conditions([{"kind": "x"}]) == ({"kind": "x"},)
    for bad in ({"kind": "x"}, [{"key": "type"}], ["x"]):
        with pytest.raises(MatrixError):
            parse_conditions(bad)
    assert check_new_rule_id("content", "nocake") == "nocake"
    for kind, rule_id in (("content", ".x"), ("content", "a/b"), ("content", "a\\b"),
                          ("content", ""), ("room", "x"), ("sender", "x"),
                          ("content", "x" * 300)):
        with pytest.raises(MatrixError):
            check_new_rule_id(kind, rule_id)


def test_a_shared_condition_cache_gives_each_recipient_their_own_result() -> None:
    """One cache serves all recipients of an event; user-specific conditions stay per user."""
    users = [f"@u{i}:hs" for i in range(4)]
    rulesets = {u: build_ruleset(u, [], {}) for u in users}
    events = [
        text("hello everyone"),
        text("ping", **{"m.mentions": {"user_ids": ["@u2:hs"]}}),
        text("hey U3name, look"),
        text("@room wake up", **{"m.mentions": {"room": True}}),
        event("m.room.member", {"membership": "invite"}, state_key="@u1:hs"),
        event("m.room.message", {"msgtype": "m.notice", "body": "n"}),
    ]
    names = {"@u3:hs": "U3name"}
    for ev in events:
        for room_facts in (facts(2), facts(10, power=100, levels={"room": 50})):
            cache: dict[tuple[Any, ...], bool] = {}
            for user in users:
                plain = evaluate(rulesets[user], ev, room_facts, names.get(user))
                shared = evaluate(rulesets[user], ev, room_facts, names.get(user), cache)
                assert shared == plain, (ev, user)
    mention = events[1]
    cache = {}
    results = {u: evaluate(rulesets[u], mention, facts(10), None, cache) for u in users}
    assert results["@u2:hs"] is not None
    assert results["@u2:hs"].rule_id == ".m.rule.is_user_mention"
    assert all(results[u] is None or results[u].rule_id != ".m.rule.is_user_mention"  # type: ignore[union-attr]
               for u in users if u != "@u2:hs")


# -- the shared evaluation of pure-default rulesets ---------------------------------------------


def _events_for_default_evaluation() -> list[dict[str, Any]]:
    """Events that reach every predefined rule, mentioning and inviting ME or others."""
    mentions = [{}, {"user_ids": [ME]}, {"user_ids": [OTHER]}, {"room": True},
                {"user_ids": [ME], "room": True}]
    out = [text("hi", **{"m.mentions": m}) for m in mentions]
    out += [event(content={"msgtype": "m.notice", "body": "n", "m.mentions": m})
            for m in mentions]
    out += [event("m.room.member", {"membership": "invite"}, state_key=u) for u in (ME, OTHER)]
    out += [event("m.room.member", {"membership": "join"}, state_key=ME),
            event("m.room.tombstone", {}, state_key=""), event("m.reaction", {}),
            event("m.room.server_acl", {}, state_key=""), event("m.call.invite", {}),
            event("m.room.encrypted", {"m.mentions": {"user_ids": [ME]}}),
            event("m.room.encrypted", {}), event("com.example.other", {}),
            text("edit", **{"m.relates_to": {"rel_type": "m.replace"},
                            "m.mentions": {"user_ids": [ME]}})]
    return out


@pytest.mark.parametrize("members", [2, 5])
@pytest.mark.parametrize("power", [0, 50])
def test_default_evaluation_equals_evaluate(members: int, power: float) -> None:
    """DefaultEvaluation (computed once per event) gives each pure-default recipient exactly
    what evaluating their whole ruleset gives."""
    users = [ME, OTHER, "@third:hs"]
    rulesets = {u: build_ruleset(u, [], {}) for u in users}
    assert all(r.pure_default for r in rulesets.values())
    room = facts(members, power)
    for ev in _events_for_default_evaluation():
        shared = DefaultEvaluation(ev, room, {})
        for user in users:
            expected = evaluate(rulesets[user], ev, room, None)
            assert shared.result(rulesets[user]) == expected, (ev, user)


def test_changed_or_own_rules_are_not_pure_default() -> None:
    assert defaults().pure_default
    assert not defaults({("override", ".m.rule.master"): DefaultChange(enabled=True)}
                        ).pure_default
    own = PushRule("room", ROOM, ("notify",))
    assert not defaults(own=[own]).pure_default
