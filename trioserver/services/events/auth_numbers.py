"""AuthError, and where each authorisation rule sits in each room version's numbered list.

Rule numbers are each version's own, as spec.matrix.org renders the lists:

- v1-5 have the m.room.aliases rule 4, so m.room.member is rule 5; v6-11 drop it (member is 4);
  v12 inserts rule 2 (room ID = create event ID), so member is 5 again and everything after the
  create rule moves down by one.
- v8+ insert member rule .2 (join_authorised_via_users_server signature), shifting join/invite/
  leave/ban/knock down by one; v7+ add knock before "unknown membership".
- v10+ insert power levels rules .1 and .2 (integer types); v12 adds .4 (creators in `users`).
- v1-2 end with rule 11, m.room.redaction (then 12, allow).
- v12's source numbers two items oddly: in rule 3 the room-ID item is written "5." after "3." and
  the power levels "Otherwise, allow" repeats "10."; Markdown renders (and we use) 3.4 and 10.11.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trioserver.services.events.room_versions import RoomVersion


class AuthError(Exception):
    """The event is not allowed; `rule` is the rejecting rule's number in its room version."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"auth rule {rule}: {message}")
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class RuleNumbers:
    auth_events: int  # "Considering the event's auth_events": 2 (v1-11), 3 (v12)
    room_mismatch: int  # its "room_id does not match" item: 5 (v1-11), 4 (v12, see above)
    federate: int  # m.federate: 3 (v1-11), 4 (v12)
    member: int  # m.room.member: 5 (v1-5), 4 (v6-11), 5 (v12)
    join: int  # membership=join inside the member rule: 2 (v1-7), 3 (v8+)
    knock: int | None  # membership=knock: join + 4 (v7+)
    unknown: int  # unknown membership
    pl_first: int  # power levels "no previous m.room.power_levels": 2 (v1-9), 4 (v10-11), 5 (v12)

    def m(self, *sub: int) -> str:
        return ".".join(str(part) for part in (self.member, *sub))

    @property
    def joined(self) -> str:  # "sender's current membership state is not join"
        return str(self.member + 1)

    @property
    def third_party_invite(self) -> str:
        return str(self.member + 2)

    @property
    def required_level(self) -> str:
        return str(self.member + 3)

    @property
    def state_key(self) -> str:  # state_key starting with "@"
        return str(self.member + 4)

    @property
    def power_levels(self) -> int:
        return self.member + 5

    @property
    def redaction(self) -> int:  # v1-2 only
        return self.member + 6


@functools.cache
def rule_numbers(rv: RoomVersion) -> RuleNumbers:
    v12 = rv.room_id_is_create_hash
    join = 3 if rv.restricted_join else 2
    return RuleNumbers(
        auth_events=3 if v12 else 2,
        room_mismatch=4 if v12 else 5,
        federate=4 if v12 else 3,
        member=5 if rv.special_case_aliases_auth or v12 else 4,
        join=join,
        knock=join + 4 if rv.knocking else None,
        unknown=join + (5 if rv.knocking else 4),
        pl_first=2 + (2 if rv.integer_power_levels else 0) + (1 if v12 else 0),
    )
