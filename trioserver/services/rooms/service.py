"""Room operations of local users: create, membership, send, state, redact, aliases."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import apsw

from trioserver.config import Config
from trioserver.errors import Codes, MatrixError, forbidden, not_found
from trioserver.identifiers import split_user_id
from trioserver.services.events import auth_rules
from trioserver.services.events.event import Event
from trioserver.services.events.power_levels import LEVEL_DEFAULTS, named_level
from trioserver.services.events.room_versions import (
    CREATABLE_VERSIONS,
    get_room_version,
)
from trioserver.services.rooms.appender import Appended, Appender, Draft, TxnKey
from trioserver.services.rooms.cache import RoomCache, RoomView
from trioserver.services.rooms.power_defaults import PRESETS, default_power_levels
from trioserver.services.sessions import Requester
from trioserver.storage.db import Database
from trioserver.storage.repositories import profiles as profiles_repo
from trioserver.storage.repositories import rooms as rooms_repo

MAX_ID_BYTES = 255

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateSpec:
    type: str
    state_key: str
    content: dict[str, Any]


@dataclass(frozen=True)
class CreateRoomRequest:
    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = field(default_factory=list)
    room_version: str | None = None
    creation_content: dict[str, Any] = field(default_factory=dict)
    initial_state: list[StateSpec] = field(default_factory=list)
    preset: str | None = None
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


RemoteJoin = Callable[[str, str, Sequence[str], dict[str, Any]], Awaitable[str]]
# Asks an alias's server for (room_id, servers) (federation query/directory).
RemoteAlias = Callable[[str], Awaitable[tuple[str, list[str]]]]
# Asks the application services whose alias namespace holds an unknown local alias to create
# it (Application Service API, Querying): True when one answered 200.
AppserviceAliasQuery = Callable[[str], Awaitable[bool]]
# (alias, requester's appservice id or None) -> whether another appservice claims the alias
# exclusively, and whether the requester's own appservice has it in its namespace.
AliasNamespaces = Callable[[str, str | None], tuple[bool, bool]]


class InviteHooks(Protocol):
    """Invites across servers (federation/invites.py), as the room service uses them."""

    async def countersign(self, event: Event, view: RoomView) -> Event: ...

    async def inviter_server(self, user_id: str, room_id: str) -> str | None: ...

    async def close(self, user_id: str, room_id: str) -> None: ...

    async def reject(self, user_id: str, room_id: str) -> None: ...

    async def knock(self, user_id: str, room_id: str, servers: list[str],
                    content: dict[str, Any]) -> None: ...


def check_room_id(room_id: str) -> str:
    if not room_id.startswith("!") or len(room_id.encode()) > MAX_ID_BYTES or \
            not room_id[1:].isprintable() or len(room_id) < 2:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room ID")
    return room_id


def check_event_id(event_id: str) -> str:
    if not event_id.startswith("$") or len(event_id.encode()) > MAX_ID_BYTES or \
            len(event_id) < 2 or not event_id.isprintable():
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event ID")
    return event_id


def check_user_id(user_id: str) -> str:
    if split_user_id(user_id) is None:
        raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid user ID {user_id[:80]!r}")
    return user_id


class Rooms:
    def __init__(self, config: Config, db: Database, cache: RoomCache,
                 appender: Appender) -> None:
        self._config = config
        self._server_name = config.server_name
        self._db = db
        self._cache = cache
        self._appender = appender
        # Set by the composition root when federation is on: joins rooms on other servers,
        # and invites across servers.
        self.remote_join: RemoteJoin | None = None
        self.remote_alias: RemoteAlias | None = None
        self.invites: InviteHooks | None = None
        # Set when application services are registered.
        self.appservice_alias: AppserviceAliasQuery | None = None
        self.alias_namespaces: AliasNamespaces | None = None

    # -- aliases --------------------------------------------------------------------------

    def check_alias(self, alias: str) -> str:
        if not alias.startswith("#") or ":" not in alias or len(alias.encode()) > MAX_ID_BYTES:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room alias")
        localpart, server = alias[1:].split(":", 1)
        if not localpart or not localpart.isprintable() or server != self._server_name:
            if server != self._server_name and localpart:
                raise MatrixError(404, Codes.NOT_FOUND,
                                  "Room alias is on another server (federation is not enabled)")
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room alias")
        return alias

    async def resolve_alias(self, alias: str) -> str:
        self.check_alias(alias)
        found = await self._db.read(lambda c: rooms_repo.get_alias(c, alias))
        if found is None and self.appservice_alias is not None \
                and await self.appservice_alias(alias):
            found = await self._db.read(lambda c: rooms_repo.get_alias(c, alias))
        if found is None:
            raise not_found(f"Room alias {alias} not found")
        return found[0]

    def _check_alias_namespace(self, requester: Requester, alias: str) -> bool:
        """Refuse an alias another application service holds exclusively (400 M_EXCLUSIVE);
        True when the requester is an appservice whose namespace holds it."""
        if self.alias_namespaces is None:
            return False
        taken, own = self.alias_namespaces(alias, requester.appservice_id)
        if taken:
            raise MatrixError(400, Codes.EXCLUSIVE,
                              "This alias is reserved by an application service")
        return own

    async def lookup_alias(self, alias: str) -> tuple[str, list[str]]:
        """(room_id, servers to join through) of any alias; other servers' are asked."""
        server = alias.split(":", 1)[1] if alias.startswith("#") and ":" in alias else ""
        if (server and server != self._server_name and self.remote_alias is not None
                and len(alias.encode()) <= MAX_ID_BYTES and alias[1:].split(":", 1)[0]):
            return await self.remote_alias(alias)
        return await self.resolve_alias(alias), [self._server_name]

    async def create_alias(self, requester: Requester, alias: str, room_id: str) -> None:
        self.check_alias(alias)
        self._check_alias_namespace(requester, alias)
        view = await self._room(room_id)
        del view
        created = await self._db.write(
            lambda c: rooms_repo.insert_alias(c, alias, room_id, requester.user_id))
        if not created:
            raise MatrixError(409, Codes.UNKNOWN, f"Room alias {alias} already exists")

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        self.check_alias(alias)
        found = await self._db.read(lambda c: rooms_repo.get_alias(c, alias))
        if found is None:
            raise not_found(f"Room alias {alias} not found")
        room_id, creator = found
        # An application service manages the aliases in its namespace (as Synapse allows).
        own_namespace = self._check_alias_namespace(requester, alias)
        if creator != requester.user_id and not own_namespace:
            # Room admins (who may change m.room.canonical_alias) may also remove aliases.
            view = await self._room(room_id)
            level = await self._power_level(view, requester.user_id)
            needed = await self._state_level(view, "m.room.canonical_alias")
            if level < needed:
                raise forbidden("You may not delete this alias")
        await self._db.write(lambda c: rooms_repo.delete_alias(c, alias))

    async def aliases(self, requester: Requester, room_id: str) -> list[str]:
        view = await self._room(room_id)
        await self._require_member_or_world_readable(view, requester.user_id)
        return await self._db.read(lambda c: rooms_repo.aliases_of_room(c, room_id))

    # -- create ---------------------------------------------------------------------------

    async def create_room(self, requester: Requester, req: CreateRoomRequest) -> str:
        version_id = req.room_version or self._config.rooms.default_room_version
        version = get_room_version(version_id)
        if version is None or version_id not in CREATABLE_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION",
                              f"Unsupported room version {version_id[:32]!r}")
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        if preset not in PRESETS:
            raise MatrixError(400, Codes.BAD_JSON, f"Unknown preset {preset[:32]!r}")
        creator = requester.user_id
        invitees = list(dict.fromkeys(check_user_id(u) for u in req.invite))
        alias = None
        if req.room_alias_name is not None:
            if ":" in req.room_alias_name or not req.room_alias_name.strip():
                raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room_alias_name")
            alias = self.check_alias(f"#{req.room_alias_name}:{self._server_name}")
            self._check_alias_namespace(requester, alias)
            if await self._db.read(lambda c: rooms_repo.get_alias(c, alias)) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

        create_content: dict[str, Any] = dict(req.creation_content)
        create_content["room_version"] = version_id
        if not version.implicit_room_creator:
            create_content["creator"] = creator
        if version.room_id_is_create_hash and preset == "trusted_private_chat":
            extra = create_content.get("additional_creators", [])
            if not isinstance(extra, list):
                raise MatrixError(400, Codes.BAD_JSON, "additional_creators must be a list")
            create_content["additional_creators"] = list(dict.fromkeys([*extra, *invitees]))
        room_id = None
        if not version.room_id_is_create_hash:
            room_id = "!" + "".join(secrets.choice(string.ascii_letters) for _ in range(18)) + \
                ":" + self._server_name

        drafts: list[Draft] = [
            Draft("m.room.member", creator, await self.member_content(creator, "join"),
                  state_key=creator),
        ]
        power = default_power_levels(version, creator, preset, invitees)
        if req.power_level_content_override:
            power.update(req.power_level_content_override)
        drafts.append(Draft("m.room.power_levels", creator, power, state_key=""))
        if alias is not None:
            drafts.append(Draft("m.room.canonical_alias", creator, {"alias": alias},
                                state_key=""))
        settings = PRESETS[preset]
        drafts.append(Draft("m.room.join_rules", creator, {"join_rule": settings["join_rule"]},
                            state_key=""))
        drafts.append(Draft("m.room.history_visibility", creator,
                            {"history_visibility": settings["history_visibility"]}, state_key=""))
        drafts.append(Draft("m.room.guest_access", creator,
                            {"guest_access": settings["guest_access"]}, state_key=""))
        for spec in req.initial_state:
            drafts.append(Draft(spec.type, creator, spec.content, state_key=spec.state_key))
        if req.name is not None:
            drafts.append(Draft("m.room.name", creator, {"name": req.name}, state_key=""))
        if req.topic is not None:
            drafts.append(Draft("m.room.topic", creator, {"topic": req.topic}, state_key=""))
        # Users of other servers are invited once the room exists: their server must
        # countersign the invite (set_membership does that); local ones go in the batch.
        remote_invitees = [u for u in invitees if not u.endswith(f":{self._server_name}")]
        for user in invitees:
            if user in remote_invitees:
                continue
            content = await self.member_content(user, "invite")
            if req.is_direct:
                content["is_direct"] = True
            drafts.append(Draft("m.room.member", creator, content, state_key=user))

        for draft in drafts:
            if draft.state_key is not None and draft.type != "m.room.member":
                _validate_state_content(draft.type, draft.content)
        try:
            new_room_id, _ = await self._appender.create_room(
                Draft("m.room.create", creator, create_content, state_key=""), version,
                room_id, drafts, published=req.visibility == "public")
        except MatrixError as e:
            if e.status != 403:
                raise
            # The request's own state would not pass the auth rules (e.g. a power level
            # override below what setting the name needs): the spec's M_INVALID_ROOM_STATE.
            raise MatrixError(400, "M_INVALID_ROOM_STATE",
                              f"The initial state is invalid: {e.message}") from None
        if alias is not None:
            created = await self._db.write(
                lambda c: rooms_repo.insert_alias(c, alias, new_room_id, creator))
            if not created:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        for user in remote_invitees:
            try:
                await self.set_membership(requester, new_room_id, user, "invite",
                                          extra={"is_direct": True} if req.is_direct else None)
            except MatrixError as e:
                # The room exists either way; an unreachable server only loses its invite
                # (as Synapse does), the client can invite again.
                log.info("invite of %s to %s failed: %s", user, new_room_id, e.message)
        return new_room_id

    # -- membership -----------------------------------------------------------------------

    async def join(self, requester: Requester, room_id_or_alias: str,
                   reason: str | None = None, via: Sequence[str] = ()) -> str:
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await self.lookup_alias(room_id_or_alias)
            via = [*via, *alias_servers]
        else:
            room_id = check_room_id(room_id_or_alias)
        content = await self.member_content(requester.user_id, "join", reason)
        if await self._cache.room(room_id) is None:
            # Not a room this server is in: join it through the servers the client named (and,
            # for room IDs that carry one, the server in the ID).
            servers = [*via]
            if self.invites is not None and (
                    inviter := await self.invites.inviter_server(requester.user_id, room_id)):
                servers.append(inviter)
            if ":" in room_id:
                servers.append(room_id.split(":", 1)[1])
            if self.remote_join is None or not servers:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
            await self.remote_join(requester.user_id, room_id, servers, content)
            await self._db.write(lambda c: rooms_repo.unforget(c, requester.user_id, room_id))
            if self.invites is not None:
                await self.invites.close(requester.user_id, room_id)
            return room_id
        await self._appender.append(room_id, Draft("m.room.member", requester.user_id, content,
                                                   state_key=requester.user_id))
        await self._db.write(lambda c: rooms_repo.unforget(c, requester.user_id, room_id))
        return room_id

    async def knock(self, requester: Requester, room_id_or_alias: str,
                    reason: str | None = None, via: Sequence[str] = ()) -> str:
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await self.lookup_alias(room_id_or_alias)
            via = [*via, *alias_servers]
        else:
            room_id = check_room_id(room_id_or_alias)
        if await self._cache.room(room_id) is None and self.invites is not None:
            # A room on another server: knock through the servers the client named.
            servers = [*via, *([room_id.split(":", 1)[1]] if ":" in room_id else [])]
            if not servers:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
            content = await self.member_content(requester.user_id, "knock", reason)
            await self.invites.knock(requester.user_id, room_id, servers, content)
            return room_id
        view = await self._room(room_id)
        if not view.room_version.knocking:
            raise forbidden("This room version does not support knocking")
        content = await self.member_content(requester.user_id, "knock", reason)
        await self._appender.append(room_id, Draft("m.room.member", requester.user_id, content,
                                                   state_key=requester.user_id))
        return room_id

    async def set_membership(self, requester: Requester, room_id: str, target: str,
                             membership: str, reason: str | None = None,
                             extra: dict[str, Any] | None = None) -> str:
        """invite, leave (self), kick (leave of another), ban, unban (leave of a banned user)."""
        check_room_id(room_id)
        check_user_id(target)
        await self._room(room_id)
        if membership == "invite":
            content = await self.member_content(target, "invite", reason)
        else:
            content = {"membership": membership}
            if reason:
                content["reason"] = reason
        if extra:
            content.update(extra)
        remote = not target.endswith(f":{self._server_name}")
        countersign = self.invites.countersign if (
            membership == "invite" and remote and self.invites is not None) else None
        appended = await self._appender.append(
            room_id, Draft("m.room.member", requester.user_id, content, state_key=target),
            countersign=countersign)
        return appended.event.event_id

    async def unban(self, requester: Requester, room_id: str, target: str,
                    reason: str | None) -> None:
        view = await self._room(check_room_id(room_id))
        if await self.membership_of(view, check_user_id(target)) != "ban":
            raise forbidden(f"{target} is not banned")
        await self.set_membership(requester, room_id, target, "leave", reason)

    async def kick(self, requester: Requester, room_id: str, target: str,
                   reason: str | None) -> None:
        view = await self._room(check_room_id(room_id))
        if await self.membership_of(view, check_user_id(target)) not in ("join", "invite",
                                                                          "knock"):
            raise forbidden(f"{target} is not in the room")
        await self.set_membership(requester, room_id, target, "leave", reason)

    async def leave(self, requester: Requester, room_id: str, reason: str | None) -> None:
        check_room_id(room_id)
        if await self._cache.room(room_id) is None and self.invites is not None and \
                await self.invites.inviter_server(requester.user_id, room_id):
            # Rejecting an invite to a room on another server.
            await self.invites.reject(requester.user_id, room_id)
            return
        view = await self._room(room_id)
        current = await self.membership_of(view, requester.user_id)
        if current in (None, "leave"):
            # Leaving a room one is not in is a no-op for clients (Synapse answers 200 too
            # when the user already left); unknown memberships are refused.
            if current is None:
                raise forbidden("You are not in this room")
            return
        await self.set_membership(requester, room_id, requester.user_id, "leave", reason)

    async def forget(self, requester: Requester, room_id: str) -> None:
        view = await self._room(check_room_id(room_id))
        if await self.membership_of(view, requester.user_id) in ("join", "invite", "knock"):
            raise MatrixError(400, Codes.UNKNOWN, "You must leave the room before forgetting it")
        await self._db.write(lambda c: rooms_repo.forget(c, requester.user_id, room_id))

    # -- sending --------------------------------------------------------------------------

    async def send(self, requester: Requester, room_id: str, event_type: str,
                   content: dict[str, Any], txn_id: str) -> Appended:
        check_room_id(room_id)
        _check_type(event_type)
        await self._room(room_id)
        redacts = None
        if event_type == "m.room.redaction":
            target = content.get("redacts")
            if not isinstance(target, str):
                raise MatrixError(400, Codes.BAD_JSON, "m.room.redaction needs content.redacts")
            redacts = check_event_id(target)
            await self._check_may_redact(room_id, requester.user_id, redacts)
            content = {k: v for k, v in content.items() if k != "redacts"}
        return await self._appender.append(
            room_id, Draft(event_type, requester.user_id, content, redacts=redacts),
            txn=TxnKey(requester.user_id, requester.device_id, f"send {room_id} {event_type}",
                       txn_id))

    async def redact(self, requester: Requester, room_id: str, event_id: str,
                     reason: str | None, txn_id: str) -> Appended:
        check_room_id(room_id)
        check_event_id(event_id)
        await self._room(room_id)
        await self._check_may_redact(room_id, requester.user_id, event_id)
        content: dict[str, Any] = {"reason": reason} if reason else {}
        return await self._appender.append(
            room_id, Draft("m.room.redaction", requester.user_id, content, redacts=event_id),
            txn=TxnKey(requester.user_id, requester.device_id, f"redact {room_id} {event_id}",
                       txn_id))

    async def set_state(self, requester: Requester, room_id: str, event_type: str,
                        state_key: str, content: dict[str, Any]) -> str:
        check_room_id(room_id)
        _check_type(event_type)
        if len(state_key.encode()) > MAX_ID_BYTES:
            raise MatrixError(400, Codes.INVALID_PARAM, "state_key is too long")
        view = await self._room(room_id)
        _validate_state_content(event_type, content)
        if event_type == "m.room.member":
            membership = content.get("membership")
            if membership == "join" and state_key != requester.user_id:
                raise forbidden("You can only join as yourself")
        if event_type == "m.room.canonical_alias":
            await self._check_canonical_alias(room_id, content)
        # Re-sending identical state is a no-op that returns the existing event (as Synapse).
        existing_id = view.state.get((event_type, state_key))
        if existing_id is not None:
            existing = (await self._cache.events([existing_id])).get(existing_id)
            if existing is not None and existing.sender == requester.user_id and \
                    dict(existing.content) == content:
                return existing_id
        appended = await self._appender.append(
            room_id, Draft(event_type, requester.user_id, content, state_key=state_key))
        return appended.event.event_id

    # -- helpers --------------------------------------------------------------------------

    async def view(self, room_id: str) -> RoomView:
        return await self._room(room_id)

    async def _room(self, room_id: str) -> RoomView:
        view = await self._cache.room(room_id)
        if view is None:
            raise not_found("Unknown room")
        return view

    async def membership_of(self, view: RoomView, user_id: str) -> str | None:
        event_id = view.state.get(("m.room.member", user_id))
        if event_id is None:
            return None
        event = (await self._cache.events([event_id]))[event_id]
        return event.membership

    async def _power_level(self, view: RoomView, user_id: str) -> float:
        state = await self._appender.state_events(
            view, [("m.room.create", ""), ("m.room.power_levels", "")])
        return auth_rules.power_level(user_id, state, state.get(("m.room.create", "")))

    async def _state_level(self, view: RoomView, event_type: str) -> float:
        state = await self._appender.state_events(
            view, [("m.room.create", ""), ("m.room.power_levels", "")])
        return auth_rules.required_level(event_type, True, state)

    async def _require_member_or_world_readable(self, view: RoomView, user_id: str) -> None:
        if await self.membership_of(view, user_id) == "join":
            return
        hv_id = view.state.get(("m.room.history_visibility", ""))
        if hv_id is not None:
            hv = (await self._cache.events([hv_id]))[hv_id]
            if hv.content.get("history_visibility") == "world_readable":
                return
        raise forbidden("You are not in this room")

    async def _check_may_redact(self, room_id: str, user_id: str, event_id: str) -> None:
        """Local rule (spec "Handling redactions"): own events, or the redact power level."""
        target = (await self._cache.events([event_id])).get(event_id)
        if target is None or target.room_id != room_id:
            raise not_found("Event not found")
        if target.sender == user_id:
            return
        view = await self._room(room_id)
        state = await self._appender.state_events(
            view, [("m.room.create", ""), ("m.room.power_levels", "")])
        level = auth_rules.power_level(user_id, state, state.get(("m.room.create", "")))
        if level < named_level("redact", state):
            raise forbidden("You may not redact other users' events")

    async def _check_canonical_alias(self, room_id: str, content: dict[str, Any]) -> None:
        aliases: list[Any] = []
        if "alias" in content:
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise MatrixError(400, Codes.BAD_JSON, "alt_aliases must be a list")
        aliases.extend(alt)
        for alias in aliases:
            if not isinstance(alias, str):
                raise MatrixError(400, Codes.BAD_JSON, "aliases must be strings")
            self.check_alias(alias)
            found = await self._db.read(lambda c, a=alias: rooms_repo.get_alias(c, a))  # type: ignore[misc]
            if found is None or found[0] != room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"{alias} does not point to this room")

    async def member_content(self, user_id: str, membership: str,
                              reason: str | None = None) -> dict[str, Any]:
        """Member event content with the user's profile, as clients expect to display it."""
        content: dict[str, Any] = {"membership": membership}
        if reason:
            content["reason"] = reason
        parts = split_user_id(user_id)
        if parts is not None and parts[1] == self._server_name:
            profile = await self._db.read(lambda c: _profile(c, user_id))
            for key in ("displayname", "avatar_url"):
                if isinstance(profile.get(key), str):
                    content[key] = profile[key]
        return content


def _profile(conn: apsw.Connection, user_id: str) -> dict[str, Any]:
    return profiles_repo.get_profile(conn, user_id)


def _check_type(event_type: str) -> None:
    if not event_type or len(event_type.encode()) > MAX_ID_BYTES:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid event type")


def _validate_state_content(event_type: str, content: dict[str, Any]) -> None:
    """Content checks beyond the auth rules, so clients get 400 rather than a broken room."""
    if event_type == "m.room.power_levels":
        for key in LEVEL_DEFAULTS:
            if key in content and (isinstance(content[key], bool) or
                                   not isinstance(content[key], int)):
                raise MatrixError(400, Codes.BAD_JSON, f"power_levels.{key} must be an integer")
        for key in ("users", "events", "notifications"):
            value = content.get(key, {})
            if not isinstance(value, dict) or any(
                    isinstance(v, bool) or not isinstance(v, int) for v in value.values()):
                raise MatrixError(400, Codes.BAD_JSON,
                                  f"power_levels.{key} must map to integers")
        for user in content.get("users", {}):
            check_user_id(user)
    elif event_type == "m.room.member":
        if not isinstance(content.get("membership"), str):
            raise MatrixError(400, Codes.BAD_JSON, "m.room.member needs a membership")
    elif event_type == "m.room.create":
        raise forbidden("m.room.create cannot be changed")
