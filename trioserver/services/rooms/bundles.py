"""Bundled aggregations (spec "Aggregations of child events"): `unsigned.m.relations`.

`m.thread` gets the latest reply, the reply count and whether the user took part (sent the
root or a reply); `m.replace` the most recent valid edit (same sender and type as the
original, ordered by origin_server_ts then event ID); `m.reference` the referencing event IDs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from trioserver.services.events.event import Event
from trioserver.services.rooms.client_format import client_event
from trioserver.storage.repositories.relations import Aggregations

EventLoader = Callable[[Iterable[str]], Awaitable[Mapping[str, Event]]]


def _valid_edit(original: Event, edit: Event) -> bool:
    if edit.sender != original.sender or edit.type != original.type:
        return False
    if edit.state_key is not None or original.state_key is not None:
        return False
    relates = original.content.get("m.relates_to")
    # An edit of an edit is not an edit of the original.
    return not (isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace")


async def bundle(events: Iterable[Event], found: Aggregations, load: EventLoader,
                 user_id: str | None) -> dict[str, dict[str, Any]]:
    """event_id -> its `m.relations` object, for the events that have any."""
    events = list(events)
    wanted = [t.latest_event_id for t in found.threads.values()]
    wanted += [r.event_id for rels in found.edits.values() for r in rels]
    loaded = await load(wanted)
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        relations: dict[str, Any] = {}
        thread = found.threads.get(event.event_id)
        if thread is not None and (latest := loaded.get(thread.latest_event_id)) is not None:
            relations["m.thread"] = {
                "latest_event": client_event(latest),
                "count": thread.count,
                "current_user_participated": thread.participated or event.sender == user_id,
            }
        edits = [loaded[r.event_id] for r in found.edits.get(event.event_id, [])
                 if r.event_id in loaded and _valid_edit(event, loaded[r.event_id])]
        if edits:
            relations["m.replace"] = client_event(edits[-1])
        refs = found.references.get(event.event_id)
        if refs:
            relations["m.reference"] = {"chunk": [{"event_id": e} for e in refs]}
        if relations:
            out[event.event_id] = relations
    return out
