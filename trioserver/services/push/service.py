"""A user's push rules: reading (cached), creating, ordering, enabling, deleting.

Server-default rules are computed, never stored; a user's changes to them (enabled, actions)
are stored beside the user's own rules. Rulesets are cached per user because every event is
evaluated against the rules of every member of its room; a write drops the user's entry.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import apsw

from trioserver.concurrency import KeyedSerializer
from trioserver.errors import Codes, MatrixError, not_found
from trioserver.services.push.rules import (
    MAX_RULE_JSON_BYTES,
    PREDEFINED_IDS,
    DefaultChange,
    PushRule,
    Ruleset,
    build_ruleset,
    check_kind,
    check_new_rule_id,
    parse_actions,
    parse_conditions,
)
from trioserver.storage.db import Database
from trioserver.storage.repositories import push as push_repo

RULESET_CACHE_SIZE = 10_000
PUSH_RULES_TYPE = "m.push_rules"


def _load(conn: apsw.Connection, user_id: str) -> Ruleset:
    own = [
        PushRule(r.kind, r.rule_id, tuple(r.actions), enabled=r.enabled,
                 conditions=tuple(c for c in r.conditions or () if isinstance(c, dict)),
                 pattern=r.pattern)
        for r in push_repo.user_rules(conn, user_id)
    ]
    changes = {
        (d.kind, d.rule_id): DefaultChange(d.enabled,
                                           None if d.actions is None else tuple(d.actions))
        for d in push_repo.default_changes(conn, user_id)
    }
    return build_ruleset(user_id, own, changes)


class GlobalAccountData(Protocol):
    """Where the rules are published as `m.push_rules` (the account data service)."""

    async def set_account_data(self, user_id: str, data_type: str,
                               content: dict[str, Any]) -> None: ...


class PushRules:
    def __init__(self, db: Database, account_data: GlobalAccountData | None = None, *,
                 cache_size: int = RULESET_CACHE_SIZE) -> None:
        self._db = db
        self._account_data = account_data
        self._serializer = KeyedSerializer()
        self._cache: OrderedDict[str, Ruleset] = OrderedDict()
        self._cache_size = cache_size
        # Bumped on every change: a load that raced with a change is not cached.
        self._generation: dict[str, int] = {}

    # -- reading --------------------------------------------------------------------------

    async def ruleset(self, user_id: str) -> Ruleset:
        return (await self.rulesets([user_id]))[user_id]

    async def rulesets(self, user_ids: Iterable[str]) -> dict[str, Ruleset]:
        """Rulesets of several users (one database read for those not cached)."""
        out: dict[str, Ruleset] = {}
        missing: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._cache.get(user_id)
            if cached is None:
                missing.append(user_id)
            else:
                self._cache.move_to_end(user_id)
                out[user_id] = cached
        if missing:
            generations = {u: self._generation.get(u, 0) for u in missing}
            loaded = await self._db.read(lambda c: {u: _load(c, u) for u in missing})
            for user_id, ruleset in loaded.items():
                out[user_id] = ruleset
                if self._generation.get(user_id, 0) == generations[user_id]:
                    self._remember(user_id, ruleset)
        return out

    def _remember(self, user_id: str, ruleset: Ruleset) -> None:
        self._cache[user_id] = ruleset
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _changed(self, user_id: str) -> None:
        self._cache.pop(user_id, None)
        self._generation[user_id] = self._generation.get(user_id, 0) + 1

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> PushRule:
        rule = (await self.ruleset(user_id)).find(check_kind(kind), rule_id)
        if rule is None:
            raise not_found("The push rule was not found.")
        return rule

    async def initial_account_data(self, user_id: str) -> dict[str, Any]:
        """The `m.push_rules` account data event for an initial /sync (clients read their
        rules from there even before they ever changed one)."""
        ruleset = await self.ruleset(user_id)
        return {"type": PUSH_RULES_TYPE, "content": {"global": ruleset.to_json()}}

    # -- writing --------------------------------------------------------------------------

    async def _change(self, user_id: str, fn: Callable[[apsw.Connection], None]) -> None:
        """Run a change of the user's rules; then drop the cached ruleset and publish the new
        one as the `m.push_rules` account data (spec "Push Rules: Events"). One user's changes
        run one at a time, so the published rules are never older than the stored ones."""
        async with self._serializer.hold(user_id):
            try:
                await self._db.write(fn)
            finally:
                self._changed(user_id)
            if self._account_data is not None:
                ruleset = await self.ruleset(user_id)
                await self._account_data.set_account_data(user_id, PUSH_RULES_TYPE,
                                                          {"global": ruleset.to_json()})

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: Mapping[str, Any],
                       *, before: str | None = None, after: str | None = None) -> None:
        """PUT /pushrules/global/{kind}/{ruleId}: create or update a user rule; `before` /
        `after` (before wins if both) place it next to another user rule."""
        check_kind(kind)
        check_new_rule_id(kind, rule_id)
        if "actions" not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'actions'")
        actions = parse_actions(body["actions"])
        conditions: tuple[Mapping[str, Any], ...] | None = None
        pattern: str | None = None
        if kind in ("override", "underride"):
            conditions = parse_conditions(body.get("conditions"))
        elif kind == "content":
            pattern = body.get("pattern")
            if not isinstance(pattern, str):
                raise MatrixError(400, Codes.MISSING_PARAM, "Content rules need a 'pattern'")
        size = len(json.dumps([actions, conditions, pattern]).encode())
        if size > MAX_RULE_JSON_BYTES:
            raise MatrixError(400, Codes.TOO_LARGE, "Push rule is too large")
        anchor = before if before is not None else after
        if anchor is not None and (anchor.startswith(".") or anchor == rule_id):
            raise MatrixError(400, Codes.UNKNOWN,
                              f"Cannot place a rule relative to {anchor[:64]!r}")

        def txn(conn: apsw.Connection) -> None:
            if anchor is not None and anchor not in push_repo.rule_order(conn, user_id, kind):
                raise MatrixError(400, Codes.UNKNOWN,
                                  f"before/after rule not found: {anchor[:64]}")
            push_repo.upsert_rule(conn, user_id, kind, rule_id, conditions, pattern, actions)
            if anchor is not None:
                order = [r for r in push_repo.rule_order(conn, user_id, kind) if r != rule_id]
                index = order.index(anchor) + (0 if before is not None else 1)
                order.insert(index, rule_id)
                push_repo.set_rule_order(conn, user_id, kind, order)

        await self._change(user_id, txn)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if (kind, rule_id) in PREDEFINED_IDS:
            raise MatrixError(400, Codes.INVALID_PARAM, "Server-default rules cannot be deleted")

        def txn(conn: apsw.Connection) -> None:
            if not push_repo.delete_rule(conn, user_id, kind, rule_id):
                raise not_found("The push rule was not found.")

        await self._change(user_id, txn)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        check_kind(kind)

        def txn(conn: apsw.Connection) -> None:
            if (kind, rule_id) in PREDEFINED_IDS:
                push_repo.set_default_enabled(conn, user_id, kind, rule_id, enabled)
            elif not push_repo.set_rule_enabled(conn, user_id, kind, rule_id, enabled):
                raise not_found("The push rule was not found.")

        await self._change(user_id, txn)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, raw: Any) -> None:
        check_kind(kind)
        actions = parse_actions(raw)

        def txn(conn: apsw.Connection) -> None:
            if (kind, rule_id) in PREDEFINED_IDS:
                push_repo.set_default_actions(conn, user_id, kind, rule_id, actions)
            elif not push_repo.set_rule_actions(conn, user_id, kind, rule_id, actions):
                raise not_found("The push rule was not found.")

        await self._change(user_id, txn)
