"""Push actions: what each new event means for each local member, and GET /notifications.

`PushActions.prepare` runs in the append pipeline after an event batch is built and before it
is written, under the room's serializer. For every joined local member other than the sender
(and a local user invited by the event) it evaluates their push rules - except users an
application service claims exclusively (bridged "ghosts" never read their notifications; as in
Synapse, they get no push actions or unread counts); the actions of matching
rules that include "notify" are then written in the events' own transaction, so a woken /sync
sees the counts together with the events and a send costs one commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import is_local_user
from trioserver.services.clock import now_ms
from trioserver.services.events import auth_rules
from trioserver.services.events.event import Event
from trioserver.services.events.power_levels import parse_level
from trioserver.services.push.conditions import (
    ConditionCache,
    DefaultEvaluation,
    RoomFacts,
    evaluate,
    highlights,
    matchable,
    notifies,
)
from trioserver.services.push.service import PushRules
from trioserver.services.push.threads import thread_of
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.reads import RoomReader
from trioserver.services.stream_position import StreamPosition
from trioserver.storage.db import Database
from trioserver.storage.repositories import push as push_repo
from trioserver.storage.repositories import receipts as receipts_repo
from trioserver.storage.repositories.events import StateMap

MAX_NOTIFICATIONS_LIMIT = 1000


def notification_levels(power_levels: Event | None) -> dict[str, int]:
    """The `notifications` levels of m.room.power_levels (invalid entries left out)."""
    if power_levels is None:
        return {}
    raw = power_levels.content.get("notifications")
    if not isinstance(raw, Mapping):
        return {}
    levels = {k: parse_level(v, power_levels.room_version) for k, v in raw.items()}
    return {k: v for k, v in levels.items() if v is not None}


def display_name(member: Event | None) -> str | None:
    name = member.content.get("displayname") if member is not None else None
    return name if isinstance(name, str) else None


@dataclass(frozen=True)
class _PendingAction:
    event_index: int
    user_id: str
    thread: str
    highlight: bool
    actions: Sequence[Any]


@dataclass(frozen=True)
class Notified:
    """A committed notification of one event for one local user (handed to push delivery)."""

    user_id: str
    event: Event
    highlight: bool
    actions: Sequence[Any]


# Called after a batch with notifications committed: (room ID, state after, notifications).
# Must not block: it runs in the append path.
NotifyListener = Callable[[str, StateMap, Sequence[Notified]], None]


@dataclass
class PreparedActions:
    """Push actions of a batch, to be written inside the batch's own transaction."""

    room_id: str
    unread_position: StreamPosition
    actions: list[_PendingAction] = field(default_factory=list)
    changed: set[tuple[str, str]] = field(default_factory=set)
    redacted: list[str] = field(default_factory=list)
    position: int | None = None
    events: Sequence[Event] = ()
    state_after: StateMap | None = None
    listeners: Sequence[NotifyListener] = ()

    def write(self, conn: apsw.Connection, orderings: Sequence[int]) -> None:
        ts = now_ms()
        push_repo.insert_actions(conn, [
            push_repo.ActionRow(a.user_id, self.room_id, orderings[a.event_index], a.thread,
                                a.highlight, a.actions, ts) for a in self.actions])
        for event_id in self.redacted:
            self.changed.update(push_repo.delete_actions_of_event(conn, event_id))
        self.position = receipts_repo.mark_unread_changed(conn, sorted(self.changed))

    def committed(self) -> None:
        if self.position is not None:
            self.unread_position.advance(self.position)
        if self.actions and self.listeners and self.state_after is not None:
            notified = [Notified(a.user_id, self.events[a.event_index], a.highlight, a.actions)
                        for a in self.actions]
            for listener in self.listeners:
                listener(self.room_id, self.state_after, notified)


class PushActions:
    def __init__(self, *, server_name: str, db: Database, cache: RoomCache, rules: PushRules,
                 unread_position: StreamPosition, reader: RoomReader) -> None:
        self._server_name = server_name
        self._db = db
        self._cache = cache
        self._rules = rules
        self._unread_position = unread_position
        self._reader = reader
        self._notify_listeners: list[NotifyListener] = []
        # Set by the composition root: whether an appservice claims the user exclusively.
        self.exclusive_appservice_user: Callable[[str], bool] | None = None
        self._skip: dict[str, bool] = {}

    def _skipped(self, user_id: str) -> bool:
        known = self._skip.get(user_id)
        if known is None:
            check = self.exclusive_appservice_user
            known = check is not None and check(user_id)
            if len(self._skip) >= 100_000:
                self._skip.clear()
            self._skip[user_id] = known
        return known

    def add_notify_listener(self, listener: NotifyListener) -> None:
        """Call `listener` after each committed batch that notified someone."""
        self._notify_listeners.append(listener)

    def _is_local(self, user_id: str) -> bool:
        return is_local_user(user_id, self._server_name)

    async def _load_event(self, event_id: str) -> Event | None:
        return (await self._cache.events([event_id])).get(event_id)

    async def prepare(self, room_id: str, state_after: StateMap, events: Sequence[Event]
                      ) -> PreparedActions | None:
        """Evaluate the push rules of every recipient of `events` before they are written.

        The result is written inside the events' own transaction (so a count is never seen
        without its event or the other way round) and costs no extra commit. `state_after` is
        the room state after the batch.
        """
        member_ids = {k: e for (t, k), e in state_after.items() if t == "m.room.member"}
        loaded = await self._cache.events(member_ids.values())
        members = {u: loaded[e] for u, e in member_ids.items() if e in loaded}
        joined = [u for u, m in members.items() if m.membership == "join"]
        local_joined = [u for u in joined if self._is_local(u) and not self._skipped(u)]
        keys = [k for k in (("m.room.create", ""), ("m.room.power_levels", ""))
                if k in state_after]
        found = await self._cache.events(state_after[k] for k in keys)
        auth_state = {k: found[state_after[k]] for k in keys if state_after[k] in found}
        levels = notification_levels(auth_state.get(("m.room.power_levels", "")))

        prepared = PreparedActions(room_id, self._unread_position, events=events,
                                   state_after=state_after,
                                   listeners=tuple(self._notify_listeners))
        for index, event in enumerate(events):
            if event.redacts is not None:
                prepared.redacted.append(event.redacts)
            recipients = [u for u in local_joined if u != event.sender]
            if event.type == "m.room.member" and event.state_key is not None and \
                    self._is_local(event.state_key) and not self._skipped(event.state_key):
                if event.membership == "join":
                    prepared.changed.add((event.state_key, room_id))  # counts start afresh
                elif event.membership == "invite" and event.state_key != event.sender:
                    recipients.append(event.state_key)
            if not recipients:
                continue
            rulesets = await self._rules.rulesets(recipients)
            facts = RoomFacts(len(joined), auth_rules.power_level(event.sender, auth_state),
                              levels)
            data = matchable(event)
            thread: str | None = None
            cache: ConditionCache = {}  # shared by this event's recipients
            defaults: DefaultEvaluation | None = None
            for user_id in recipients:
                ruleset = rulesets[user_id]
                if ruleset.pure_default:
                    if defaults is None:
                        defaults = DefaultEvaluation(data, facts, cache)
                    rule = defaults.result(ruleset)
                else:
                    rule = evaluate(ruleset, data, facts, display_name(members.get(user_id)),
                                    cache)
                if rule is None or not notifies(rule.actions):
                    continue
                if thread is None:
                    thread = await thread_of(event, self._load_event)
                prepared.actions.append(_PendingAction(index, user_id, thread,
                                                       highlights(rule.actions), rule.actions))
                prepared.changed.add((user_id, room_id))
        if not prepared.actions and not prepared.changed and not prepared.redacted:
            return None
        return prepared

    # -- GET /notifications ---------------------------------------------------------------

    async def notifications(self, user_id: str, from_token: str | None, limit: int,
                            only: str | None) -> dict[str, Any]:
        before = None
        if from_token is not None:
            if not from_token.isdigit() or len(from_token) > 18:
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid 'from' token")
            before = int(from_token)
        limit = max(1, min(limit, MAX_NOTIFICATIONS_LIMIT))
        found = await self._db.read(lambda c: push_repo.notifications(
            c, user_id, before, limit, only == "highlight"))
        events = await self._cache.events(n.event_id for n in found)
        present = [n for n in found if n.event_id in events]
        formatted = await self._reader.format([events[n.event_id] for n in present])
        out: list[dict[str, Any]] = []
        for n, event in zip(present, formatted, strict=True):
            event.pop("room_id", None)
            out.append({"actions": list(n.row.actions), "event": event, "read": n.read,
                        "room_id": n.row.room_id, "ts": n.row.ts})
        body: dict[str, Any] = {"notifications": out}
        if len(found) == limit:
            body["next_token"] = str(found[-1].row.stream_ordering)
        return body
