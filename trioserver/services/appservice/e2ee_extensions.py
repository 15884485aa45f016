"""The unstable transaction extensions encrypted bridges use (mautrix "appservice mode"), as
Synapse sends them. None is in the spec yet; MSC2409/MSC4203 and MSC3202 describe them.

- `de.sorunome.msc2409.to_device` (for registrations receiving ephemeral data): to-device
  messages queued for devices of the appservice's users (its namespace and its sender), each
  with `to_user_id` and `to_device_id` added. They stay in the device's inbox for /sync, as in
  Synapse (which only reads its device_inbox for appservices): a device that also syncs (a
  bridge bot in "sync mode", or a client logged in as a ghost) must not lose them, and the inbox
  row is removed as for any device, by its /sync or with the device.
- `org.matrix.msc3202.device_lists` {changed, left} (registrations with `org.matrix.msc3202`):
  users whose device-list changed (keys uploaded, device deleted, cross-signing) and who are of
  the appservice's namespace or joined to a room that interests it, as Synapse chooses them.
  Synapse leaves `left` to do; here, as /sync does, a membership event in the transaction
  touches the member (or, when the appservice's own user joined or left, every member of the
  room): a touched user who now interests the appservice is `changed` (newly shared), one who
  no longer does is `left`.
- `org.matrix.msc3202.device_one_time_keys_count` (and its older twin
  `device_one_time_key_counts`) and `org.matrix.msc3202.device_unused_fallback_key_types`, for
  the devices of the users Synapse picks: the sender, the appservice's users in the rooms of the
  transaction's events and ephemeral data, the to-device recipients; plus its users whose device
  list changed (their keys were just uploaded).

Positions of the to-device inbox and of device-list changes are kept per appservice and move
with the transaction that carried them (storage/repositories/appservice.py), so each message and
change is pushed once, across restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import apsw

from trioserver.services.appservice.registration import Registration
from trioserver.storage.repositories import appservice as as_repo
from trioserver.storage.repositories import appservice_e2ee as ext_repo
from trioserver.storage.repositories.appservice import RoomFacts

MAX_TO_DEVICE_PER_TXN = 100  # Synapse's MAX_TO_DEVICE_MESSAGES_PER_TRANSACTION
SCAN_BATCH = 1000
MAX_SCAN_BATCHES = 20  # per transaction; more is scanned on the next round
MAX_MEMBERS_TOUCHED = 10_000

TO_DEVICE_KEY = "de.sorunome.msc2409.to_device"
DEVICE_LISTS_KEY = "org.matrix.msc3202.device_lists"
OTK_COUNT_KEYS = ("org.matrix.msc3202.device_one_time_key_counts",
                  "org.matrix.msc3202.device_one_time_keys_count")
FALLBACK_KEY = "org.matrix.msc3202.device_unused_fallback_key_types"

RoomInterest = Callable[[str, RoomFacts], bool]


@dataclass(frozen=True)
class MemberChange:
    """An m.room.member event among the transaction's events."""

    room_id: str
    user_id: str
    membership: str


@dataclass
class Extensions:
    to_device: list[dict[str, Any]] = field(default_factory=list)
    upto_to_device: int | None = None
    changed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    upto_device_list: int | None = None
    otk_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    fallback_types: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    more: bool = False  # a scan stopped early: look again without waiting

    def has_data(self) -> bool:
        return bool(self.to_device or self.changed or self.left)

    def add_to(self, body: dict[str, Any], reg: Registration) -> None:
        """Add the extension keys to a transaction body, as Synapse's push_bulk does."""
        if reg.receive_ephemeral:
            body[TO_DEVICE_KEY] = self.to_device
        if not reg.msc3202:
            return
        if self.otk_counts:
            for key in OTK_COUNT_KEYS:
                body[key] = self.otk_counts
        if self.fallback_types:
            body[FALLBACK_KEY] = self.fallback_types
        if self.changed or self.left:
            body[DEVICE_LISTS_KEY] = {"changed": self.changed, "left": self.left}


def _scan(rows_after: Callable[[int], list[tuple[int, str]]], after: int, limit: int,
          wanted: Callable[[str], bool]) -> tuple[list[tuple[int, str]], int, bool]:
    """Rows after `after` whose user is wanted (at most `limit`), the position scanned up to,
    and whether the scan stopped before the end."""
    found: list[tuple[int, str]] = []
    upto = after
    for _ in range(MAX_SCAN_BATCHES):
        rows = rows_after(upto)
        if not rows:
            return found, upto, False
        for stream_id, user_id in rows:
            upto = stream_id
            if wanted(user_id):
                found.append((stream_id, user_id))
                if len(found) == limit:
                    return found, upto, True
        if found:
            return found, upto, len(rows) == SCAN_BATCH
    return found, upto, True


def to_device_messages(conn: apsw.Connection, reg: Registration, server_name: str,
                       after: int, out: Extensions) -> None:
    found, upto, more = _scan(
        lambda pos: ext_repo.to_device_after(conn, pos, SCAN_BATCH), after,
        MAX_TO_DEVICE_PER_TXN, lambda user_id: reg.is_interested_in_user(user_id, server_name))
    out.more = out.more or more
    if upto > after:
        out.upto_to_device = upto
    out.to_device = [message_for_appservice(r)
                     for r in ext_repo.inbox_rows(conn, [s for s, _ in found])]


def message_for_appservice(row: ext_repo.InboxRow) -> dict[str, Any]:
    """MSC2409: the message as /sync shows it, plus its recipient user and device."""
    return {"to_user_id": row.user_id, "to_device_id": row.device_id, "type": row.type,
            "sender": row.sender, "content": row.content}


class _Interest:
    """Whether an appservice wants a user's device-list changes (Synapse's
    _is_appservice_interested_in_device_lists_of_user), memoised for one transaction."""

    def __init__(self, conn: apsw.Connection, reg: Registration, server_name: str,
                 room_interest: RoomInterest) -> None:
        self._conn = conn
        self._reg = reg
        self._server_name = server_name
        self._room_interest = room_interest
        self._rooms: dict[str, bool] = {}
        self._users: dict[str, bool] = {}

    def own_user(self, user_id: str) -> bool:
        return self._reg.is_interested_in_user(user_id, self._server_name)

    def __call__(self, user_id: str) -> bool:
        known = self._users.get(user_id)
        if known is not None:
            return known
        interested = self.own_user(user_id)
        if not interested:
            rooms = as_repo.joined_rooms(self._conn, user_id)
            unknown = rooms - self._rooms.keys()
            for room_id, facts in as_repo.room_facts(self._conn, unknown).items():
                self._rooms[room_id] = self._room_interest(room_id, facts)
            interested = any(self._rooms[r] for r in rooms)
        self._users[user_id] = interested
        return interested


def device_lists(conn: apsw.Connection, reg: Registration, server_name: str, after: int,
                 members: Iterable[MemberChange], room_interest: RoomInterest,
                 out: Extensions) -> None:
    interest = _Interest(conn, reg, server_name, room_interest)
    found, upto, more = _scan(
        lambda pos: ext_repo.device_list_changes_after(conn, pos, SCAN_BATCH), after,
        SCAN_BATCH, interest)
    out.more = out.more or more
    if upto > after:
        out.upto_device_list = upto
    changed = {user_id for _, user_id in found}
    touched: set[str] = set()
    for m in members:
        if m.membership not in ("join", "leave", "ban"):
            continue
        if interest.own_user(m.user_id):
            # The appservice's user joined or left: the room's members start or stop sharing.
            touched.update(ext_repo.joined_members(conn, m.room_id, MAX_MEMBERS_TOUCHED))
        else:
            touched.add(m.user_id)
    touched = {u for u in touched if not interest.own_user(u)}
    left = {u for u in touched if not interest(u)}
    changed |= touched - left
    out.changed = sorted(changed)
    out.left = sorted(left)


def key_counts(conn: apsw.Connection, reg: Registration, server_name: str,
               room_ids: Iterable[str], out: Extensions) -> None:
    users = {reg.sender(server_name)}
    suffix = ":" + server_name
    for room_id in set(room_ids):
        users.update(u for u in ext_repo.joined_members(conn, room_id, MAX_MEMBERS_TOUCHED)
                     if u.endswith(suffix) and reg.is_interested_in_user(u, server_name))
    users.update(m["to_user_id"] for m in out.to_device)
    users.update(u for u in out.changed
                 if u.endswith(suffix) and reg.is_interested_in_user(u, server_name))
    out.otk_counts = ext_repo.one_time_key_counts(conn, users)
    out.fallback_types = ext_repo.unused_fallback_key_types(conn, users)


def collect(conn: apsw.Connection, reg: Registration, server_name: str,
            after_to_device: int, after_device_list: int, members: list[MemberChange],
            room_ids: set[str], room_interest: RoomInterest, *, sending: bool) -> Extensions:
    """Everything of the extensions the registration asked for, in one read. `sending`: the
    transaction has events or ephemeral data (key counts never make a transaction alone, as in
    Synapse; they ride along)."""
    out = Extensions()
    if reg.receive_ephemeral:
        to_device_messages(conn, reg, server_name, after_to_device, out)
    if reg.msc3202:
        device_lists(conn, reg, server_name, after_device_list, members, room_interest, out)
        if sending or out.has_data():
            key_counts(conn, reg, server_name, room_ids, out)
    return out
