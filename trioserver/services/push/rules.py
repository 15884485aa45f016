"""Push rules as data: the rule model, the spec's predefined rules, a user's ruleset.

The predefined ("server-default") rules are those of the Client-Server API, "Push Notifications"
> "Predefined Rules", in the spec's order. Spec v1.17 (MSC4210) removed the legacy rules that
looked for mentions in `content.body` (.m.rule.contains_display_name, .m.rule.roomnotif,
.m.rule.contains_user_name), so they are not here; the `contains_display_name` condition itself
is still defined (deprecated) and is evaluated for user rules that use it.

A user's ruleset, per kind in priority order: `.m.rule.master` first (it outranks even user
rules), then the user's rules of that kind, then the remaining server-default rules of that kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from trioserver.errors import Codes, MatrixError

# In the order they are checked.
KINDS = ("override", "content", "room", "sender", "underride")
# Historical actions that MUST be ignored (stripped), not rejected.
IGNORED_ACTIONS = frozenset({"dont_notify", "coalesce"})
MAX_RULE_ID_BYTES = 255
MAX_RULE_JSON_BYTES = 16_384

_USER = "[the user's Matrix ID]"  # placeholder in the spec's definitions
_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


# (kind, rule_id, enabled, conditions, actions), exactly as the spec lists them.
_PREDEFINED: tuple[tuple[str, str, bool, list[dict[str, Any]], list[Any]], ...] = (
    ("override", ".m.rule.master", False, [], []),
    ("override", ".m.rule.suppress_notices", True,
     [_match("content.msgtype", "m.notice")], []),
    ("override", ".m.rule.invite_for_me", True,
     [_match("type", "m.room.member"), _match("content.membership", "invite"),
      _match("state_key", _USER)],
     ["notify", _SOUND_DEFAULT]),
    ("override", ".m.rule.member_event", True, [_match("type", "m.room.member")], []),
    ("override", ".m.rule.is_user_mention", True,
     [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
       "value": _USER}],
     ["notify", _SOUND_DEFAULT, _HIGHLIGHT]),
    ("override", ".m.rule.is_room_mention", True,
     [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
      {"kind": "sender_notification_permission", "key": "room"}],
     ["notify", _HIGHLIGHT]),
    ("override", ".m.rule.tombstone", True,
     [_match("type", "m.room.tombstone"), _match("state_key", "")],
     ["notify", _HIGHLIGHT]),
    ("override", ".m.rule.reaction", True, [_match("type", "m.reaction")], []),
    ("override", ".m.rule.room.server_acl", True,
     [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
    ("override", ".m.rule.suppress_edits", True,
     [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type",
       "value": "m.replace"}], []),
    ("underride", ".m.rule.call", True, [_match("type", "m.call.invite")],
     ["notify", {"set_tweak": "sound", "value": "ring"}]),
    ("underride", ".m.rule.encrypted_room_one_to_one", True,
     [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
     ["notify", _SOUND_DEFAULT]),
    ("underride", ".m.rule.room_one_to_one", True,
     [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
     ["notify", _SOUND_DEFAULT]),
    ("underride", ".m.rule.message", True, [_match("type", "m.room.message")], ["notify"]),
    ("underride", ".m.rule.encrypted", True, [_match("type", "m.room.encrypted")], ["notify"]),
)

MASTER_RULE_ID = ".m.rule.master"
PREDEFINED_IDS: frozenset[tuple[str, str]] = frozenset((k, r) for k, r, *_ in _PREDEFINED)


@dataclass(frozen=True)
class PushRule:
    kind: str
    rule_id: str
    actions: tuple[Any, ...]
    enabled: bool = True
    default: bool = False
    conditions: tuple[Mapping[str, Any], ...] = ()  # override and underride rules
    pattern: str | None = None  # content rules

    @cached_property
    def shared_key(self) -> tuple[Any, ...] | None:
        """What this rule's match depends on besides the event and room, when that is the same
        for every recipient (None when it depends on the recipient, e.g. a display name).

        Recipients of one event can share the result of rules with equal keys.
        """
        if self.kind in ("room", "sender"):
            return (self.kind, self.rule_id)
        if self.kind == "content":
            return ("content", self.pattern)
        keys: list[tuple[Any, ...]] = []
        for cond in self.conditions:
            kind = cond.get("kind")
            value = cond.get("value")
            if kind == "contains_display_name" or isinstance(value, list | dict):
                return None
            keys.append((kind, cond.get("key"), cond.get("pattern"), type(value).__name__,
                         value, cond.get("is")))
        return ("conditions", tuple(keys))

    def to_json(self) -> dict[str, Any]:
        """The PushRule object of the API."""
        out: dict[str, Any] = {"rule_id": self.rule_id, "default": self.default,
                               "enabled": self.enabled, "actions": list(self.actions)}
        if self.kind in ("override", "underride"):
            out["conditions"] = [dict(c) for c in self.conditions]
        elif self.kind == "content":
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True)
class DefaultChange:
    """What a user changed on a server-default rule (None: as the default)."""

    enabled: bool | None = None
    actions: tuple[Any, ...] | None = None


def _substitute(value: Any, user_id: str) -> Any:
    if value == _USER:
        return user_id
    if isinstance(value, dict):
        return {k: _substitute(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, user_id) for v in value]
    return value


def predefined_rules(user_id: str) -> list[PushRule]:
    """The server-default rules for `user_id`, in the spec's order."""
    return [
        PushRule(kind, rule_id, tuple(actions), enabled=enabled, default=True,
                 conditions=tuple(_substitute(conditions, user_id)))
        for kind, rule_id, enabled, conditions, actions in _PREDEFINED
    ]


@dataclass(frozen=True)
class Ruleset:
    """One user's rules, per kind in priority order."""

    by_kind: Mapping[str, tuple[PushRule, ...]]
    # Only the server-default rules, none changed: the same rules as every such user's, but
    # for the user ID substituted in them (see `user_dependent`).
    pure_default: bool = False

    def ordered(self) -> Iterator[PushRule]:
        """Every rule in the order evaluation checks them."""
        for kind in KINDS:
            yield from self.by_kind.get(kind, ())

    @cached_property
    def ordered_rules(self) -> tuple[PushRule, ...]:
        return tuple(self.ordered())

    def find(self, kind: str, rule_id: str) -> PushRule | None:
        return next((r for r in self.by_kind.get(kind, ()) if r.rule_id == rule_id), None)

    def to_json(self) -> dict[str, Any]:
        """The Ruleset object of the API (every kind present, possibly empty)."""
        return {kind: [r.to_json() for r in self.by_kind.get(kind, ())] for kind in KINDS}


def build_ruleset(user_id: str, user_rules: Sequence[PushRule],
                  changes: Mapping[tuple[str, str], DefaultChange]) -> Ruleset:
    """Assemble a ruleset from the user's own rules (each kind in its stored order) and the
    server-default rules with the user's changes applied."""
    defaults: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    for rule in predefined_rules(user_id):
        change = changes.get((rule.kind, rule.rule_id))
        if change is not None:
            rule = replace(
                rule,
                enabled=rule.enabled if change.enabled is None else change.enabled,
                actions=rule.actions if change.actions is None else change.actions)
        defaults[rule.kind].append(rule)
    own: dict[str, list[PushRule]] = {kind: [] for kind in KINDS}
    for rule in user_rules:
        own[rule.kind].append(rule)
    by_kind: dict[str, tuple[PushRule, ...]] = {}
    for kind in KINDS:
        first = [r for r in defaults[kind] if r.rule_id == MASTER_RULE_ID]
        rest = [r for r in defaults[kind] if r.rule_id != MASTER_RULE_ID]
        by_kind[kind] = (*first, *own[kind], *rest)
    return Ruleset(by_kind, pure_default=not user_rules and not changes)


def _mentions_user(value: Any) -> bool:
    if value == _USER:
        return True
    if isinstance(value, Mapping):
        return any(_mentions_user(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions_user(v) for v in value)
    return False


# The server-default ruleset with the placeholder for the user ID, and the positions (in
# evaluation order) of the rules that name the user: for a pure-default ruleset every other
# rule is the same for every user, so its result for an event can be computed once.
DEFAULT_TEMPLATE = build_ruleset(_USER, (), {})
USER_DEPENDENT: tuple[int, ...] = tuple(
    i for i, rule in enumerate(DEFAULT_TEMPLATE.ordered_rules)
    if _mentions_user(rule.conditions) or rule.pattern == _USER or rule.shared_key is None)


# -- validating client input -------------------------------------------------------------------


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown push rule kind {kind[:32]!r}")
    return kind


def check_new_rule_id(kind: str, rule_id: str) -> str:
    """A rule ID a client may create (PUT): not server-default, no slashes."""
    if rule_id.startswith("."):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Rule IDs starting with '.' are reserved for server-default rules")
    if not rule_id or "/" in rule_id or "\\" in rule_id or \
            len(rule_id.encode()) > MAX_RULE_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid rule ID")
    if kind == "room" and not rule_id.startswith("!"):
        raise MatrixError(400, Codes.INVALID_PARAM, "A room rule's ID is a room ID")
    if kind == "sender" and not rule_id.startswith("@"):
        raise MatrixError(400, Codes.INVALID_PARAM, "A sender rule's ID is a user ID")
    return rule_id


def parse_actions(value: Any) -> tuple[Any, ...]:
    """A rule's actions: strings and {"set_tweak": ...} objects; historical actions
    (dont_notify, coalesce) are accepted and stripped."""
    if not isinstance(value, list):
        raise MatrixError(400, Codes.BAD_JSON, "'actions' must be a list")
    out: list[Any] = []
    for action in value:
        if isinstance(action, str):
            if action in IGNORED_ACTIONS:
                continue
            if action != "notify":
                raise MatrixError(400, Codes.INVALID_PARAM,
                                  f"Unrecognised action {action[:32]!r}")
            out.append(action)
        elif isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            out.append(action)
        else:
            raise MatrixError(400, Codes.INVALID_PARAM,
                              "Actions are strings or objects with a 'set_tweak'")
    return tuple(out)


def parse_conditions(value: Any) -> tuple[Mapping[str, Any], ...]:
    """Conditions are objects with a string `kind`; kinds this server does not know are kept
    (and never match, as the spec requires)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(c, dict) and isinstance(c.get("kind"), str) for c in value):
        raise MatrixError(400, Codes.BAD_JSON,
                          "'conditions' must be a list of objects with a string 'kind'")
    return tuple(value)
