"""The typed request one sliding sync call asks for, whichever wire shape it arrived in.

`request.py` parses the two shapes (the unstable one current clients send, and the MSC's final
`/v4/sync` one) into these types; the engine never sees raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Event types that move a room's bump_stamp (MSC4186 "proper" activity).
BUMP_TYPES = frozenset({"m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
                        "m.call.invite", "m.poll.start", "m.beacon_info"})
MAX_LISTS = 100
MAX_SUBSCRIPTIONS = 100
MAX_TIMELINE_LIMIT = 1000


@dataclass(frozen=True)
class StatePattern:
    """One RequiredStateElement: None matches any type / any state key. `$ME` is resolved to
    the requesting user's ID when the request is parsed."""

    type: str | None = None
    state_key: str | None = None


@dataclass(frozen=True)
class RequiredState:
    """`{include, exclude, lazy_members}` (the unstable tuple form is converted to this)."""

    include: frozenset[StatePattern] = frozenset()
    exclude: frozenset[StatePattern] = frozenset()
    lazy_members: bool = False


@dataclass(frozen=True)
class RoomConfig:
    timeline_limit: int
    required_state: RequiredState


@dataclass(frozen=True)
class RoomFilters:
    """SlidingRoomFilter; None = not filtered on that field. In `room_types`/`not_room_types`
    None stands for "untyped room" (JSON null)."""

    is_dm: bool | None = None
    spaces: tuple[str, ...] | None = None
    is_encrypted: bool | None = None
    is_invited: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] | None = None
    tags: tuple[str, ...] | None = None
    not_tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ListConfig:
    config: RoomConfig
    # Inclusive [start, end] ranges; None = the whole filtered list. The unstable shape may send
    # several ranges, the v4 shape one.
    ranges: tuple[tuple[int, int], ...] | None
    filters: RoomFilters = RoomFilters()


@dataclass(frozen=True)
class ExtensionScope:
    """Which rooms a per-room extension covers: None = all rooms in scope of the request."""

    lists: tuple[str, ...] | None = None
    rooms: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Extensions:
    to_device: bool = False
    to_device_since: str | None = None
    to_device_limit: int = 100
    e2ee: bool = False
    account_data: ExtensionScope | None = None  # None = disabled
    receipts: ExtensionScope | None = None
    typing: ExtensionScope | None = None


@dataclass(frozen=True)
class SlidingRequest:
    conn_id: str = ""
    pos: str | None = None
    timeout_ms: int = 0
    set_presence: str | None = None
    lists: dict[str, ListConfig] = field(default_factory=dict)
    room_subscriptions: dict[str, RoomConfig] = field(default_factory=dict)
    extensions: Extensions = Extensions()
