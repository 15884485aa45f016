"""The authorisation rules of room versions 1-12 (pure functions, no I/O).

Sources: rooms/v1.md ... v12.md "Authorisation rules" (fragments v1-auth-rules, v3-auth-rules,
v8-auth-rules; v6, v7, v10, v11, v12 spell theirs out), rooms/v1.md "m.room.power_levels events
accept values as strings / as floats", server-server-api.md "Auth events selection" and
"Definitions". Split over modules of this package:

- auth_rules (here): `check_event`, the rules themselves.
- auth_events: `auth_types_for_event` (the selection algorithm) and `check_auth_events` (rule 2,
  v12: 3, about the `auth_events` list as such).
- auth_numbers: `AuthError` and each version's rule numbering (documented there).
- power_levels: parsing levels per version, defaults, creators, `power_level`,
  `required_level`, `membership_of`.

All of the public names are importable from here.

`check_event` applies the rules to an event given the state it is authorised against. Rule 2
(v12: 3) concerns the event's `auth_events` list (duplicates, unexpected or rejected entries);
a mapping cannot express duplicates, so for a received event call `check_auth_events` first: it
checks those and returns the mapping `check_event` takes.

Choices where the spec is silent (see also power_levels.py):

- No m.room.join_rules event counts as join rule "invite": only members and invitees may join.
- v1-9 power levels: besides `users` (rule text), any value the rules read (top-level levels,
  `events`, and from v6 `notifications`) must parse as the stringy/floaty fragments allow, else
  the event is rejected under the `users` validation rule (the fragments say such values must
  be integers / invalid floats reject the event, without a rule number of their own).
- An absent `users` property is valid (v10 speaks of properties "present and not ...").
- A member event with `join_authorised_via_users_server` whose value is not a user ID cannot be
  signed by "the homeserver of the user ID denoted by the key": rejected (v8+ rule 4.2.1).
- Rule 2.5 (v12: 3.4, "auth event in another room") is also applied by `check_event` to the
  auth_state entries it consults, and to the create event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from trioserver.services.events import canonical_json
from trioserver.services.events.auth_events import (
    ALIASES,
    AUTHORISER,
    CREATE,
    MEMBER,
    POWER_LEVELS,
    REDACTION,
    THIRD_PARTY_INVITE,
    auth_types_for_event,
    check_auth_events,
    check_room_is_create,
    get_path,
)
from trioserver.services.events.auth_numbers import AuthError, RuleNumbers, rule_numbers
from trioserver.services.events.event import Event, StateKey
from trioserver.services.events.hashing import decode_unpadded_b64
from trioserver.services.events.power_levels import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    invalid_level_maps,
    invalid_named_levels,
    invalid_users,
    is_valid_user_id,
    level_map_keys,
    map_changes,
    membership_of,
    named_level,
    named_level_changes,
    power_level,
    privileged_creators,
    required_level,
    room_creator,
    server_of,
)
from trioserver.services.events.room_versions import ROOM_VERSIONS, RoomVersion

__all__ = [
    "AuthError",
    "ServerSignatureVerifier",
    "auth_types_for_event",
    "check_auth_events",
    "check_event",
    "membership_of",
    "no_server_signatures",
    "power_level",
    "required_level",
]

# (event, server_name) -> whether the event carries a valid signature from that server.
ServerSignatureVerifier = Callable[[Event, str], bool]


def no_server_signatures(event: Event, server_name: str) -> bool:
    """The default verifier: no signature counts, so v8+ member events carrying
    join_authorised_via_users_server are rejected (rule 4.2.1) unless the caller supplies a
    verifier that checks the event's signatures against that server's keys."""
    return False


# --- the rules -------------------------------------------------------------------------------


def check_event(
    event: Event,
    auth_state: Mapping[StateKey, Event],
    create_event: Event | None = None,
    *,
    verify_server_signature: ServerSignatureVerifier = no_server_signatures,
) -> None:
    """Raise AuthError unless `event` is allowed given `auth_state`.

    `auth_state` maps (type, state_key) to the state the event is authorised against: the
    room's current state for an event created here, the event's auth events (see
    `check_auth_events`) or the state before it for a received one. Only the entries the auth
    events selection names are consulted.

    `create_event` is the room's m.room.create event; when omitted it is auth_state's
    (m.room.create, ""), and if there is none the event is rejected (2.4; v12: 2). v12 needs it
    when auth_state comes from auth events, which never list it. It must be an accepted event
    (v12 rule 2 says so outright). Whether a received event's auth_events list the create event
    (v1-11 rule 2.4) is `check_auth_events`' business.

    `verify_server_signature(event, server_name)` says whether the event is validly signed by
    that server; only v8+ member events with join_authorised_via_users_server need it (rule
    4.2.1 / v12 5.2.1). The default says no.
    """
    rv = event.room_version
    n = rule_numbers(rv)
    # Rule 1: m.room.create.
    if event.type == CREATE:
        _check_create(event, rv)
        return
    create = create_event if create_event is not None else auth_state.get(CREATE_KEY)
    if rv.room_id_is_create_hash:
        # Rule 2 (v12): the room ID is the create event's ID with "!".
        check_room_is_create(event, create)
        assert create is not None
    else:
        # Rule 2.4: no m.room.create event.
        if create is None:
            raise AuthError(f"{n.auth_events}.4", "no m.room.create event in the auth events")
        # Rule 2.5: the create event is in another room.
        if create.room_id != event.room_id:
            raise AuthError(f"{n.auth_events}.5", f"{create.event_id} is in another room")
    # Rule 2.5 (v12 3.4): an auth event from another room.
    keys = auth_types_for_event(event.type, event.state_key, event.sender, event.content, rv)
    for key in keys:
        entry = auth_state.get(key)
        if entry is not None and entry.room_id != event.room_id:
            raise AuthError(
                f"{n.auth_events}.{n.room_mismatch}", f"{key} {entry.event_id} is in another room"
            )
    # Rule 3 (v12 4): m.federate.
    if create.content.get("m.federate") is False and (
        server_of(event.sender) != server_of(create.sender)
    ):
        raise AuthError(str(n.federate), "the room is not federated")
    # Rule 4 (v1-5): m.room.aliases.
    if rv.special_case_aliases_auth and event.type == ALIASES:
        if event.state_key is None:  # 4.1
            raise AuthError("4.1", "m.room.aliases without a state_key")
        if server_of(event.sender) != event.state_key:  # 4.2
            raise AuthError("4.2", "m.room.aliases state_key is not the sender's domain")
        return  # 4.3
    checker = _Checker(event, auth_state, create, n, verify_server_signature)
    # Rule 5 (v6-11: 4, v12: 5): m.room.member.
    if event.type == MEMBER:
        checker.member()
        return
    checker.others()


def _check_create(event: Event, rv: RoomVersion) -> None:
    # 1.1: prev_events.
    if event.prev_events:
        raise AuthError("1.1", "m.room.create has prev_events")
    if rv.room_id_is_create_hash:
        # 1.2 (v12): a room_id at all.
        if "room_id" in event.pdu:
            raise AuthError("1.2", "m.room.create has a room_id")
    elif server_of(event.room_id) != server_of(event.sender) or not server_of(event.sender):
        # 1.2 (v1-11): the room ID's domain is not the sender's.
        raise AuthError("1.2", "room ID domain does not match the sender's")
    # 1.3: content.room_version present and not recognised.
    if "room_version" in event.content:
        version = event.content["room_version"]
        if not isinstance(version, str) or version not in ROOM_VERSIONS:
            raise AuthError("1.3", f"unknown room version {version!r}")
    if rv.room_id_is_create_hash:
        # 1.4 (v12): additional_creators must be an array of user IDs.
        if "additional_creators" in event.content:
            extra = event.content["additional_creators"]
            if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
                raise AuthError("1.4", "additional_creators is not an array of user IDs")
    elif not rv.implicit_room_creator and "creator" not in event.content:
        # 1.4 (v1-10): no creator.
        raise AuthError("1.4", "m.room.create has no creator")
    # 1.5 (v11: 1.4): allow.


class _Checker:
    """The rules after the create and auth-events ones, for one event against one state."""

    def __init__(
        self,
        event: Event,
        auth_state: Mapping[StateKey, Event],
        create: Event,
        numbers: RuleNumbers,
        verify: ServerSignatureVerifier,
    ) -> None:
        self.event = event
        self.rv = event.room_version
        self.state = auth_state
        self.create = create
        self.n = numbers
        self.verify = verify

    def level(self, user_id: str) -> int | float:
        return power_level(user_id, self.state, self.create)

    def membership(self, user_id: str) -> str:
        return membership_of(user_id, self.state)

    def join_rule(self) -> str | None:
        join_rules = self.state.get(JOIN_RULES_KEY)
        if join_rules is None:
            return "invite"  # no join rules event: see the module docstring
        rule = join_rules.content.get("join_rule")
        return rule if isinstance(rule, str) else None

    # -- m.room.member ---------------------------------------------------------------------------

    def member(self) -> None:
        event, n = self.event, self.n
        # 5.1 (v6-11: 4.1, v12: 5.1): no state_key or no membership.
        if event.state_key is None or "membership" not in event.content:
            raise AuthError(n.m(1), "m.room.member without a state_key or membership")
        # v8-11 4.2.1, v12 5.2.1: join_authorised_via_users_server must be signed by that
        # user's server.
        if self.rv.restricted_join and AUTHORISER in event.content:
            authoriser = event.content[AUTHORISER]
            if not is_valid_user_id(authoriser) or not self.verify(
                event, server_of(authoriser)
            ):
                raise AuthError(n.m(2, 1), f"not signed by the server of {authoriser!r}")
        membership = event.content["membership"]
        if membership == "join":
            self.join(event.state_key)
        elif membership == "invite":
            self.invite(event.state_key)
        elif membership == "leave":
            self.leave(event.state_key)
        elif membership == "ban":
            self.ban(event.state_key)
        elif membership == "knock" and n.knock is not None:
            self.knock(event.state_key)
        else:
            # 5.6 (v6: 4.6, v7: 4.7, v8-11: 4.8, v12: 5.8): unknown membership (knock before v7).
            raise AuthError(n.m(n.unknown), f"unknown membership {membership!r}")

    def join(self, target: str) -> None:
        event, n, j = self.event, self.n, self.n.join
        # 5.2.1 (v6-7: 4.2.1, v8-11: 4.3.1, v12: 5.3.1): the creator's join right after the
        # create event.
        if (
            len(event.prev_events) == 1
            and event.prev_events[0] == self.create.event_id
            and target == room_creator(self.create)
        ):
            return
        # 5.2.2 (v6-7: 4.2.2, v8-11: 4.3.2, v12: 5.3.2): joining someone else.
        if event.sender != target:
            raise AuthError(n.m(j, 2), "sender does not match state_key")
        membership = self.membership(target)
        # 5.2.3 (v6-7: 4.2.3, v8-11: 4.3.3, v12: 5.3.3): banned.
        if membership == "ban":
            raise AuthError(n.m(j, 3), "sender is banned")
        join_rule = self.join_rule()
        invite_rules = ("invite", "knock") if self.rv.knocking else ("invite",)
        # 5.2.4 (v6-7: 4.2.4, v8-11: 4.3.4, v12: 5.3.4): invite (v7+: or knock) rooms admit
        # members and invitees.
        if join_rule in invite_rules and membership in ("invite", "join"):
            return
        restricted_rules: tuple[str, ...] = ("restricted",) if self.rv.restricted_join else ()
        if self.rv.knock_restricted:
            restricted_rules += ("knock_restricted",)
        if join_rule in restricted_rules:
            # v8-11 4.3.5.1, v12 5.3.5.1 (restricted; v10+ knock_restricted): members and
            # invitees.
            if membership in ("join", "invite"):
                return
            # v8-11 4.3.5.2, v12 5.3.5.2: the authorising user must be joined and able to invite.
            authoriser = event.content.get(AUTHORISER)
            if not (
                isinstance(authoriser, str)
                and self.membership(authoriser) == "join"
                and self.level(authoriser) >= named_level("invite", self.state)
            ):
                raise AuthError(n.m(j, 5, 2), f"{authoriser!r} cannot authorise joins")
            return  # v8-11 4.3.5.3, v12 5.3.5.3: allow.
        public_item = 6 if self.rv.restricted_join else 5
        # 5.2.5 (v6-7: 4.2.5, v8-11: 4.3.6, v12: 5.3.6): public.
        if join_rule == "public":
            return
        # 5.2.6 (v6-7: 4.2.6, v8-11: 4.3.7, v12: 5.3.7): otherwise reject.
        raise AuthError(n.m(j, public_item + 1), f"join rule {join_rule!r} does not admit them")

    def invite(self, target: str) -> None:
        event, n, i = self.event, self.n, self.n.join + 1
        # 5.3.1 (v6-7: 4.3.1, v8-11: 4.4.1, v12: 5.4.1): third-party invites.
        if "third_party_invite" in event.content:
            self.third_party_invite(target, i)
            return
        # 5.3.2 (v6-7: 4.3.2, v8-11: 4.4.2, v12: 5.4.2): the sender must be joined.
        if self.membership(event.sender) != "join":
            raise AuthError(n.m(i, 2), "sender is not joined")
        # 5.3.3 (v6-7: 4.3.3, v8-11: 4.4.3, v12: 5.4.3): the target is joined or banned.
        if self.membership(target) in ("join", "ban"):
            raise AuthError(n.m(i, 3), f"target is {self.membership(target)}")
        # 5.3.4 (v6-7: 4.3.4, v8-11: 4.4.4, v12: 5.4.4): the invite level.
        if self.level(event.sender) >= named_level("invite", self.state):
            return
        # 5.3.5 (v6-7: 4.3.5, v8-11: 4.4.5, v12: 5.4.5): otherwise reject.
        raise AuthError(n.m(i, 5), "sender's power level is below the invite level")

    def third_party_invite(self, target: str, i: int) -> None:
        event, n = self.event, self.n
        # 5.3.1.1 (v6-7: 4.3.1.1, v8-11: 4.4.1.1, v12: 5.4.1.1): target banned.
        if self.membership(target) == "ban":
            raise AuthError(n.m(i, 1, 1), "target is banned")
        tpi = event.content["third_party_invite"]
        # 5.3.1.2 (v6-7: 4.3.1.2, v8-11: 4.4.1.2, v12: 5.4.1.2): no signed.
        if not isinstance(tpi, Mapping) or "signed" not in tpi:
            raise AuthError(n.m(i, 1, 2), "third_party_invite has no signed")
        signed = tpi["signed"]
        # 5.3.1.3 (v6-7: 4.3.1.3, v8-11: 4.4.1.3, v12: 5.4.1.3): signed without mxid and token.
        if not isinstance(signed, Mapping) or "mxid" not in signed or "token" not in signed:
            raise AuthError(n.m(i, 1, 3), "signed has no mxid and token")
        # 5.3.1.4 (v6-7: 4.3.1.4, v8-11: 4.4.1.4, v12: 5.4.1.4): mxid is not the target.
        if signed["mxid"] != target:
            raise AuthError(n.m(i, 1, 4), "signed.mxid does not match state_key")
        token = signed["token"]
        tpi_event = self.state.get((THIRD_PARTY_INVITE, token)) if isinstance(token, str) else None
        # 5.3.1.5 (v6-7: 4.3.1.5, v8-11: 4.4.1.5, v12: 5.4.1.5): no m.room.third_party_invite
        # for the token.
        if tpi_event is None:
            raise AuthError(n.m(i, 1, 5), "no m.room.third_party_invite for the token")
        # 5.3.1.6 (v6-7: 4.3.1.6, v8-11: 4.4.1.6, v12: 5.4.1.6): someone else's third-party invite.
        if tpi_event.sender != event.sender:
            raise AuthError(n.m(i, 1, 6), "sender did not send the m.room.third_party_invite")
        # 5.3.1.7 (v6-7: 4.3.1.7, v8-11: 4.4.1.7, v12: 5.4.1.7): signed by one of its public keys.
        if _signed_by_any_key(signed, tpi_event.content):
            return
        # 5.3.1.8 (v6-7: 4.3.1.8, v8-11: 4.4.1.8, v12: 5.4.1.8): otherwise reject.
        raise AuthError(n.m(i, 1, 8), "no valid signature from the third-party invite's keys")

    def leave(self, target: str) -> None:
        event, n, left = self.event, self.n, self.n.join + 2
        sender_membership = self.membership(event.sender)
        # 5.4.1 (v6-7: 4.4.1, v8-11: 4.5.1, v12: 5.5.1): leaving oneself (rejecting an invite;
        # v7+: withdrawing a knock).
        if event.sender == target:
            may_leave = ("invite", "join", "knock") if self.rv.knocking else ("invite", "join")
            if sender_membership in may_leave:
                return
            raise AuthError(n.m(left, 1), f"cannot leave from {sender_membership!r}")
        # 5.4.2 (v6-7: 4.4.2, v8-11: 4.5.2, v12: 5.5.2): kicking needs a joined sender.
        if sender_membership != "join":
            raise AuthError(n.m(left, 2), "sender is not joined")
        sender_level = self.level(event.sender)
        # 5.4.3 (v6-7: 4.4.3, v8-11: 4.5.3, v12: 5.5.3): unbanning needs the ban level.
        if self.membership(target) == "ban" and sender_level < named_level("ban", self.state):
            raise AuthError(n.m(left, 3), "sender's power level is below the ban level")
        # 5.4.4 (v6-7: 4.4.4, v8-11: 4.5.4, v12: 5.5.4): the kick level, over a lower target.
        if sender_level >= named_level("kick", self.state) and self.level(target) < sender_level:
            return
        # 5.4.5 (v6-7: 4.4.5, v8-11: 4.5.5, v12: 5.5.5): otherwise reject.
        raise AuthError(n.m(left, 5), "sender cannot kick the target")

    def ban(self, target: str) -> None:
        event, n, b = self.event, self.n, self.n.join + 3
        # 5.5.1 (v6-7: 4.5.1, v8-11: 4.6.1, v12: 5.6.1): the sender must be joined.
        if self.membership(event.sender) != "join":
            raise AuthError(n.m(b, 1), "sender is not joined")
        sender_level = self.level(event.sender)
        # 5.5.2 (v6-7: 4.5.2, v8-11: 4.6.2, v12: 5.6.2): the ban level, over a lower target.
        if sender_level >= named_level("ban", self.state) and self.level(target) < sender_level:
            return
        # 5.5.3 (v6-7: 4.5.3, v8-11: 4.6.3, v12: 5.6.3): otherwise reject.
        raise AuthError(n.m(b, 3), "sender cannot ban the target")

    def knock(self, target: str) -> None:
        event, n = self.event, self.n
        k = n.knock
        assert k is not None
        knock_rules = ("knock", "knock_restricted") if self.rv.knock_restricted else ("knock",)
        # v7 4.6.1, v8-11 4.7.1, v12 5.7.1: the join rule must allow knocking (v10+:
        # knock_restricted too).
        if self.join_rule() not in knock_rules:
            raise AuthError(n.m(k, 1), f"join rule {self.join_rule()!r} does not allow knocking")
        # v7 4.6.2, v8-11 4.7.2, v12 5.7.2: knocking for someone else.
        if event.sender != target:
            raise AuthError(n.m(k, 2), "sender does not match state_key")
        # v7 4.6.3, v8-11 4.7.3, v12 5.7.3: anyone not banned, invited or joined may knock.
        if self.membership(target) not in ("ban", "invite", "join"):
            return
        # v7 4.6.4, v8-11 4.7.4, v12 5.7.4: otherwise reject.
        raise AuthError(n.m(k, 4), f"cannot knock when {self.membership(target)!r}")

    # -- everything but m.room.create and m.room.member ------------------------------------

    def others(self) -> None:
        event, n = self.event, self.n
        sender_level = self.level(event.sender)
        # Rule 6 (v6-11: 5, v12: 6): the sender must be joined.
        if self.membership(event.sender) != "join":
            raise AuthError(n.joined, "sender is not joined")
        # Rule 7 (v6-11: 6, v12: 7): m.room.third_party_invite needs the invite level.
        if event.type == THIRD_PARTY_INVITE:
            if sender_level >= named_level("invite", self.state):
                return
            raise AuthError(f"{n.third_party_invite}.1", "power level below the invite level")
        # Rule 8 (v6-11: 7, v12: 8): the event type's required power level.
        needed = required_level(event.type, event.is_state, self.state)
        if needed > sender_level:
            raise AuthError(n.required_level, f"{event.type} needs power level {needed}")
        # Rule 9 (v6-11: 8, v12: 9): a state_key that is someone else's user ID.
        if event.state_key is not None and event.state_key.startswith("@") and (
            event.state_key != event.sender
        ):
            raise AuthError(n.state_key, "state_key is another user's ID")
        # Rule 10 (v6-11: 9, v12: 10): m.room.power_levels.
        if event.type == POWER_LEVELS:
            self.power_levels(sender_level)
            return
        # Rule 11 (v1-2): m.room.redaction.
        if self.rv.redaction_auth_rule and event.type == REDACTION:
            self.redaction(sender_level)
            return
        # Rule 12 (v1-2; v3-5: 11; v6-11: 10; v12: 11): allow.

    def power_levels(self, sender_level: int | float) -> None:
        event, rv, n = self.event, self.rv, self.n
        p = n.power_levels
        content = event.content
        if rv.integer_power_levels:
            # v10-11 9.1, v12 10.1: top-level levels must be integers.
            if problem := invalid_named_levels(content, rv):
                raise AuthError(f"{p}.1", problem)
            # v10-11 9.2, v12 10.2: events and notifications must be objects of integers.
            if problem := invalid_level_maps(content, rv):
                raise AuthError(f"{p}.2", problem)
            # v10-11 9.3, v12 10.3: users must map user IDs to integers.
            if problem := invalid_users(content, rv):
                raise AuthError(f"{p}.3", problem)
        elif problem := (
            invalid_users(content, rv)
            or invalid_named_levels(content, rv)
            or invalid_level_maps(content, rv)
        ):
            # 10.1 (v6-9: 9.1): users must map user IDs to integers (or strings of them); the
            # other levels must parse too (see the module docstring).
            raise AuthError(f"{p}.1", problem)
        if rv.room_id_is_create_hash:
            # v12 10.4: creators cannot be listed in users.
            users = content.get("users", {})
            listed = sorted(privileged_creators(self.create) & set(users))
            if listed:
                raise AuthError(f"{p}.4", f"room creators {listed} cannot be in users")
        previous = self.state.get(POWER_LEVELS_KEY)
        f = n.pl_first
        # 10.2 (v6-9: 9.2, v10-11: 9.4, v12: 10.5): no previous m.room.power_levels: allow.
        if previous is None:
            return
        old = previous.content
        # 10.3.x (v6-9: 9.3.x, v10-11: 9.5.x, v12: 10.6.x): top-level levels added, changed or
        # removed: neither the current nor the new value may exceed the sender's level.
        for key, before, after in named_level_changes(old, content, rv):
            if before is not None and before > sender_level:
                raise AuthError(f"{p}.{f + 1}.1", f"current {key} {before} is above the sender")
            if after is not None and after > sender_level:
                raise AuthError(f"{p}.{f + 1}.2", f"new {key} {after} is above the sender")
        maps = level_map_keys(rv)  # events; v6+: and notifications
        # 10.4.1 (v6-9: 9.4.1, v10-11: 9.6.1, v12: 10.7.1): events / notifications entries
        # changed or removed.
        for name in maps:
            for entry, before, _ in map_changes(old, content, name, rv):
                if before is not None and before > sender_level:
                    raise AuthError(
                        f"{p}.{f + 2}.1", f"current {name}[{entry!r}] {before} is above the sender"
                    )
        # 10.5.1 (v6-9: 9.5.1, v10-11: 9.7.1, v12: 10.8.1): events / notifications entries
        # added or changed.
        for name in maps:
            for entry, _, after in map_changes(old, content, name, rv):
                if after is not None and after > sender_level:
                    raise AuthError(
                        f"{p}.{f + 3}.1", f"new {name}[{entry!r}] {after} is above the sender"
                    )
        user_changes = map_changes(old, content, "users", rv)
        # 10.6.1 (v6-9: 9.6.1, v10-11: 9.8.1, v12: 10.9.1): users changed or removed, other than
        # the sender's own entry.
        for user_id, before, _ in user_changes:
            if user_id != event.sender and before is not None and before >= sender_level:
                raise AuthError(f"{p}.{f + 4}.1", f"{user_id} is not below the sender")
        # 10.7.1 (v6-9: 9.7.1, v10-11: 9.9.1, v12: 10.10.1): users added or changed.
        for user_id, _, after in user_changes:
            if after is not None and after > sender_level:
                raise AuthError(f"{p}.{f + 5}.1", f"new level {after} for {user_id} is too high")
        # 10.8 (v6-9: 9.8, v10-11: 9.10, v12: 10.11): allow.

    def redaction(self, sender_level: int | float) -> None:
        event, r = self.event, self.n.redaction
        # 11.1: the redact level.
        if sender_level >= named_level("redact", self.state):
            return
        # 11.2: redacting an event whose ID has the redaction's own ID's domain.
        own_domain = server_of(event.event_id)
        if event.redacts is not None and own_domain and server_of(event.redacts) == own_domain:
            return
        # 11.3: otherwise reject.
        raise AuthError(f"{r}.3", "sender may not redact that event")


def _signed_by_any_key(signed: Mapping[str, Any], tpi_content: Mapping[str, Any]) -> bool:
    """Whether any ed25519 signature in `signed` verifies with any public key of the
    m.room.third_party_invite (`public_key`, and each `public_keys[].public_key`)."""
    encoded_keys: list[Any] = [tpi_content.get("public_key")]
    public_keys = tpi_content.get("public_keys")
    if isinstance(public_keys, list):
        encoded_keys += [get_path(item, "public_key") for item in public_keys]
    verify_keys: list[VerifyKey] = []
    for encoded in encoded_keys:
        if isinstance(encoded, str):
            try:
                verify_keys.append(VerifyKey(decode_unpadded_b64(encoded)))
            except ValueError:
                continue
    signatures = signed.get("signatures")
    if not verify_keys or not isinstance(signatures, Mapping):
        return False
    unsigned = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
    try:
        message = canonical_json.encode(unsigned)
    except (TypeError, ValueError):
        return False
    for by_entity in signatures.values():
        if not isinstance(by_entity, Mapping):
            continue
        for key_id, signature in by_entity.items():
            if not (isinstance(key_id, str) and key_id.startswith("ed25519:")):
                continue
            if not isinstance(signature, str):
                continue
            try:
                signature_bytes = decode_unpadded_b64(signature)
            except ValueError:
                continue
            for verify_key in verify_keys:
                try:
                    verify_key.verify(message, signature_bytes)
                except (BadSignatureError, ValueError):
                    continue
                return True
    return False
