"""RemoteQueries: another server's public rooms (the client's paging, search and network
selection, `third_party_instance_id` and `include_all_networks`, passed on as the federation
API defines them: GET query, or the POST body when searching), and the remote profile cache."""

from __future__ import annotations

from typing import Any

import pytest

from trioserver.errors import MatrixError
from trioserver.services.federation.queries import RemoteQueries
from trioserver.storage.ttl_store import TTLStore

ANSWER = {"chunk": [{"room_id": "!r:there", "num_joined_members": 1}], "next_batch": "n",
          "total_room_count_estimate": 1}


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def get_json(self, server: str, path: str, *, query: Any = None,
                       timeout_s: float | None = None) -> Any:
        self.calls.append(("GET", path, query))
        return ANSWER

    async def post_json(self, server: str, path: str, body: Any, *,
                        timeout_s: float | None = None) -> Any:
        self.calls.append(("POST", path, body))
        return ANSWER


async def test_network_selection_is_passed_on() -> None:
    client = _Client()
    queries = RemoteQueries(client, TTLStore())  # type: ignore[arg-type]
    out = await queries.public_rooms("there.example", limit=5, since="s", search=None,
                                     network="irc|libera", all_networks=False)
    assert out["chunk"] == ANSWER["chunk"]
    await queries.public_rooms("there.example", limit=None, since=None, search=None,
                               all_networks=True)
    await queries.public_rooms("there.example", limit=3, since=None, search="matrix",
                               network="irc|libera", all_networks=True)
    path = "/_matrix/federation/v1/publicRooms"
    assert client.calls == [
        ("GET", path, {"limit": "5", "since": "s", "third_party_instance_id": "irc|libera"}),
        ("GET", path, {"include_all_networks": "true"}),
        ("POST", path, {"filter": {"generic_search_term": "matrix"}, "limit": 3,
                        "third_party_instance_id": "irc|libera",
                        "include_all_networks": True}),
    ]


async def test_bad_server_names_are_refused() -> None:
    queries = RemoteQueries(_Client(), TTLStore())  # type: ignore[arg-type]
    with pytest.raises(MatrixError) as caught:
        await queries.public_rooms("bad name!", limit=None, since=None, search=None)
    assert caught.value.status == 400


class _ProfileClient:
    def __init__(self) -> None:
        self.calls = 0
        self.name = "Old"

    async def get_json(self, server: str, path: str, *, query: Any = None,
                       timeout_s: float | None = None) -> Any:
        self.calls += 1
        return {"displayname": self.name}


class _Member:
    type = "m.room.member"

    def __init__(self, state_key: str) -> None:
        self.state_key = state_key


async def test_a_member_event_refreshes_the_cached_profile() -> None:
    client = _ProfileClient()
    queries = RemoteQueries(client, TTLStore())  # type: ignore[arg-type]
    assert await queries.profile("@bob:there.example") == {"displayname": "Old"}
    client.name = "New"
    assert await queries.profile("@bob:there.example") == {"displayname": "Old"}  # cached
    assert client.calls == 1
    queries.on_event(_Member("@someone:else.example"), 1)  # type: ignore[arg-type]
    assert await queries.profile("@bob:there.example") == {"displayname": "Old"}
    queries.on_event(_Member("@bob:there.example"), 2)  # type: ignore[arg-type]
    assert await queries.profile("@bob:there.example") == {"displayname": "New"}
    assert client.calls == 2
