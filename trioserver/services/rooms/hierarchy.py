"""Space hierarchies (`m.space.child`): the client's paginated walk and the federation answer.

The client walk is depth-first from the space: each room comes with its summary and its
`m.space.child` state (only children with a non-empty `via`), and children this server is not
in are filled in from the servers in their `via` (federation `/hierarchy`). A room is shown when
the user may see it: they are joined or invited, or it is public to join or world-readable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from trioserver.errors import Codes, MatrixError
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.rooms.directory import Directory

MAX_ROOMS = 1000
DEFAULT_LIMIT = 50
DEFAULT_DEPTH = 10
OPEN_JOIN_RULES = ("public", "knock", "knock_restricted")

# (room_id, via servers, suggested_only) -> the federation answer of one of them, or None.
RemoteHierarchy = Callable[[str, list[str], bool], Awaitable[dict[str, Any] | None]]


class Hierarchy:
    def __init__(self, cache: RoomCache, directory: Directory) -> None:
        self._cache = cache
        self._directory = directory
        self.remote: RemoteHierarchy | None = None

    async def _state_value(self, view: RoomView, event_type: str, field: str) -> Any:
        event_id = view.state.get((event_type, ""))
        if event_id is None:
            return None
        event = (await self._cache.events([event_id])).get(event_id)
        return event.content.get(field) if event is not None else None

    async def _membership(self, view: RoomView, user_id: str) -> str | None:
        event_id = view.state.get(("m.room.member", user_id))
        event = (await self._cache.events([event_id])).get(event_id) if event_id else None
        return event.membership if event is not None else None

    async def _open(self, view: RoomView) -> bool:
        return (await self._state_value(view, "m.room.join_rules", "join_rule") in
                OPEN_JOIN_RULES or await self._state_value(
                    view, "m.room.history_visibility", "history_visibility") == "world_readable")

    async def visible_to_user(self, view: RoomView, user_id: str) -> bool:
        return await self._membership(view, user_id) in ("join", "invite") or \
            await self._open(view)

    async def visible_to_server(self, view: RoomView, server: str) -> bool:
        if await self._open(view):
            return True
        return any(k[0] == "m.room.member" and k[1].endswith(f":{server}")
                   for k in view.state)

    async def entry(self, view: RoomView, suggested_only: bool) -> dict[str, Any]:
        """The room's summary with its children_state."""
        out = await self._directory.summary(view)
        ids = [v for (t, _), v in view.state.items() if t == "m.space.child"]
        events = await self._cache.events(ids)
        children = []
        for event in sorted(events.values(), key=lambda e: e.state_key or ""):
            via = event.content.get("via")
            if not isinstance(via, list) or not via:
                continue
            if suggested_only and event.content.get("suggested") is not True:
                continue
            children.append({"type": event.type, "state_key": event.state_key,
                             "content": dict(event.content), "sender": event.sender,
                             "origin_server_ts": event.origin_server_ts})
        out["children_state"] = children
        return out

    async def for_client(self, user_id: str, room_id: str, *, suggested_only: bool,
                         limit: int | None, max_depth: int | None, from_token: str | None
                         ) -> dict[str, Any]:
        limit = DEFAULT_LIMIT if limit is None else limit
        max_depth = DEFAULT_DEPTH if max_depth is None else max_depth
        if limit < 1 or max_depth < 0:
            raise MatrixError(400, Codes.INVALID_PARAM, "limit must be > 0, max_depth >= 0")
        offset = 0
        if from_token is not None:
            prefix = f"h{int(suggested_only)}.{max_depth}."
            if not from_token.startswith(prefix) or not from_token[len(prefix):].isdigit():
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid pagination token")
            offset = int(from_token[len(prefix):])
        root = await self._cache.room(room_id)
        if root is None or not await self.visible_to_user(root, user_id):
            raise MatrixError(403, Codes.FORBIDDEN, "You cannot see this space")
        rooms: list[dict[str, Any]] = []
        seen: set[str] = set()
        stack: list[tuple[str, int, list[str]]] = [(room_id, 0, [])]
        while stack and len(rooms) < min(offset + limit, MAX_ROOMS):
            current, depth, via = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            found = await self._room_for(user_id, current, via, suggested_only)
            if found is None:
                continue
            rooms.append(found)
            if depth >= max_depth:
                continue
            for child in reversed(found["children_state"]):
                vias = [v for v in child["content"].get("via", []) if isinstance(v, str)]
                stack.append((child["state_key"], depth + 1, vias))
        page = rooms[offset:offset + limit]
        body: dict[str, Any] = {"rooms": page}
        if stack and len(rooms) == offset + limit:
            body["next_batch"] = f"h{int(suggested_only)}.{max_depth}.{offset + limit}"
        return body

    async def _room_for(self, user_id: str, room_id: str, via: list[str],
                        suggested_only: bool) -> dict[str, Any] | None:
        view = await self._cache.room(room_id)
        if view is not None:
            if not await self.visible_to_user(view, user_id):
                return None
            return await self.entry(view, suggested_only)
        if self.remote is None or not via:
            return None
        answer = await self.remote(room_id, via, suggested_only)
        room = answer.get("room") if isinstance(answer, dict) else None
        if not isinstance(room, dict) or room.get("room_id") != room_id:
            return None
        room.setdefault("children_state", [])
        return room

    async def for_server(self, origin: str, room_id: str, suggested_only: bool
                         ) -> dict[str, Any]:
        view = await self._cache.room(room_id)
        if view is None or not await self.visible_to_server(view, origin):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room or not visible")
        room = await self.entry(view, suggested_only)
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for child in room["children_state"]:
            child_view = await self._cache.room(child["state_key"])
            if child_view is None:
                continue  # not ours to describe
            if await self.visible_to_server(child_view, origin):
                entry = await self.entry(child_view, suggested_only)
                children.append(entry)
            else:
                inaccessible.append(child["state_key"])
        return {"room": room, "children": children, "inaccessible_children": inaccessible}
