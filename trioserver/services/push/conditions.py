"""Evaluating push rules against an event (Client-Server API, "Push Rules" > "Conditions").

Pure functions. An event is matched as a JSON object (`matchable(event)`); facts that are the
same for every recipient of an event (member count, the sender's power, the room's notification
levels) come in `RoomFacts`, and the one per-recipient fact (their display name) separately.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from trioserver.services.events.event import Event
from trioserver.services.push.rules import (
    DEFAULT_TEMPLATE,
    USER_DEPENDENT,
    PushRule,
    Ruleset,
)

# Spec: a word boundary is the start or end of the value, or any character not in
# [A-Z], [a-z], [0-9] or _.
_WORD = "A-Za-z0-9_"
_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]{1,9})")
# Integers event_property_is/contains can compare: canonical JSON's range.
_MAX_SAFE_INT = 2**53 - 1
# The `notifications` levels default to 50 (m.room.power_levels: notifications.room).
DEFAULT_NOTIFICATION_LEVEL = 50


@dataclass(frozen=True)
class RoomFacts:
    """What conditions need to know about the room and sender when the event arrives."""

    member_count: int
    sender_power: float
    notification_levels: Mapping[str, int] = field(default_factory=dict)


def matchable(event: Event) -> dict[str, Any]:
    """The event as push rules see it (its client-visible top-level properties)."""
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "sender": event.sender,
        "room_id": event.room_id,
        "origin_server_ts": event.origin_server_ts,
        "content": event.content,
    }
    if event.state_key is not None:
        out["state_key"] = event.state_key
    return out


# -- property paths and globs --------------------------------------------------------------------


@lru_cache(maxsize=1024)
def split_path(key: str) -> tuple[str, ...]:
    """A dot-separated property path (appendices): `\\.` is a literal dot, `\\\\` a literal
    backslash; any other backslash is itself."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        char = key[i]
        if char == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


_MISSING = object()


def lookup(event: Mapping[str, Any], key: str) -> Any:
    """The value at a property path, or `_MISSING`."""
    value: Any = event
    for part in split_path(key):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


@dataclass(frozen=True)
class Glob:
    """A compiled glob: the fixed-length pieces between its `*`s, each as a regex.

    Matching walks the pieces left to right, taking each piece's earliest occurrence: pieces
    have fixed lengths, so the earliest occurrence leaves the most room for the rest. That is
    linear in the value for any number of `*` (a backtracking `.*` regex is quadratic when
    searching a long body).
    """

    pieces: tuple[re.Pattern[str], ...]
    lengths: tuple[int, ...]
    # The first piece preceded by a word boundary, the last followed by one, and the single
    # piece of a pattern without `*` with both.
    first_at_boundary: re.Pattern[str]
    last_at_boundary: re.Pattern[str]
    whole_word: re.Pattern[str]


_FLAGS = re.IGNORECASE | re.DOTALL
_BEFORE = f"(?<![{_WORD}])"
_AFTER = f"(?![{_WORD}])"


@lru_cache(maxsize=4096)
def compile_glob(pattern: str, *, literal: bool = False) -> Glob:
    """`*` matches zero or more characters, `?` exactly one, case-insensitively; `literal`
    treats both as themselves (display names)."""
    texts = [pattern] if literal else pattern.split("*")
    sources = [re.escape(t) if literal else
               "".join("." if c == "?" else re.escape(c) for c in t) for t in texts]
    return Glob(
        pieces=tuple(re.compile(s, _FLAGS) for s in sources),
        lengths=tuple(len(t) for t in texts),
        first_at_boundary=re.compile(_BEFORE + sources[0], _FLAGS),
        last_at_boundary=re.compile(sources[-1] + _AFTER, _FLAGS),
        whole_word=re.compile(_BEFORE + sources[0] + _AFTER, _FLAGS),
    )


def glob_matches(pattern: str, value: str, *, word_boundary: bool,
                 literal: bool = False) -> bool:
    """Whether `pattern` matches the whole `value`, or with `word_boundary` any substring of
    it that starts and ends at a word boundary."""
    glob = compile_glob(pattern, literal=literal)
    if word_boundary:
        return _search_words(glob, value)
    return _full_match(glob, value)


def _middle(glob: Glob, value: str, pos: int) -> int | None:
    """Where the middle pieces (all but the first and last) end, taken earliest first."""
    for piece in glob.pieces[1:-1]:
        m = piece.search(value, pos)
        if m is None:
            return None
        pos = m.end()
    return pos


def _search_words(glob: Glob, value: str) -> bool:
    if len(glob.pieces) == 1:
        return glob.whole_word.search(value) is not None
    first = glob.first_at_boundary.search(value)
    if first is None:
        return False
    pos = _middle(glob, value, first.end())
    return pos is not None and glob.last_at_boundary.search(value, pos) is not None


def _full_match(glob: Glob, value: str) -> bool:
    if len(glob.pieces) == 1:
        return glob.pieces[0].fullmatch(value) is not None
    first = glob.pieces[0].match(value)
    if first is None:
        return False
    pos = _middle(glob, value, first.end())
    tail = len(value) - glob.lengths[-1]
    return pos is not None and tail >= pos and \
        glob.pieces[-1].fullmatch(value, tail) is not None


def _is_simple_json(value: Any) -> bool:
    """Non-compound canonical JSON: strings, booleans, null, integers in [-(2**53)+1,
    (2**53)-1]."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _json_equal(a: Any, b: Any) -> bool:
    """Exact JSON equality: no casts (True is not 1, "1" is not 1)."""
    if not (_is_simple_json(a) and _is_simple_json(b)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


# -- conditions ----------------------------------------------------------------------------------


def _event_match(cond: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    key, pattern = cond.get("key"), cond.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return False
    value = lookup(event, key)
    if not isinstance(value, str):
        return False
    return glob_matches(pattern, value, word_boundary=key == "content.body")


def _member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    m = _MEMBER_COUNT.fullmatch(spec.strip())
    if m is None:
        return False
    op, number = m.group(1) or "==", int(m.group(2))
    return {"==": count == number, "<": count < number, ">": count > number,
            "<=": count <= number, ">=": count >= number}[op]


def _contains_display_name(event: Mapping[str, Any], display_name: str | None) -> bool:
    body = lookup(event, "content.body")
    if not display_name or not isinstance(body, str):
        return False
    return glob_matches(display_name, body, word_boundary=True, literal=True)


def condition_matches(cond: Mapping[str, Any], event: Mapping[str, Any], room: RoomFacts,
                      display_name: str | None) -> bool:
    kind = cond.get("kind")
    if kind == "event_match":
        return _event_match(cond, event)
    if kind == "event_property_is":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        return _json_equal(lookup(event, key), cond["value"])
    if kind == "event_property_contains":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        values = lookup(event, key)
        return isinstance(values, list) and any(_json_equal(v, cond["value"]) for v in values)
    if kind == "contains_display_name":
        return _contains_display_name(event, display_name)
    if kind == "room_member_count":
        return _member_count_matches(cond.get("is"), room.member_count)
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        needed = room.notification_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
        return room.sender_power >= needed
    # Unrecognised conditions never match (the rule is in effect disabled).
    return False


ConditionCache = dict[tuple[Any, ...], bool]


def rule_matches(rule: PushRule, event: Mapping[str, Any], room: RoomFacts,
                 display_name: str | None, cache: ConditionCache | None = None) -> bool:
    """Whether `rule` matches. `cache`, shared by the recipients of one event (with the same
    room facts), remembers the results of rules that do not depend on the recipient."""
    if not rule.enabled:
        return False
    key = rule.shared_key if cache is not None else None
    if key is not None and cache is not None:
        found = cache.get(key)
        if found is None:
            found = cache[key] = _rule_matches(rule, event, room, display_name)
        return found
    return _rule_matches(rule, event, room, display_name)


def _rule_matches(rule: PushRule, event: Mapping[str, Any], room: RoomFacts,
                  display_name: str | None) -> bool:
    if rule.kind == "content":
        body = lookup(event, "content.body")
        return rule.pattern is not None and isinstance(body, str) and \
            glob_matches(rule.pattern, body, word_boundary=True)
    if rule.kind == "room":
        return event.get("room_id") == rule.rule_id
    if rule.kind == "sender":
        return event.get("sender") == rule.rule_id
    return all(condition_matches(c, event, room, display_name) for c in rule.conditions)


def evaluate(ruleset: Ruleset, event: Mapping[str, Any], room: RoomFacts,
             display_name: str | None, cache: ConditionCache | None = None
             ) -> PushRule | None:
    """The highest-priority enabled rule that matches, or None."""
    for rule in ruleset.ordered():
        if rule_matches(rule, event, room, display_name, cache):
            return rule
    return None


class DefaultEvaluation:
    """`evaluate` for the many recipients of one event whose ruleset is pure default.

    Such rulesets differ only in the rules that name the user (invite_for_me, is_user_mention),
    so the first matching rule among the others is found once, and per recipient only the rules
    naming them that come before it are checked: a big room costs a few checks per member
    instead of the whole ruleset.
    """

    def __init__(self, event: Mapping[str, Any], room: RoomFacts,
                 cache: ConditionCache) -> None:
        self._event = event
        self._room = room
        self._first: int | None = None
        for i, rule in enumerate(DEFAULT_TEMPLATE.ordered_rules):
            if i not in USER_DEPENDENT and rule_matches(rule, event, room, None, cache):
                self._first = i
                break
        self._checks = tuple(i for i in USER_DEPENDENT if self._first is None or i < self._first)

    def result(self, ruleset: Ruleset) -> PushRule | None:
        """What `evaluate` gives for `ruleset` (which must be pure default)."""
        rules = ruleset.ordered_rules
        for i in self._checks:
            if rule_matches(rules[i], self._event, self._room, None):
                return rules[i]
        return rules[self._first] if self._first is not None else None


def notifies(actions: Sequence[Any]) -> bool:
    return "notify" in actions


def highlights(actions: Sequence[Any]) -> bool:
    """A `highlight` tweak without a value means true; absent means false."""
    return any(isinstance(a, Mapping) and a.get("set_tweak") == "highlight"
               and a.get("value", True) is True for a in actions)
