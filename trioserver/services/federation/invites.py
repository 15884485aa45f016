"""Invites across servers (`PUT /_matrix/federation/v2/invite`), both ways.

Inbound: another server invites one of our users to a room we are not in. We check its
signature, add ours and keep the invite (remote_invites) until the user joins or rejects it;
/sync shows it like any invite (the stripped state the inviting server sent, plus the invite).
Outbound: inviting a user of another server needs that server's signature on the invite
before it can be sent to the room; the appender asks for it while it holds the room.
"""

from __future__ import annotations

import logging
import secrets
from functools import partial
from typing import Any
from urllib.parse import quote

import apsw

from trioserver.concurrency import Notifier
from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import split_user_id
from trioserver.services.clock import now_ms
from trioserver.services.events.event import Event
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion, get_room_version
from trioserver.services.events.signing import SigningKey, hash_and_sign_event
from trioserver.services.federation.joins import FederationRequests
from trioserver.services.federation.pdus import PduError, VerifyKeys, check_pdu
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.rooms.client_format import stripped_state
from trioserver.services.stream_position import PositionedSource, StreamPosition
from trioserver.services.sync.streams import SyncContext, SyncResult, user_key
from trioserver.storage.db import Database
from trioserver.storage.repositories import remote_invites as invites_repo

log = logging.getLogger(__name__)

STRIPPED_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
                  "m.room.canonical_alias", "m.room.encryption", "m.room.topic")


def _server_of(user_id: str) -> str | None:
    parts = split_user_id(user_id)
    return parts[1] if parts is not None else None


class RemoteInviteSource(PositionedSource):
    """StreamSource "ri": invites from other servers, and their end (join or rejection)."""

    name = "ri"

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        if since is not None and since >= upto:
            return
        rows = await self._db.read(
            lambda c: invites_repo.changed(c, ctx.user_id, since, upto))
        for row in rows:
            if row.active:
                own: dict[str, Any] = {k: row.pdu[k] for k in (
                    "type", "state_key", "sender", "content") if k in row.pdu}
                section = out.remote_knocks if row.membership == "knock" else \
                    out.remote_invites
                section[row.room_id] = [*row.invite_state, own]
            elif since is not None:
                out.remote_invites.pop(row.room_id, None)
                out.remote_invites_gone.append(row.room_id)


class Invites:
    def __init__(self, server_name: str, db: Database, cache: RoomCache, notifier: Notifier,
                 signing_key: SigningKey, client: FederationRequests, keys: VerifyKeys
                 ) -> None:
        self._server_name = server_name
        self._db = db
        self._cache = cache
        self._notifier = notifier
        self._key = signing_key
        self._client = client
        self._keys = keys
        self._position = StreamPosition(db, "remote_invites")
        self.source = RemoteInviteSource(db, self._position)

    # -- inbound ---------------------------------------------------------------------------

    async def receive(self, origin: str, room_id: str, event_id: str, body: dict[str, Any]
                      ) -> dict[str, Any]:
        version_id = body.get("room_version", "1")
        version = get_room_version(version_id) if isinstance(version_id, str) else None
        if version is None:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              f"Room version {version_id!r} is not supported here",
                              room_version=version_id)
        try:
            event = await check_pdu(body.get("event"), version, self._keys)
        except PduError as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
        invitee = event.state_key or ""
        if event.event_id != event_id or event.room_id != room_id or \
                event.type != "m.room.member" or event.membership != "invite":
            raise MatrixError(400, Codes.BAD_JSON, "not an invite matching the path")
        if _server_of(event.sender) != origin:
            raise MatrixError(403, Codes.FORBIDDEN, f"the inviter is not on {origin}")
        if _server_of(invitee) != self._server_name:
            raise MatrixError(400, Codes.BAD_JSON, "the invitee is not on this server")
        signed = hash_and_sign_event(dict(event.pdu), self._server_name, self._key, version)
        raw_state = body.get("invite_room_state", [])
        state = [s for s in raw_state if isinstance(s, dict)][:50] \
            if isinstance(raw_state, list) else []
        if await self._cache.room(room_id) is None:
            # A room we are in shows the invite through its own state; others need a record.
            position = await self._db.write(lambda c: invites_repo.put(
                c, user_id=invitee, room_id=room_id, event_id=event.event_id,
                room_version=version.identifier, inviter=event.sender, invite_state=state,
                pdu=signed))
            self._position.advance(position)
            self._notifier.notify([user_key(invitee)])
        return {"event": signed}

    async def inviter_server(self, user_id: str, room_id: str) -> str | None:
        """The server to join or answer through: the inviter's, or the one a knock went to
        (None when there is none, or it would be this server)."""
        row = await self._db.read(lambda c: invites_repo.get(c, user_id, room_id))
        server = row.server if row is not None else None
        return server if server != self._server_name else None

    async def close(self, user_id: str, room_id: str) -> None:
        """The user joined or rejected the room: the invite ends (syncs see it go)."""
        def txn(conn: apsw.Connection) -> int | None:
            return invites_repo.close(conn, user_id, room_id)

        position = await self._db.write(txn)
        if position is not None:
            self._position.advance(position)
            self._notifier.notify([user_key(user_id)])

    async def knock(self, user_id: str, room_id: str, servers: list[str],
                    content: dict[str, Any]) -> None:
        """Knock on a room on another server (make_knock / send_knock through the first of
        `servers` that answers); the knock shows in /sync until answered."""
        room, user = quote(room_id, safe=""), quote(user_id, safe="")
        last: Exception | None = None
        for server in [s for s in dict.fromkeys(servers) if s != self._server_name]:
            try:
                answer = await self._client.get_json(
                    server, f"/_matrix/federation/v1/make_knock/{room}/{user}",
                    query={"ver": [v for v in ("7", "8", "9", "10", "11", "12")]})
                version_id = answer.get("room_version") if isinstance(answer, dict) else None
                version = get_room_version(version_id) if isinstance(version_id, str) else None
                template = answer.get("event") if isinstance(answer, dict) else None
                if version is None or not isinstance(template, dict) or \
                        template.get("state_key") != user_id:
                    raise MatrixError(502, Codes.UNKNOWN, "make_knock gave an unusable answer")
                event = self._sign_membership(template, version, user_id,
                                              {**content, "membership": "knock"})
                response = await self._client.put_json(
                    server, f"/_matrix/federation/v1/send_knock/{room}/"
                            f"{quote(event.event_id, safe='')}", dict(event.pdu))
                raw = response.get("knock_room_state") if isinstance(response, dict) else None
                state = [s for s in raw if isinstance(s, dict)][:50] \
                    if isinstance(raw, list) else []
                position = await self._db.write(partial(
                    invites_repo.put, user_id=user_id, room_id=room_id,
                    event_id=event.event_id, room_version=version.identifier,
                    inviter=user_id, invite_state=state, pdu=dict(event.pdu),
                    membership="knock", via=server))
                self._position.advance(position)
                self._notifier.notify([user_key(user_id)])
                return
            except MatrixError as e:
                if e.status in (400, 403):
                    raise
                last = e
            except Exception as e:  # an unreachable server: try the next one
                last = e
        raise MatrixError(404, Codes.NOT_FOUND, f"Could not knock on {room_id}: {last}")

    def _sign_membership(self, template: dict[str, Any], version: RoomVersion, user_id: str,
                         content: dict[str, Any]) -> Event:
        if template.get("sender") != user_id or template.get("type") != "m.room.member":
            raise MatrixError(502, Codes.UNKNOWN, "the template is not this user's membership")
        pdu: dict[str, Any] = {k: template[k] for k in (
            "type", "state_key", "sender", "room_id", "prev_events", "auth_events", "depth")
            if k in template}
        pdu["content"] = content
        pdu["origin_server_ts"] = now_ms()
        if version.event_id_format is EventIdFormat.V1:
            pdu["event_id"] = f"${secrets.token_urlsafe(18)}:{self._server_name}"
        signed = hash_and_sign_event(pdu, self._server_name, self._key, version)
        return Event.from_pdu(signed, version)

    async def reject(self, user_id: str, room_id: str) -> None:
        """Reject an invite to (or retract a knock on) a room on another server: a leave
        through make_leave / send_leave at the inviter's server or the one the knock went to
        (best effort: it ends here either way)."""
        row = await self._db.read(lambda c: invites_repo.get(c, user_id, room_id))
        server = row.server if row is not None else None
        if server == self._server_name:
            server = None
        version = get_room_version(row.room_version) if row is not None else None
        if server is not None and version is not None:
            try:
                await self._send_leave(server, user_id, room_id, version)
            except Exception as e:  # the inviting server may be gone; we still let go
                log.info("rejecting %s's invite to %s via %s failed: %s", user_id, room_id,
                         server, e)
        await self.close(user_id, room_id)

    async def _send_leave(self, server: str, user_id: str, room_id: str,
                          version: RoomVersion) -> None:
        room, user = quote(room_id, safe=""), quote(user_id, safe="")
        answer = await self._client.get_json(
            server, f"/_matrix/federation/v1/make_leave/{room}/{user}")
        template = answer.get("event") if isinstance(answer, dict) else None
        if not isinstance(template, dict) or template.get("state_key") != user_id or \
                template.get("sender") != user_id or template.get("type") != "m.room.member":
            raise MatrixError(502, Codes.UNKNOWN, "make_leave gave an unusable template")
        pdu: dict[str, Any] = {k: template[k] for k in (
            "type", "state_key", "sender", "room_id", "prev_events", "auth_events", "depth")
            if k in template}
        pdu["content"] = {"membership": "leave"}
        pdu["origin_server_ts"] = now_ms()
        if version.event_id_format is EventIdFormat.V1:
            pdu["event_id"] = f"${secrets.token_urlsafe(18)}:{self._server_name}"
        signed = hash_and_sign_event(pdu, self._server_name, self._key, version)
        event = Event.from_pdu(signed, version)
        await self._client.put_json(
            server, f"/_matrix/federation/v2/send_leave/{room}/"
                    f"{quote(event.event_id, safe='')}", dict(event.pdu))

    # -- outbound --------------------------------------------------------------------------

    async def countersign(self, event: Event, view: RoomView) -> Event:
        """Have the invitee's server sign `event` (an invite of one of its users)."""
        invitee = event.state_key or ""
        server = _server_of(invitee)
        if server is None or server == self._server_name:
            return event
        ids = [view.state[(t, "")] for t in STRIPPED_TYPES if (t, "") in view.state]
        found = await self._cache.events(ids)
        invite_state = [stripped_state(found[i]) for i in ids if i in found]
        try:
            response = await self._client.put_json(
                server, f"/_matrix/federation/v2/invite/{quote(view.room_id, safe='')}/"
                        f"{quote(event.event_id, safe='')}",
                {"event": dict(event.pdu), "room_version": view.room_version.identifier,
                 "invite_room_state": invite_state})
        except Exception as e:
            raise MatrixError(403, Codes.FORBIDDEN,
                              f"{server} did not accept the invite: {e}") from None
        returned = response.get("event") if isinstance(response, dict) else None
        try:
            signed = await check_pdu(returned, view.room_version, self._keys)
        except PduError as e:
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent back a bad invite: {e}"
                              ) from None
        signatures = signed.pdu.get("signatures")
        if signed.event_id != event.event_id or not isinstance(signatures, dict) or \
                server not in signatures:
            raise MatrixError(502, Codes.UNKNOWN, f"{server} did not sign the invite")
        return signed
