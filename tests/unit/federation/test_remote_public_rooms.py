"""Another server's public rooms: the client's paging, search and network selection
(`third_party_instance_id`, `include_all_networks`) are passed on as the federation API
defines them (GET query, or the POST body when searching)."""

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
