"""Per-connection state: what each sliding sync connection has been sent, by `pos`.

A connection is (user, device, conn_id). Every response gets a new `pos`; the state reached by
a response is kept until the client shows (by sending that `pos`) that it processed it, so a
retry with the latest `pos` works and an older one is refused. Connections live in memory: a
restart, an idle timeout or eviction (at most MAX_PER_DEVICE per device) answer the next
request with `M_UNKNOWN_POS`, and the client starts again, as the MSC allows.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from trioserver.errors import Codes, MatrixError
from trioserver.services.sliding_sync.model import RoomConfig

MAX_PER_DEVICE = 10
MAX_CONNECTIONS = 20_000
IDLE_EXPIRY_S = 30 * 60
_POS = re.compile(r"e(\d{1,18})\.sc(\d{1,18})\.sn(\d{1,9})")


@dataclass(frozen=True)
class RoomSent:
    """What the connection has of one room."""

    events_pos: int  # the room's data was sent as of this room-event position
    config: RoomConfig  # the combined room config it was sent with
    membership: str
    # Lazy-loaded members sent (user -> member event ID), so they are not sent again.
    members: frozenset[tuple[str, str]] = frozenset()
    # Newest events sent in the timeline, for timeline_limit expansion (how many, contiguous
    # back from events_pos, the client is known to have).
    timeline_have: int = 0
    is_dm: bool = False


@dataclass(frozen=True)
class ConnState:
    """The state a client reaches by processing the response that carried `number`."""

    number: int
    events: int  # room-event position the response covered
    streams: dict[str, int]  # per-extension stream positions
    rooms: dict[str, RoomSent]
    # Room IDs of each list's window, as last sent (the unstable shape's ops).
    windows: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per-room extension (stream name) -> the rooms it covered, to resend a room's full view
    # when it (re-)enters the extension's scope.
    ext_scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    to_device_since: int | None = None


def initial_state() -> ConnState:
    return ConnState(number=0, events=0, streams={}, rooms={})


@dataclass
class Connection:
    serial: int
    states: dict[int, ConnState]
    next_number: int = 1
    used: float = field(default_factory=time.monotonic)

    def pos(self, state: ConnState) -> str:
        return f"e{state.events}.sc{self.serial}.sn{state.number}"


def unknown_pos() -> MatrixError:
    return MatrixError(400, Codes.UNKNOWN_POS, "Unknown position: start a new sync")


class ConnectionStore:
    def __init__(self, *, max_per_device: int = MAX_PER_DEVICE,
                 idle_expiry_s: float = IDLE_EXPIRY_S) -> None:
        self._conns: OrderedDict[tuple[str, str, str], Connection] = OrderedDict()
        self._max_per_device = max_per_device
        self._idle_expiry_s = idle_expiry_s

    def __len__(self) -> int:
        return len(self._conns)

    def begin(self, user_id: str, device_id: str, conn_id: str, pos: str | None
              ) -> tuple[Connection, ConnState]:
        """The connection and the state a request starts from; M_UNKNOWN_POS if `pos` is not
        one this connection issued and still holds. No `pos` starts the connection afresh."""
        self._expire()
        key = (user_id, device_id, conn_id)
        if pos is None:
            conn = Connection(serial=secrets.randbelow(10**15), states={0: initial_state()})
            self._conns[key] = conn
            self._conns.move_to_end(key)
            self._limit(user_id, device_id)
            return conn, conn.states[0]
        conn_or_none = self._conns.get(key)
        m = _POS.fullmatch(pos)
        if conn_or_none is None or m is None or int(m.group(2)) != conn_or_none.serial:
            raise unknown_pos()
        state = conn_or_none.states.get(int(m.group(3)))
        if state is None:
            raise unknown_pos()
        conn_or_none.used = time.monotonic()
        self._conns.move_to_end(key)
        # The client has processed `state`: anything older can go.
        for number in [n for n in conn_or_none.states if n < state.number]:
            del conn_or_none.states[number]
        return conn_or_none, state

    def commit(self, conn: Connection, state: ConnState) -> str:
        """Record the state a response leads to; return its `pos`."""
        conn.states[state.number] = state
        # Keep the acknowledged state (for retries) and the newest; drop abandoned branches.
        keep = {state.number, min(conn.states)}
        for number in [n for n in conn.states if n not in keep]:
            del conn.states[number]
        return conn.pos(state)

    def new_number(self, conn: Connection) -> int:
        number = conn.next_number
        conn.next_number += 1
        return number

    def _limit(self, user_id: str, device_id: str) -> None:
        mine = [k for k in self._conns if k[0] == user_id and k[1] == device_id]
        for key in mine[:-self._max_per_device]:  # oldest used first
            del self._conns[key]
        while len(self._conns) > MAX_CONNECTIONS:
            self._conns.popitem(last=False)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._idle_expiry_s
        while self._conns:
            key, conn = next(iter(self._conns.items()))
            if conn.used >= cutoff:
                break
            del self._conns[key]
