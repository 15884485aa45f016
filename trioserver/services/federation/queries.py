"""Asking other servers about their users, aliases and public rooms (Server-Server API
"Querying for information" and "Public Room Directory").

Answers are checked for shape before a client sees them; profiles are cached briefly so a
client rendering a member list does not send one query per render.
"""

from __future__ import annotations

from typing import Any

from trioserver.errors import Codes, MatrixError
from trioserver.identifiers import is_valid_server_name, split_user_id
from trioserver.services.events.event import Event
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.errors import FederationRequestError, FederationUnreachable
from trioserver.storage.ttl_store import TTLStore

PROFILE_CACHE_S = 60.0
MAX_ALIAS_SERVERS = 20
QUERY_TIMEOUT_S = 30.0


def _relay(e: FederationRequestError | FederationUnreachable, what: str) -> MatrixError:
    """A peer's failure as our client sees it: its 404s stay 404s, the rest is 502."""
    if isinstance(e, FederationRequestError) and e.status == 404:
        return MatrixError(404, Codes.NOT_FOUND, f"{what} not found")
    return MatrixError(502, Codes.UNKNOWN, f"Could not ask about {what}: {e}")


class RemoteQueries:
    def __init__(self, client: FederationClient, ttl: TTLStore) -> None:
        self._client = client
        self._ttl = ttl

    def on_event(self, event: Event, _stream_ordering: int) -> None:
        """Appender listener: a member event may carry a new name or avatar; forget the
        cached profile so the next read asks again."""
        if event.type == "m.room.member" and event.state_key:
            self._ttl.delete(f"remote_profile:{event.state_key}")

    async def profile(self, user_id: str) -> dict[str, Any]:
        """GET /_matrix/federation/v1/query/profile on the user's server, cached a minute
        (or until a member event of the user arrives)."""
        parts = split_user_id(user_id)
        if parts is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid user ID")
        key = f"remote_profile:{user_id}"
        cached = self._ttl.get(key)
        if isinstance(cached, dict):
            return dict(cached)
        try:
            answer = await self._client.get_json(
                parts[1], "/_matrix/federation/v1/query/profile", query={"user_id": user_id},
                timeout_s=QUERY_TIMEOUT_S)
        except (FederationRequestError, FederationUnreachable) as e:
            raise _relay(e, "Profile") from None
        if not isinstance(answer, dict):
            raise MatrixError(502, Codes.UNKNOWN, "The user's server sent an invalid profile")
        profile = {k: v for k, v in answer.items()
                   if k not in ("displayname", "avatar_url") or isinstance(v, str)}
        self._ttl.set(key, profile, PROFILE_CACHE_S)
        return dict(profile)

    async def alias(self, alias: str) -> tuple[str, list[str]]:
        """GET /_matrix/federation/v1/query/directory on the alias's server."""
        server = alias.split(":", 1)[1]
        if not is_valid_server_name(server):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room alias")
        try:
            answer = await self._client.get_json(
                server, "/_matrix/federation/v1/query/directory", query={"room_alias": alias},
                timeout_s=QUERY_TIMEOUT_S)
        except (FederationRequestError, FederationUnreachable) as e:
            raise _relay(e, f"Room alias {alias}") from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent an invalid alias answer")
        listed = [s for s in servers if isinstance(s, str) and is_valid_server_name(s)] \
            if isinstance(servers, list) else []
        # The alias's own server first: it just told us it knows the room.
        ordered = [server, *(s for s in listed if s != server)]
        return room_id, ordered[:MAX_ALIAS_SERVERS]

    async def public_rooms(self, server: str, *, limit: int | None, since: str | None,
                           search: str | None, network: str | None = None,
                           all_networks: bool = False) -> dict[str, Any]:
        """The public rooms of `server`: GET /publicRooms, or POST when filtering. `network`
        (a third_party_instance_id) and `all_networks` pick the application services'
        network directories there, as for our own."""
        if not is_valid_server_name(server):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid server name")
        path = "/_matrix/federation/v1/publicRooms"
        try:
            if search is None:
                query = {k: v for k, v in (
                    ("limit", None if limit is None else str(limit)), ("since", since),
                    ("third_party_instance_id", network),
                    ("include_all_networks", "true" if all_networks else None))
                    if v is not None}
                answer = await self._client.get_json(server, path, query=query,
                                                     timeout_s=QUERY_TIMEOUT_S)
            else:
                body: dict[str, Any] = {"filter": {"generic_search_term": search}}
                if limit is not None:
                    body["limit"] = limit
                if since is not None:
                    body["since"] = since
                if network is not None:
                    body["third_party_instance_id"] = network
                if all_networks:
                    body["include_all_networks"] = True
                answer = await self._client.post_json(server, path, body,
                                                      timeout_s=QUERY_TIMEOUT_S)
        except (FederationRequestError, FederationUnreachable) as e:
            raise _relay(e, f"Public rooms of {server}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} sent an invalid room directory")
        chunk = [c for c in answer["chunk"] if isinstance(c, dict)
                 and isinstance(c.get("room_id"), str)]
        out: dict[str, Any] = {"chunk": chunk}
        for key in ("next_batch", "prev_batch"):
            if isinstance(answer.get(key), str):
                out[key] = answer[key]
        estimate = answer.get("total_room_count_estimate")
        if isinstance(estimate, int) and not isinstance(estimate, bool):
            out["total_room_count_estimate"] = estimate
        return out
