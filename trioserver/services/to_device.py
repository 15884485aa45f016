"""Send-to-device messaging (spec "Send-to-Device messaging"), stream "td".

A message is stored once per recipient device, at its own stream position, in the same
transaction that records the sender's transaction id (so a retried request is a no-op, even
across a restart). A device receives its messages in /sync; when its next /sync presents a
`since` at or past a message's position, it has proven receipt and the message is deleted.
Messages also go with their device (a foreign key cascade on device deletion and logout).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import apsw

from trioserver.concurrency import Notifier
from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import is_local_user, is_valid_device_id, split_user_id
from trioserver.services.clock import now_ms
from trioserver.services.sessions import Requester
from trioserver.services.stream_position import StreamPosition
from trioserver.services.sync.streams import SyncContext, SyncResult, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import devices as devices_repo
from trioserver.storage.repositories import to_device as td_repo

ALL_DEVICES = "*"
# Messages one request may queue, after "*" is expanded: /sync returns every pending message,
# so this bounds what one sender can add to a single response.
MAX_MESSAGES_PER_REQUEST = 10_000
TXN_RETENTION_MS = 24 * 3600 * 1000
MAX_TYPE_BYTES = 255

Messages = dict[str, dict[str, dict[str, Any]]]  # user -> device or "*" -> content


def parse_messages(raw: Any) -> Messages:
    """Validate the body's `messages` map."""
    if not isinstance(raw, dict):
        raise MatrixError(400, Codes.BAD_JSON, "'messages' must be an object")
    out: Messages = {}
    for user_id, devices in raw.items():
        if split_user_id(user_id) is None:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid user ID {user_id[:80]!r}")
        if not isinstance(devices, dict):
            raise MatrixError(400, Codes.BAD_JSON, f"messages[{user_id!r}] must be an object")
        for device_id, content in devices.items():
            if device_id != ALL_DEVICES and not is_valid_device_id(device_id):
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid device ID")
            if not isinstance(content, dict):
                raise MatrixError(400, Codes.BAD_JSON, "Each message must be a JSON object")
        out[user_id] = devices
    return out


def check_event_type(event_type: str) -> str:
    if not event_type or len(event_type.encode()) > MAX_TYPE_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event type")
    return event_type


@dataclass(frozen=True)
class _Sent:
    position: int
    recipients: list[str]


class RemoteSink(Protocol):
    """Federation of to-device messages (services/federation/to_device_edu.py)."""

    def stage(self, conn: apsw.Connection, sender: str, event_type: str,
              messages: Messages) -> bool: ...

    def wake(self) -> None: ...


def _encode(messages: Mapping[str, Mapping[str, Mapping[str, Any]]]
            ) -> dict[str, dict[str, str]]:
    return {u: {d: json.dumps(c, ensure_ascii=False, separators=(",", ":"))
                for d, c in devices.items()} for u, devices in messages.items()}


def _insert(conn: apsw.Connection, sender: str, event_type: str,
            encoded: Mapping[str, Mapping[str, str]]) -> _Sent | None:
    """Queue one message per recipient device ("*": every device of the user)."""
    rows: list[tuple[str, str, str]] = []
    for user_id, by_device in encoded.items():
        wildcard = by_device.get(ALL_DEVICES)
        for device in devices_repo.list_devices(conn, user_id):
            content = by_device.get(device.device_id, wildcard)
            if content is not None:
                rows.append((user_id, device.device_id, content))
    if len(rows) > MAX_MESSAGES_PER_REQUEST:
        raise MatrixError(413, Codes.TOO_LARGE,
                          f"At most {MAX_MESSAGES_PER_REQUEST} messages per request")
    if not rows:
        return None
    position = td_repo.insert_messages(conn, sender, event_type, rows)
    return _Sent(position, sorted({r[0] for r in rows}))


class ToDeviceSource:
    """StreamSource "td": the syncing device's pending messages."""

    name = "td"

    def __init__(self, to_device: ToDevice) -> None:
        self._to_device = to_device

    async def current_position(self) -> int:
        return await self._to_device.position.current()

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        await self._to_device.collect(ctx, since, upto, out)

    async def acknowledge(self, ctx: SyncContext, since: int | None) -> None:
        """The device synced from `since`: messages up to it were received (used when /sync
        answers without a full pass)."""
        if since is not None:
            await self._to_device.acknowledge(ctx.user_id, ctx.device_id, since)


class ToDevice:
    def __init__(self, db: Database, notifier: Notifier, server_name: str, *,
                 clock: Callable[[], int] = now_ms) -> None:
        self._db = db
        self._notifier = notifier
        self._server_name = server_name
        self._clock = clock
        self.position = StreamPosition(db, "to_device_inbox")
        self.source = ToDeviceSource(self)
        self._acked: dict[tuple[str, str], int] = {}
        # Set by the composition root: writes messages for other servers' users to the
        # federation outbox, in the same transaction as the client's transaction ID.
        self.remote: RemoteSink | None = None
        # Told the local recipients of newly queued messages (appservice delivery); synchronous,
        # must not block.
        self.queued_listeners: list[Callable[[list[str]], None]] = []

    def _is_local(self, user_id: str) -> bool:
        return is_local_user(user_id, self._server_name)

    async def send(self, requester: Requester, event_type: str, txn_id: str,
                   messages: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """PUT /sendToDevice/{eventType}/{txnId}. Unknown users and devices are skipped.

        Messages for users of other servers go to `self.remote` (federation), once per
        transaction ID like the local ones, committed with it."""
        check_event_type(event_type)
        local = {u: devices for u, devices in messages.items() if self._is_local(u)}
        remote = {u: {d: dict(c) for d, c in devices.items()}
                  for u, devices in messages.items() if not self._is_local(u)}
        encoded = _encode(local)
        now = self._clock()
        sender = requester.user_id

        sink = self.remote

        def txn(conn: apsw.Connection) -> tuple[bool, _Sent | None]:
            if not td_repo.claim_txn(conn, sender, requester.device_id, event_type, txn_id, now):
                return False, None  # a retransmission: already delivered
            td_repo.prune_txns(conn, now - TXN_RETENTION_MS)
            sent = _insert(conn, sender, event_type, encoded)
            staged = bool(remote) and sink is not None \
                and sink.stage(conn, sender, event_type, remote)
            return staged, sent

        staged, sent = await self._db.write(txn)
        self._delivered(sent)
        if staged and sink is not None:
            sink.wake()

    async def deliver_remote(self, sender: str, event_type: str,
                             messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
                             claim: Callable[[apsw.Connection], bool] = lambda _: True
                             ) -> None:
        """Messages from another server's user (EDU m.direct_to_device) for our users;
        nothing if `claim`, run in the same transaction, returns False (seen before)."""
        check_event_type(event_type)
        encoded = _encode({u: d for u, d in messages.items() if self._is_local(u)})
        self._delivered(await self._db.write(
            lambda c: _insert(c, sender, event_type, encoded) if claim(c) else None))

    def _delivered(self, sent: _Sent | None) -> None:
        if sent is not None:
            self.position.advance(sent.position)
            self._notifier.notify([user_key(u) for u in sent.recipients])
            for listener in self.queued_listeners:
                listener(sent.recipients)

    async def acknowledge(self, user_id: str, device_id: str, since: int) -> None:
        """Delete the device's messages up to `since` (it synced from there)."""
        key = (user_id, device_id)
        if since <= self._acked.get(key, -1):
            return
        delivered = await self._db.read(
            lambda c: td_repo.has_delivered(c, user_id, device_id, since))
        if delivered:
            await self._db.write(lambda c: td_repo.delete_delivered(c, user_id, device_id, since))
        self._acked[key] = since
        if len(self._acked) > 100_000:
            self._acked.clear()  # only an optimisation: forgetting costs one read per device

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        user_id, device_id = ctx.user_id, ctx.device_id

        def read(conn: apsw.Connection) -> tuple[bool, list[td_repo.Message]]:
            delivered = since is not None and td_repo.has_delivered(conn, user_id, device_id,
                                                                    since)
            if since is not None and since >= upto:
                return delivered, []
            return delivered, td_repo.pending(conn, user_id, device_id, since, upto)

        delivered, messages = await self._db.read(read)
        if delivered:
            # The client synced from `since`, so it has every message up to there.
            await self._db.write(
                lambda c: td_repo.delete_delivered(c, user_id, device_id, since or 0))
        if since is not None:
            self._acked[(user_id, device_id)] = since
        out.to_device.extend(
            {"type": m.type, "sender": m.sender, "content": m.content} for m in messages)
