"""The contract between the sync engine and each per-user stream.

A stream (account data, receipts, typing, to-device, presence, ...) owns its storage and
endpoints. For /sync it exposes a `StreamSource`: its current position, and the changes a user
should see between two positions, written into a `SyncResult`. Positions are integers that only
grow; the engine puts one position per stream into the opaque sync token.

A stream announces new data with `Notifier.notify(keys)`: `user_key(user_id)` for data of one
user (account data, to-device, presence of people they share a room with), `room_key(room_id)`
for data of one room (events, receipts, typing). A waiting /sync listens on its user's key and
the keys of the rooms the user is joined to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def room_key(room_id: str) -> str:
    return f"room:{room_id}"


# Announced when any device is deleted (rare): every waiting /sync re-checks device lists.
DEVICE_DELETIONS_KEY = "device-deletions"


@dataclass(frozen=True)
class SyncContext:
    """Who is syncing and which rooms they are in at the position being synced to."""

    user_id: str
    device_id: str
    joined_rooms: Sequence[str]
    # True for an initial sync (no `since`); streams then send their full current view.
    initial: bool
    # The room-event window of this sync (events_since None on an initial sync), for streams
    # that depend on membership changes (device lists).
    events_since: int | None = None
    events_upto: int = 0


@dataclass
class RoomExtras:
    """Per-room sections that streams contribute to `rooms.join.{roomId}`."""

    ephemeral: list[dict[str, Any]] = field(default_factory=list)  # m.typing, m.receipt
    account_data: list[dict[str, Any]] = field(default_factory=list)  # incl. m.tag, m.fully_read
    unread_notifications: dict[str, int] | None = None
    unread_thread_notifications: dict[str, dict[str, int]] | None = None


@dataclass
class SyncResult:
    """Everything but the room timelines/state, filled in by the stream sources."""

    account_data: list[dict[str, Any]] = field(default_factory=list)
    presence: list[dict[str, Any]] = field(default_factory=list)
    to_device: list[dict[str, Any]] = field(default_factory=list)
    device_lists_changed: list[str] = field(default_factory=list)
    device_lists_left: list[str] = field(default_factory=list)
    one_time_keys_count: dict[str, int] | None = None
    unused_fallback_key_types: list[str] | None = None
    rooms: dict[str, RoomExtras] = field(default_factory=dict)
    # Invites from other servers to rooms this server is not in: room -> stripped state (with
    # the invite last); and rooms whose such invite ended (joined or rejected).
    remote_invites: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    remote_invites_gone: list[str] = field(default_factory=list)
    remote_knocks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def room(self, room_id: str) -> RoomExtras:
        extras = self.rooms.get(room_id)
        if extras is None:
            extras = self.rooms[room_id] = RoomExtras()
        return extras

    def has_updates(self) -> bool:
        """Whether anything here is worth returning from a long-poll."""
        return bool(
            self.account_data or self.presence or self.to_device or self.device_lists_changed
            or self.device_lists_left or self.remote_invites or self.remote_invites_gone
            or self.remote_knocks
            or any(r.ephemeral or r.account_data or r.unread_notifications is not None
                   for r in self.rooms.values())
        )


class StreamSource(Protocol):
    """One stream of per-user data for /sync."""

    # The stream's slot name in the sync token (short, stable): "ad", "rc", "ty", "td", "pr".
    name: str

    async def current_position(self) -> int:
        """The newest committed position of this stream."""
        ...

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        """Write into `out` what `ctx.user_id` (on `ctx.device_id`) should see of the changes in
        (since, upto]; `since` None means an initial sync: the full current view up to `upto`.

        Must not return data newer than `upto`, so the next sync from `upto` misses nothing and
        repeats nothing.
        """
        ...
