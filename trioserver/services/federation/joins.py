"""A local user joins a room that lives on other servers (make_join / send_join).

The resident server proposes the join event (make_join); we fill it in, sign it and send it
(send_join v2); it answers with the room's state before the join and the auth chain. Before the
room becomes usable here, every one of those events must carry valid signatures and pass the
auth rules against its own auth events (in topological order), and our join must pass against
the state. They are stored as outliers (for auth and state, not for the timeline); the join is
the room's first timeline event here, and later events arrive by /send.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

import apsw

from trioserver.errors import Codes, MatrixError
from trioserver.services.clock import now_ms
from trioserver.services.events import auth_rules
from trioserver.services.events.auth_numbers import AuthError
from trioserver.services.events.event import Event
from trioserver.services.events.room_versions import (
    ROOM_VERSIONS,
    EventIdFormat,
    RoomVersion,
    get_room_version,
)
from trioserver.services.events.signing import SigningKey, hash_and_sign_event
from trioserver.services.federation.chain import accept_chain, event_id_of
from trioserver.services.federation.errors import FederationRequestError
from trioserver.services.federation.pdus import PduError, VerifyKeys, check_pdu
from trioserver.services.rooms.appender import Appender
from trioserver.services.rooms.cache import RoomCache
from trioserver.storage.db import Database
from trioserver.storage.repositories import events as events_repo
from trioserver.storage.repositories import rooms as rooms_repo

log = logging.getLogger(__name__)

MEMBER = "m.room.member"


class FederationRequests(Protocol):
    async def get_json(self, destination: str, path: str, *, query: Any = None,
                       timeout_s: float | None = None) -> Any: ...

    async def put_json(self, destination: str, path: str, body: Any, *,
                       query: Any = None, timeout_s: float | None = None) -> Any: ...


class RemoteJoiner:
    def __init__(self, server_name: str, signing_key: SigningKey, db: Database,
                 cache: RoomCache, appender: Appender, client: FederationRequests,
                 keys: VerifyKeys) -> None:
        self._server_name = server_name
        self._key = signing_key
        self._db = db
        self._cache = cache
        self._appender = appender
        self._client = client
        self._keys = keys

    async def join(self, user_id: str, room_id: str, servers: Sequence[str],
                   content: dict[str, Any]) -> str:
        """Join `room_id` through the first of `servers` that lets us; MatrixError if none."""
        candidates = [s for s in dict.fromkeys(servers) if s and s != self._server_name]
        if not candidates:
            raise MatrixError(404, Codes.NOT_FOUND,
                              "No known servers to join this room through")
        last: Exception | None = None
        for server in candidates:
            try:
                await self._join_via(server, user_id, room_id, content)
                return room_id
            except MatrixError as e:
                if e.status in (400, 403):
                    raise
                last = e
            except Exception as e:  # an unreachable or broken server: try the next one
                log.info("remote join of %s via %s failed: %s", room_id, server, e)
                last = e
        raise MatrixError(404, Codes.NOT_FOUND,
                          f"Could not join {room_id} through {', '.join(candidates)}: {last}")

    async def _join_via(self, server: str, user_id: str, room_id: str,
                        content: dict[str, Any]) -> None:
        path_room, path_user = quote(room_id, safe=""), quote(user_id, safe="")
        template = await self._client.get_json(
            server, f"/_matrix/federation/v1/make_join/{path_room}/{path_user}",
            query={"ver": list(ROOM_VERSIONS)})
        version = _version_of(template)
        event = self._fill_and_sign(template.get("event"), version, user_id, room_id, content)
        path_event = quote(event.event_id, safe="")
        try:
            response = await self._client.put_json(
                server, f"/_matrix/federation/v2/send_join/{path_room}/{path_event}",
                dict(event.pdu))
        except FederationRequestError as e:
            if e.status not in (400, 404) or e.errcode != "M_UNRECOGNIZED":
                raise
            # An old server without v2: v1 answers [200, body].
            answer = await self._client.put_json(
                server, f"/_matrix/federation/v1/send_join/{path_room}/{path_event}",
                dict(event.pdu))
            response = answer[1] if isinstance(answer, list) and len(answer) == 2 else answer
        if not isinstance(response, dict):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent a malformed send_join answer")
        # A resident server may add its own signature (restricted joins): prefer its copy.
        returned = response.get("event")
        if isinstance(returned, dict):
            try:
                checked = await check_pdu(returned, version, self._keys)
                if checked.event_id == event.event_id:
                    event = checked
            except PduError:
                pass
        state, chain = response.get("state"), response.get("auth_chain")
        if not isinstance(state, list) or not isinstance(chain, list):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent no state or auth chain")
        accepted = await self._check_all([*chain, *state], version)
        state_map: dict[tuple[str, str], str] = {}
        for pdu in state:
            ev = accepted.get(_id_of(pdu, version)) if isinstance(pdu, dict) else None
            if ev is not None and ev.state_key is not None:
                state_map[ev.state_tuple] = ev.event_id
        create = accepted.get(state_map.get(("m.room.create", ""), ""))
        if create is None:
            raise MatrixError(502, Codes.UNKNOWN, f"{server}'s state has no create event")
        auth_state = {k: accepted[v] for k, v in state_map.items()}
        try:
            auth_rules.check_event(event, auth_state, create)
        except AuthError as e:
            raise MatrixError(403, Codes.FORBIDDEN, f"The join is not allowed: {e}") from None
        await self._persist(room_id, version, create, event, accepted, state_map)

    def _fill_and_sign(self, template: Any, version: RoomVersion, user_id: str, room_id: str,
                       content: dict[str, Any]) -> Event:
        if not isinstance(template, dict) or template.get("type") != MEMBER or \
                template.get("state_key") != user_id or template.get("sender") != user_id or \
                template.get("room_id") != room_id:
            raise MatrixError(502, Codes.UNKNOWN, "make_join gave an unusable event template")
        pdu: dict[str, Any] = {k: template[k] for k in (
            "type", "state_key", "sender", "room_id", "prev_events", "auth_events", "depth")
            if k in template}
        proposed = template.get("content")
        pdu["content"] = {**(proposed if isinstance(proposed, dict) else {}), **content,
                          "membership": "join"}
        pdu["origin_server_ts"] = now_ms()
        if version.event_id_format is EventIdFormat.V1:
            pdu["event_id"] = f"${secrets.token_urlsafe(18)}:{self._server_name}"
        signed = hash_and_sign_event(pdu, self._server_name, self._key, version)
        return Event.from_pdu(signed, version)

    async def _check_all(self, pdus: list[Any], version: RoomVersion) -> dict[str, Event]:
        return await accept_chain(pdus, version, self._keys)

    async def _persist(self, room_id: str, version: RoomVersion, create: Event, join: Event,
                       accepted: dict[str, Event], state: dict[tuple[str, str], str]) -> None:
        after = {**state, join.state_tuple: join.event_id}

        def write(conn: apsw.Connection) -> int:
            if rooms_repo.get_room(conn, room_id) is None:
                rooms_repo.insert_room(conn, room_id, version.identifier, create.sender,
                                       now_ms(), False)
            for event in accepted.values():
                events_repo.insert_outlier(conn, event.event_id, room_id, dict(event.pdu))
            before_group = events_repo.create_state_group(conn, room_id, None, {}, len(state),
                                                          lambda: dict(state))
            after_group = events_repo.create_state_group(
                conn, room_id, before_group, {join.state_tuple: join.event_id}, len(after),
                lambda: dict(after))
            ordering = events_repo.insert_event(
                conn, join.event_id, room_id, join.type, join.state_key, join.sender,
                join.depth, join.origin_server_ts, before_group, after_group, dict(join.pdu))
            for (event_type, state_key), event_id in after.items():
                event = accepted.get(event_id) or join
                events_repo.set_current_state(
                    conn, room_id, event_type, state_key, event_id,
                    event.membership if event_type == MEMBER else None)
            events_repo.set_forward_extremities(conn, room_id, [join.event_id])
            rooms_repo.clear_current_state_group(conn, room_id)
            return ordering

        ordering = await self._db.write(write)
        for event in accepted.values():
            self._cache.put_event(event)
        view = await self._cache.room(room_id)
        assert view is not None
        self._appender.announce(view, [join], [ordering])


def _version_of(template: Any) -> RoomVersion:
    if not isinstance(template, dict):
        raise MatrixError(502, Codes.UNKNOWN, "make_join gave a malformed answer")
    identifier = template.get("room_version", "1")
    version = get_room_version(identifier) if isinstance(identifier, str) else None
    if version is None:
        raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                          f"This server does not support room version {identifier!r}")
    return version


def _id_of(pdu: dict[str, Any], version: RoomVersion) -> str:
    return event_id_of(pdu, version)
