"""Send-to-device messages between servers: EDU `m.direct_to_device` (Server-Server API
"Send-to-device messaging").

Out: one EDU per destination server for each new sendToDevice request, carrying a fresh
`message_id`. In: messages for our users are delivered to their inbox when the sender belongs
to the origin server; an EDU whose `message_id` was already seen from that origin (the
transaction was retried) is dropped.

Limits: the sender's EDU queue is in memory (sender.py), so a message queued for a server
that is down when we restart is lost; and the `message_id`s seen are remembered in memory
only (the last MAX_SEEN per server), so a retry arriving after our restart is delivered
again. Olm tolerates both (a lost room key is re-requested, a duplicate fails to decrypt and
is discarded by the client).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import split_user_id
from trioserver.services.to_device import Messages, parse_messages

log = logging.getLogger(__name__)

EDU_TYPE = "m.direct_to_device"
MAX_SEEN = 10_000


class QueueEdu(Protocol):
    def __call__(self, destination: str, edu_type: str, content: dict[str, Any]) -> None: ...


class FederatedToDevice:
    def __init__(self, server_name: str, deliver: Callable[[str, str, Messages], Awaitable[None]],
                 queue_edu: QueueEdu) -> None:
        """`deliver(sender, type, messages)` queues messages for our users
        (ToDevice.deliver_remote)."""
        self._server_name = server_name
        self._deliver = deliver
        self._queue_edu = queue_edu
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def send(self, sender: str, event_type: str, messages: Messages) -> None:
        """ToDevice.remote: queue the messages for other servers' users, one EDU per server."""
        by_server: dict[str, Messages] = {}
        for user_id, devices in messages.items():
            parts = split_user_id(user_id)
            if parts is not None and parts[1] != self._server_name:
                by_server.setdefault(parts[1], {})[user_id] = devices
        message_id = secrets.token_urlsafe(16)
        for server, users in sorted(by_server.items()):
            self._queue_edu(server, EDU_TYPE, {"sender": sender, "type": event_type,
                                               "message_id": message_id, "messages": users})

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        """EDU handler for m.direct_to_device."""
        sender, event_type = content.get("sender"), content.get("type")
        message_id = content.get("message_id")
        if not isinstance(sender, str) or not isinstance(event_type, str) \
                or not isinstance(message_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "sender, type and message_id are required")
        parts = split_user_id(sender)
        if parts is None or parts[1] != origin:
            raise MatrixError(403, Codes.FORBIDDEN, "sender is not on the origin server")
        messages = parse_messages(content.get("messages"))
        seen = self._seen.setdefault(origin, OrderedDict())
        if message_id in seen:
            return
        seen[message_id] = None
        if len(seen) > MAX_SEEN:
            seen.popitem(last=False)
        try:
            await self._deliver(sender, event_type, messages)
        except BaseException:
            seen.pop(message_id, None)  # not delivered: a retry may try again
            raise
