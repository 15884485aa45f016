"""Which thread an event belongs to (receipts and notification counts are per thread).

Spec ("Threaded read receipts"): an event is in a thread if it has a `rel_type` of `m.thread`,
or if following its relations leads to an event that does (at most 3 hops). Everything else,
thread roots included, is in the main timeline, called `main`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from trioserver.services.events.event import Event

MAIN = "main"
MAX_HOPS = 3

EventLoader = Callable[[str], Awaitable[Event | None]]


def relation(content: Mapping[str, Any]) -> tuple[str, str] | None:
    """(rel_type, parent event ID) of `content.m.relates_to`, if it has both."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return None
    rel_type, parent = relates.get("rel_type"), relates.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent, str):
        return rel_type, parent
    return None


async def thread_of(event: Event, load: EventLoader) -> str:
    """The event's thread root, or MAIN."""
    current = event
    for hop in range(MAX_HOPS + 1):
        rel = relation(current.content)
        if rel is None:
            return MAIN
        rel_type, parent_id = rel
        if rel_type == "m.thread":
            return parent_id
        if hop == MAX_HOPS:
            break
        parent = await load(parent_id)
        if parent is None or parent.room_id != event.room_id:
            return MAIN
        current = parent
    return MAIN
