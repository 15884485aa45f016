"""Inbound federation: transactions (`/send`) and remote users joining our rooms.

A transaction is handled once per (origin, txnId) (retries get the first answer). Each PDU
must come from the origin (its sender is a user of the origin server), pass the PDU checks
(pdus.py) and the room checks (rooms/remote.py); a PDU whose prev_events we lack is retried
once after fetching them from the origin with `get_missing_events`. A PDU that fails gets an
`error` in the response and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import split_user_id
from trioserver.services.clock import now_ms
from trioserver.services.events import auth_rules
from trioserver.services.events.auth_numbers import AuthError
from trioserver.services.events.event import Event
from trioserver.services.events.hashing import compute_event_id
from trioserver.services.events.room_versions import EventIdFormat, RoomVersion
from trioserver.services.federation.acl import server_allowed
from trioserver.services.federation.chain import accept_chain, event_id_of
from trioserver.services.federation.pdus import PduError, VerifyKeys, check_pdu
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.rooms.client_format import stripped_state
from trioserver.services.rooms.remote import Outcome, RemoteEvents
from trioserver.services.sync.rooms import STRIPPED_STATE_TYPES as STRIPPED_TYPES
from trioserver.storage.ttl_store import TTLStore

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
TXN_TTL_S = 3600.0
MISSING_EVENTS_LIMIT = 20


MAX_GAP_STATES = 5

# An EDU handler gets the origin server and the EDU's content.
EduHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class FetchState(Protocol):
    async def __call__(self, origin: str, room_id: str, event_id: str
                       ) -> tuple[list[Any], list[Any], Any]: ...


class FetchMissing(Protocol):
    async def __call__(self, origin: str, room_id: str, earliest: list[str],
                       latest: list[str], limit: int) -> list[Any]: ...


def _event_id_of(pdu: dict[str, Any], version: RoomVersion) -> str:
    """The ID a PDU's result is reported under, even when the PDU is refused."""
    if version.event_id_format is EventIdFormat.V1:
        return str(pdu.get("event_id", "?"))
    try:
        return compute_event_id(pdu, version)
    except (KeyError, TypeError, ValueError):
        return "?"


def _server_of(user_id: str) -> str | None:
    parts = split_user_id(user_id)
    return parts[1] if parts is not None else None


class InboundFederation:
    def __init__(self, server_name: str, cache: RoomCache, remote: RemoteEvents,
                 keys: VerifyKeys, ttl: TTLStore, fetch_missing: FetchMissing | None = None,
                 fetch_state: FetchState | None = None) -> None:
        self._fetch_state = fetch_state
        self._edu_handlers: dict[str, EduHandler] = {}
        self._server_name = server_name
        self._cache = cache
        self._remote = remote
        self._keys = keys
        self._ttl = ttl
        self._fetch_missing = fetch_missing

    async def origin_allowed(self, origin: str, room_id: str) -> bool:
        """Whether the room's m.room.server_acl lets `origin` take part."""
        view = await self._cache.room(room_id)
        acl_id = view.state.get(("m.room.server_acl", "")) if view is not None else None
        if acl_id is None:
            return True
        acl = (await self._cache.events([acl_id])).get(acl_id)
        return server_allowed(acl.content if acl is not None else None, origin)

    async def check_acl(self, origin: str, room_id: str) -> None:
        if not await self.origin_allowed(origin, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, f"{origin} is denied by the server ACL")

    def on_edu(self, edu_type: str, handler: EduHandler) -> None:
        """Register the handler of one EDU type (typing, receipts, presence, ...)."""
        self._edu_handlers[edu_type] = handler

    async def _one_edu(self, origin: str, edu: Any) -> None:
        if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
            return
        handler = self._edu_handlers.get(edu["edu_type"])
        content = edu.get("content")
        if handler is None or not isinstance(content, dict):
            return  # unknown EDU types are ignored, as the spec says
        try:
            await handler(origin, content)
        except MatrixError as e:
            log.info("EDU %s from %s refused: %s", edu["edu_type"], origin, e.message)
        except Exception:
            # A malformed EDU from one server must never fail its transaction's PDUs.
            log.exception("EDU %s from %s failed", edu["edu_type"], origin)

    # -- /send -----------------------------------------------------------------------------

    async def transaction(self, origin: str, txn_id: str, body: dict[str, Any]
                          ) -> dict[str, Any]:
        pdus, edus = body.get("pdus", []), body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, Codes.BAD_JSON, "pdus and edus must be arrays")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(400, Codes.TOO_LARGE,
                              f"at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
        key = f"fedtxn:{origin}:{txn_id}"
        done = self._ttl.get(key)
        if isinstance(done, dict):
            return done
        results: dict[str, Any] = {}
        for pdu in pdus:
            event_id, error = await self._one_pdu(origin, pdu)
            if event_id is not None:
                results[event_id] = {"error": error} if error else {}
        for edu in edus:
            await self._one_edu(origin, edu)
        response = {"pdus": results}
        self._ttl.set(key, response, TXN_TTL_S)
        return response

    async def _one_pdu(self, origin: str, pdu: Any) -> tuple[str | None, str | None]:
        if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
            return None, None
        room_id = pdu["room_id"]
        version = await self._cache.room_version(room_id)
        if version is None:
            return str(pdu.get("event_id", "?")), "this server is not in the room"
        label = _event_id_of(pdu, version)
        if not await self.origin_allowed(origin, room_id):
            return label, f"{origin} is denied by the room's server ACL"
        try:
            event = await check_pdu(pdu, version, self._keys)
        except PduError as e:
            return label, str(e)
        if _server_of(event.sender) != origin:
            return event.event_id, f"the sender {event.sender} is not on {origin}"
        result = await self._remote.accept(event)
        if result.outcome is Outcome.MISSING_PREVS and self._fetch_missing is not None:
            await self._fill_gap(origin, event)
            result = await self._remote.accept(event)
        if result.outcome is Outcome.MISSING_PREVS and self._fetch_state is not None:
            # The gap is too big to walk: take the state at the missing events from the origin.
            states = await self._states_at(origin, event, list(result.missing))
            if states:
                result = await self._remote.accept(event, prev_states=states)
        if result.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            return event.event_id, None
        log.info("PDU %s from %s: %s %s", event.event_id, origin, result.outcome.value,
                 result.reason)
        return event.event_id, f"{result.outcome.value}: {result.reason}"

    async def _states_at(self, origin: str, event: Event, missing: list[str]
                         ) -> dict[str, dict[tuple[str, str], str]]:
        """For each missing prev event: the state after it, from the origin's `/state` and
        the event itself, every event checked (signatures, auth) and kept as an outlier."""
        assert self._fetch_state is not None
        view = await self._cache.room(event.room_id)
        if view is None:
            return {}
        version = view.room_version
        out: dict[str, dict[tuple[str, str], str]] = {}
        for prev_id in missing[:MAX_GAP_STATES]:
            try:
                state_pdus, chain_pdus, prev_pdu = await self._fetch_state(
                    origin, event.room_id, prev_id)
            except Exception as e:  # the event is then refused, nothing else
                log.info("state at %s from %s failed: %s", prev_id, origin, e)
                return {}
            # What we already hold (state and auth events among them) is not checked again.
            ids = {event_id_of(p, version) for p in [*state_pdus, *chain_pdus, prev_pdu]}
            ids |= {a for p in [*state_pdus, *chain_pdus, prev_pdu] if isinstance(p, dict)
                    for a in p.get("auth_events", []) if isinstance(a, str)}
            known = await self._cache.events(ids - {""})
            accepted = await accept_chain([*chain_pdus, *state_pdus, prev_pdu], version,
                                          self._keys, known)
            prev = accepted.get(prev_id)
            if prev is None:
                return {}
            state = {accepted[i].state_tuple: i for p in state_pdus
                     if (i := event_id_of(p, version)) in accepted
                     and accepted[i].state_key is not None}
            if prev.state_key is not None:
                state[prev.state_tuple] = prev.event_id
            await self._remote.store_outliers(event.room_id, accepted)
            out[prev_id] = state
        return out

    async def _fill_gap(self, origin: str, event: Event) -> None:
        """Fetch the events between our extremities and `event` from the origin."""
        view = await self._cache.room(event.room_id)
        assert self._fetch_missing is not None
        if view is None:
            return
        try:
            missing = await self._fetch_missing(origin, event.room_id, list(view.extremities),
                                                [event.event_id], MISSING_EVENTS_LIMIT)
        except Exception as e:
            log.info("get_missing_events from %s failed: %s", origin, e)
            return
        checked: list[Event] = []
        for pdu in missing:
            try:
                checked.append(await check_pdu(pdu, view.room_version, self._keys))
            except PduError as e:
                log.info("missing event from %s refused: %s", origin, e)
        for earlier in sorted(checked, key=lambda e: (e.depth, e.event_id)):
            await self._remote.accept(earlier)

    # -- joins from other servers -----------------------------------------------------------

    async def make_join(self, origin: str, room_id: str, user_id: str,
                        versions: list[str]) -> dict[str, Any]:
        return await self.make_membership(origin, room_id, user_id, "join", versions)

    async def make_membership(self, origin: str, room_id: str, user_id: str,
                              membership: str, versions: list[str] | None) -> dict[str, Any]:
        """A membership event template (make_join, make_knock, make_leave) for a user of
        `origin`, refused early when the room's rules would refuse it."""
        if _server_of(user_id) != origin:
            raise MatrixError(403, Codes.FORBIDDEN, f"{user_id} is not a user of {origin}")
        await self.check_acl(origin, room_id)
        view = await self._cache.room(room_id)
        if view is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if versions is not None and view.room_version.identifier not in versions:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              f"The room is version {view.room_version.identifier}",
                              room_version=view.room_version.identifier)
        if membership == "knock" and not view.room_version.knocking:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              "This room's version does not support knocking",
                              room_version=view.room_version.identifier)
        content = {"membership": membership}
        wanted = auth_rules.auth_types_for_event("m.room.member", user_id, user_id, content,
                                                 view.room_version)
        template: dict[str, Any] = {
            "type": "m.room.member", "state_key": user_id, "sender": user_id,
            "content": content, "room_id": room_id, "origin": self._server_name,
            "origin_server_ts": now_ms(), "depth": view.depth + 1,
            "prev_events": list(view.extremities),
            "auth_events": [view.state[k] for k in wanted if k in view.state],
        }
        probe_pdu = dict(template)
        if view.room_version.event_id_format is EventIdFormat.V1:
            probe_pdu["event_id"] = f"$probe:{self._server_name}"
        await self._check_allowed(view, Event.from_pdu(probe_pdu, view.room_version), wanted)
        return {"event": template, "room_version": view.room_version.identifier}

    async def _accept_own_membership(self, origin: str, room_id: str, event_id: str, pdu: Any,
                                     membership: str) -> None:
        """send_knock / send_leave: check that `pdu` is `membership` of a user of `origin` by
        themselves in a room we have, and accept it (403 if the room's rules refuse it)."""
        await self.check_acl(origin, room_id)
        view = await self._cache.room(room_id)
        if view is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        try:
            event = await check_pdu(pdu, view.room_version, self._keys)
        except PduError as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
        if event.event_id != event_id or event.room_id != room_id or \
                event.type != "m.room.member" or event.membership != membership or \
                event.state_key != event.sender or _server_of(event.sender) != origin:
            raise MatrixError(400, Codes.BAD_JSON,
                              f"not a {membership} of a user of {origin} by themselves")
        result = await self._remote.accept(event)
        if result.outcome not in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            raise MatrixError(403, Codes.FORBIDDEN, f"{membership} refused: "
                              f"{result.outcome.value}: {result.reason}")

    async def send_knock(self, origin: str, room_id: str, event_id: str, pdu: Any
                         ) -> dict[str, Any]:
        """Accept a remote user's knock; answer with the stripped state knockers see."""
        await self._accept_own_membership(origin, room_id, event_id, pdu, "knock")
        view = await self._cache.room(room_id)
        assert view is not None
        keys = [(t, "") for t in STRIPPED_TYPES]
        found = await self._cache.events(view.state[k] for k in keys if k in view.state)
        return {"knock_room_state": [stripped_state(found[view.state[k]]) for k in keys
                                     if k in view.state and view.state[k] in found]}

    async def _check_allowed(self, view: RoomView, event: Event,
                             wanted: list[tuple[str, str]]) -> None:
        keys = [("m.room.create", ""), *wanted]
        found = await self._cache.events(view.state[k] for k in keys if k in view.state)
        auth_state = {k: found[view.state[k]] for k in keys
                      if k in view.state and view.state[k] in found}
        try:
            auth_rules.check_event(event, auth_state, found.get(view.create_event_id))
        except AuthError as e:
            raise MatrixError(403, Codes.FORBIDDEN, f"Not allowed in this room: {e}") from None

    async def send_join(self, origin: str, room_id: str, event_id: str, pdu: Any
                        ) -> dict[str, Any]:
        """Accept a remote user's signed join; answer with the room's state and auth chain."""
        await self.check_acl(origin, room_id)
        view = await self._cache.room(room_id)
        if view is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        try:
            event = await check_pdu(pdu, view.room_version, self._keys)
        except PduError as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
        if event.event_id != event_id or event.room_id != room_id:
            raise MatrixError(400, Codes.BAD_JSON, "event ID or room ID does not match the path")
        if event.type != "m.room.member" or event.membership != "join" or \
                event.state_key != event.sender or _server_of(event.sender) != origin:
            raise MatrixError(400, Codes.BAD_JSON,
                              f"not a join of a user of {origin} by themselves")
        result = await self._remote.accept(event)
        if result.outcome not in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            raise MatrixError(403, Codes.FORBIDDEN, f"join refused: {result.outcome.value}: "
                              f"{result.reason}")
        state, chain = await self._remote.state_and_auth_chain(room_id, event)
        return {"origin": self._server_name, "event": dict(event.pdu),
                "state": state, "auth_chain": chain, "members_omitted": False}

    # -- leaves from other servers (rejected invites) ---------------------------------------

    async def make_leave(self, origin: str, room_id: str, user_id: str) -> dict[str, Any]:
        return await self.make_membership(origin, room_id, user_id, "leave", None)

    async def send_leave(self, origin: str, room_id: str, event_id: str, pdu: Any) -> None:
        await self._accept_own_membership(origin, room_id, event_id, pdu, "leave")
