"""Helpers for the Simplified Sliding Sync (MSC4186) end-to-end tests.

Both wire shapes are served: the unstable one (`/unstable/org.matrix.simplified_msc3575/sync`,
`pos`/`timeout` in the query string, `ranges`, `[type, state_key]` pairs, `invite_state`...) and
the MSC's final one (`/v4/sync`, everything in the body, `range`, `{include, exclude,
lazy_members}`, `stripped_state`...). A `Shape` builds requests and reads responses in one of
them, so one test body runs against both (`@both_shapes`); `Conn` is one connection (a sync
loop) that keeps its `pos` like a client does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.e2e.helpers import CLIENT, bearer, room_path, unique

Body = dict[str, Any]
UNSTABLE_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
V4_PATH = "/_matrix/client/v4/sync"
Pair = tuple[str, str]  # a required_state entry in the unstable form, wildcards included


def _v4_required_state(pairs: tuple[Pair, ...]) -> Body:
    """The unstable `[type, state_key]` list as a v4 RequiredStateRequest (same meaning)."""
    include: list[Body] = []
    lazy = False
    for event_type, state_key in pairs:
        if (event_type, state_key) == ("m.room.member", "$LAZY"):
            lazy = True
            continue
        element: Body = {}
        if event_type != "*":
            element["type"] = event_type
        if state_key != "*":
            element["state_key"] = state_key
        include.append(element)
    rs: Body = {"include": include}
    if lazy:
        rs["lazy_members"] = True
    return rs


@dataclass(frozen=True)
class Shape:
    """One wire shape: how to send a request and where to find things in the response."""

    name: str

    @property
    def v4(self) -> bool:
        return self.name == "v4"

    @property
    def path(self) -> str:
        return V4_PATH if self.v4 else UNSTABLE_PATH

    @property
    def stripped_state_key(self) -> str:
        return "stripped_state" if self.v4 else "invite_state"

    @property
    def expanded_key(self) -> str:
        return "expanded_timeline" if self.v4 else "unstable_expanded_timeline"

    @property
    def invited_filter(self) -> str:
        return "is_invited" if self.v4 else "is_invite"

    def ext_key(self, name: str) -> str:
        """The response key of an extension (typing is prefixed on the stable endpoint)."""
        return "org.matrix.msc4508.typing" if self.v4 and name == "typing" else name

    def required_state(self, *pairs: Pair) -> Any:
        """`required_state` from unstable-style pairs (`("*", "*")`, `("m.room.member",
        "$LAZY")`, `$ME`...), in this shape."""
        return _v4_required_state(pairs) if self.v4 else [list(p) for p in pairs]

    def room_config(self, timeline_limit: int, *pairs: Pair) -> Body:
        return {"timeline_limit": timeline_limit, "required_state": self.required_state(*pairs)}

    def list_config(self, timeline_limit: int = 10, *pairs: Pair,
                    range_: tuple[int, int] | None = None,
                    filters: Body | None = None) -> Body:
        """A list config; `range_=None` is the whole list (no range at all)."""
        config = self.room_config(timeline_limit, *pairs)
        if range_ is not None:
            if self.v4:
                config["range"] = list(range_)
            else:
                config["ranges"] = [list(range_)]
        if filters is not None:
            config["filters"] = filters
        return config

    async def post(self, http: httpx.AsyncClient, token: str, body: Body, *,
                   pos: str | None = None, timeout_ms: int | None = None) -> httpx.Response:
        """One raw request; `pos`/`timeout` go where this shape wants them."""
        if self.v4:
            body = dict(body)
            if pos is not None:
                body["pos"] = pos
            if timeout_ms is not None:
                body["timeout"] = timeout_ms
            return await http.post(self.path, json=body, headers=bearer(token))
        params: dict[str, str] = {}
        if pos is not None:
            params["pos"] = pos
        if timeout_ms is not None:
            params["timeout"] = str(timeout_ms)
        return await http.post(self.path, json=body, params=params, headers=bearer(token))

    # -- reading responses -------------------------------------------------------------------

    def check(self, body: Body) -> None:
        """The fields that tell the two shapes apart."""
        assert isinstance(body["pos"], str)
        for room in body.get("rooms", {}).values():
            if self.v4:
                assert "notification_count" not in room, room
                assert "invite_state" not in room, room
                assert "unstable_expanded_timeline" not in room, room
            else:
                for key in ("membership", "lists", "stripped_state", "expanded_timeline"):
                    assert key not in room, room
                assert {"notification_count", "highlight_count"} <= set(room), room

    def ops_ids(self, body: Body, name: str) -> list[list[str]]:
        """Unstable shape only: the room IDs of each SYNC op of a list, in range order."""
        assert not self.v4
        ops = body["lists"][name]["ops"]
        assert all(op["op"] == "SYNC" for op in ops), ops
        return [op["room_ids"] for op in ops]


UNSTABLE = Shape("unstable")
V4 = Shape("v4")
both_shapes = pytest.mark.parametrize("shape", [UNSTABLE, V4], ids=["unstable", "v4"])


@dataclass
class Conn:
    """One sliding sync connection (user, device, conn_id) that follows `pos` like a client."""

    http: httpx.AsyncClient
    token: str
    shape: Shape
    conn_id: str | None = None
    pos: str | None = None
    history: list[str] = field(default_factory=list)  # every pos received, oldest first

    def body(self, lists: Body | None = None, subs: Body | None = None,
             extensions: Body | None = None) -> Body:
        body: Body = {}
        if self.conn_id is not None:
            body["conn_id"] = self.conn_id
        if lists is not None:
            body["lists"] = lists
        if subs is not None:
            body["room_subscriptions"] = subs
        if extensions is not None:
            body["extensions"] = extensions
        return body

    async def raw(self, lists: Body | None = None, subs: Body | None = None,
                  extensions: Body | None = None, *, pos: str | None = None,
                  timeout_ms: int | None = None) -> httpx.Response:
        """A request from an explicit `pos` (None = initial); the connection does not move."""
        return await self.shape.post(self.http, self.token, self.body(lists, subs, extensions),
                                     pos=pos, timeout_ms=timeout_ms)

    async def sync(self, lists: Body | None = None, subs: Body | None = None,
                   extensions: Body | None = None, *, timeout_ms: int | None = None,
                   advance: bool = True) -> Body:
        """A request from the current `pos`; with `advance`, process the response (take its
        `pos`). `advance=False` is a response the client dropped."""
        r = await self.raw(lists, subs, extensions, pos=self.pos, timeout_ms=timeout_ms)
        assert r.status_code == 200, r.text
        body: Body = r.json()
        self.shape.check(body)
        if advance:
            self.pos = body["pos"]
            self.history.append(body["pos"])
        return body


def rooms_of(body: Body) -> Body:
    rooms: Body = body.get("rooms", {})
    return rooms


def timeline_bodies(room: Body) -> list[str]:
    """The `body` of each m.room.message in a room result's timeline, oldest first."""
    return [e["content"]["body"] for e in room.get("timeline", [])
            if e["type"] == "m.room.message"]


def state_keys(room: Body) -> set[tuple[str, str]]:
    """(type, state_key) of each full event in a room result's `required_state`."""
    return {(e["type"], e["state_key"]) for e in room.get("required_state", [])
            if "content" in e}


# -- client actions the tests need (besides tests.e2e.helpers) -----------------------------------


def user_path(user_id: str, *parts: str) -> str:
    return "/".join([f"{CLIENT}/user/{quote(user_id, safe='')}",
                     *(quote(p, safe="") for p in parts)])


async def put_ok(http: httpx.AsyncClient, token: str, path: str, content: Body) -> None:
    r = await http.put(path, json=content, headers=bearer(token))
    assert r.status_code == 200, r.text


async def post_ok(http: httpx.AsyncClient, token: str, path: str, content: Body) -> Body:
    r = await http.post(path, json=content, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: Body = r.json()
    return body


async def invite(http: httpx.AsyncClient, token: str, room_id: str, user_id: str) -> None:
    await post_ok(http, token, room_path(room_id, "invite"), {"user_id": user_id})


async def membership_action(http: httpx.AsyncClient, token: str, room_id: str, action: str,
                            user_id: str | None = None) -> None:
    """POST /rooms/{roomId}/{leave|kick|ban}."""
    body: Body = {} if user_id is None else {"user_id": user_id}
    await post_ok(http, token, room_path(room_id, action), body)


async def set_tag(http: httpx.AsyncClient, token: str, user_id: str, room_id: str,
                  tag: str) -> None:
    await put_ok(http, token, user_path(user_id, "rooms", room_id, "tags", tag), {})


async def set_account_data(http: httpx.AsyncClient, token: str, user_id: str, event_type: str,
                           content: Body, room_id: str | None = None) -> None:
    path = (user_path(user_id, "rooms", room_id, "account_data", event_type)
            if room_id is not None else user_path(user_id, "account_data", event_type))
    await put_ok(http, token, path, content)


async def send_to_device(http: httpx.AsyncClient, token: str, event_type: str,
                         messages: Body) -> None:
    path = f"{CLIENT}/sendToDevice/{quote(event_type, safe='')}/{unique('txn')}"
    await put_ok(http, token, path, {"messages": messages})


async def set_typing(http: httpx.AsyncClient, token: str, room_id: str, user_id: str,
                     typing: bool = True) -> None:
    content: Body = {"typing": typing}
    if typing:
        content["timeout"] = 30000
    await put_ok(http, token, room_path(room_id, "typing", user_id), content)


async def long_polls_waiting(http: httpx.AsyncClient) -> int:
    r = await http.get("/_trioserver/status")
    assert r.status_code == 200, r.text
    count: int = r.json()["long_polls_waiting"]
    return count


async def parked_sync(conn: Conn, lists: Body | None, action: Callable[[], Awaitable[object]],
                      *, timeout_ms: int = 10000, subs: Body | None = None,
                      extensions: Body | None = None) -> tuple[Body, float]:
    """Start a long-poll from `conn.pos`, wait until the server has parked it (it had nothing
    to say yet), then run `action`. Returns the response and how many seconds after the start
    of `action` it came back."""
    baseline = await long_polls_waiting(conn.http)
    result: Body = {}

    async def poll() -> None:
        result["body"] = await conn.sync(lists, subs, extensions, timeout_ms=timeout_ms)
        result["at"] = time.monotonic()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        with trio.fail_after(5):
            while await long_polls_waiting(conn.http) <= baseline:
                assert "body" not in result, f"the long-poll did not wait: {result['body']}"
                await trio.sleep(0.02)
        acted = time.monotonic()
        await action()
    return result["body"], result["at"] - acted
