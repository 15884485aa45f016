"""An echo "bridge" built on mautrix-python's AppService, for the appservice interop test.

    python echo_bridge.py REGISTRATION.yaml HOMESERVER_URL SERVER_NAME PORT

- The bot (sender_localpart) joins every room it is invited to.
- Each m.text message from a user outside the `@echo_` namespace is answered, in order, by the
  ghost `@echo_<sender localpart>` with `echo: <body>`; mautrix registers the ghost on demand
  (m.login.application_service) and acts as it with `?user_id=` masquerading.
- User queries for `@echo_*` create the ghost; alias queries for `#echo_*` make the bot create a
  public room with that alias.
- One JSON line per thing seen or done goes to stdout ("ready", "event", "ephemeral", "echoed",
  "query_user", "ghost_created", "query_alias", "room_created", "error"), so a test can follow.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import yaml
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import (
    Event,
    EventType,
    Membership,
    MemberStateEventContent,
    MessageEvent,
    MessageType,
    RoomAlias,
    RoomCreatePreset,
    RoomDirectoryVisibility,
    StateEvent,
    TextMessageEventContent,
    UserID,
)

GHOST_PREFIX = "@echo_"


class MemoryASStateStore(ASStateStore, MemoryStateStore):
    """Forgets everything on exit: after a restart mautrix re-registers (M_USER_IN_USE is fine)
    and re-joins, which exercises those server paths too."""

    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


def emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"kind": kind, **fields}), flush=True)


class EchoBridge:
    def __init__(self, registration: dict[str, Any], homeserver: str, server_name: str) -> None:
        self.server_name = server_name
        self.appservice = AppService(
            server=homeserver, domain=server_name, id=registration["id"],
            as_token=registration["as_token"], hs_token=registration["hs_token"],
            bot_localpart=registration["sender_localpart"], state_store=MemoryASStateStore(),
            ephemeral_events=bool(registration.get("receive_ephemeral", False)),
            query_user=self.query_user, query_alias=self.query_alias,  # type: ignore[arg-type]
        )
        # Handle each transaction's events one after another, before answering it: the echoes
        # then go out in the order the homeserver delivered the messages.
        self.appservice.synchronous_handlers = True
        self.appservice.matrix_event_handler(self.on_event)

    def ghost_of(self, user_id: str) -> UserID:
        localpart = user_id[1:].split(":", 1)[0]
        return UserID(f"{GHOST_PREFIX}{localpart}:{self.server_name}")

    async def on_event(self, event: Event) -> None:
        if event.type.is_ephemeral:
            emit("ephemeral", type=str(event.type), event=event.serialize())
            return
        raw = event.serialize()
        body = raw.get("content", {}).get("body")
        emit("event", type=str(event.type), event_id=raw.get("event_id"),
             sender=raw.get("sender"), room_id=raw.get("room_id"),
             body=body if isinstance(body, str) else None)
        try:
            if isinstance(event, StateEvent) and event.type == EventType.ROOM_MEMBER:
                await self.on_member(event)
            elif isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
                await self.on_message(event)
        except Exception as e:  # with synchronous handlers, one failure would skip the rest
            self.appservice.log.exception("handling %s failed", raw.get("event_id"))
            emit("error", event_id=raw.get("event_id"), error=repr(e))

    async def on_member(self, event: StateEvent) -> None:
        bot = self.appservice.intent
        if (event.state_key == bot.mxid and isinstance(event.content, MemberStateEventContent)
                and event.content.membership == Membership.INVITE):
            await bot.ensure_joined(event.room_id, ignore_cache=True)
            emit("joined", room_id=event.room_id)

    async def on_message(self, event: MessageEvent) -> None:
        content = event.content
        if (event.sender.startswith(GHOST_PREFIX) or event.sender == self.appservice.bot_mxid
                or not isinstance(content, TextMessageEventContent)
                or content.msgtype != MessageType.TEXT):
            return
        ghost = self.appservice.intent.user(self.ghost_of(event.sender))
        await ghost.ensure_joined(event.room_id)  # registers it first; the bot invites it
        echo_id = await ghost.send_text(event.room_id, f"echo: {content.body}")
        emit("echoed", source=event.event_id, echo=echo_id, sender=ghost.mxid)

    async def register_bot(self) -> None:
        """What every mautrix bridge does at start-up: register the bot, M_USER_IN_USE is fine."""
        await self.appservice.intent.ensure_registered()

    async def query_user(self, user_id: UserID) -> dict[str, str] | None:
        emit("query_user", user_id=user_id)
        if not user_id.startswith(GHOST_PREFIX):
            return None
        await self.appservice.intent.user(user_id).ensure_registered()
        emit("ghost_created", user_id=user_id)
        return {"user_id": user_id}  # spec: {}; mautrix answers 404 for a falsy result

    async def query_alias(self, alias: RoomAlias) -> dict[str, str] | None:
        emit("query_alias", alias=alias)
        localpart = alias[1:].split(":", 1)[0]
        if not localpart.startswith("echo_"):
            return None
        room_id = await self.appservice.intent.create_room(
            alias_localpart=localpart, preset=RoomCreatePreset.PUBLIC,
            visibility=RoomDirectoryVisibility.PUBLIC, name=f"Echo room {localpart}")
        emit("room_created", alias=alias, room_id=room_id)
        return {"room_id": room_id}  # spec: {}; mautrix answers 404 for a falsy result


async def main(registration: dict[str, Any], homeserver: str, server_name: str, port: int
               ) -> None:
    bridge = EchoBridge(registration, homeserver, server_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bridge.appservice.start(host="127.0.0.1", port=port)
    try:
        await bridge.register_bot()
        emit("ready", port=port)
        await stop.wait()
    finally:
        await bridge.appservice.stop()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        registration = yaml.safe_load(f)
    asyncio.run(main(registration, sys.argv[2], sys.argv[3], int(sys.argv[4])))
