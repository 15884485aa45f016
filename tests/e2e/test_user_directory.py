"""POST /user_directory/search: who a user can find, and the search_all_users option."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ServerFactory
from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    join_room,
    password_auth,
    register,
    room_path,
    unique,
)

SEARCH = f"{CLIENT}/user_directory/search"


async def search(http: httpx.AsyncClient, token: str, term: str, **extra: Any
                 ) -> dict[str, Any]:
    r = await http.post(SEARCH, json={"search_term": term, **extra}, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def named_user(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    user = await register(http)
    r = await http.put(f"{CLIENT}/profile/{user['user_id']}/displayname",
                       json={"displayname": name}, headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text
    return user


async def deactivate(http: httpx.AsyncClient, user: dict[str, Any]) -> None:
    r = await http.post(f"{CLIENT}/account/deactivate", json={"auth": {}},
                        headers=bearer(user["access_token"]))
    session = r.json()["session"]
    r = await http.post(f"{CLIENT}/account/deactivate",
                        json={"auth": password_auth(user["user_id"], session=session)},
                        headers=bearer(user["access_token"]))
    assert r.status_code == 200, r.text


async def test_shared_and_public_rooms_but_not_strangers(http: httpx.AsyncClient) -> None:
    tag = unique("Zeb")
    me = await register(http)
    friend = await named_user(http, f"{tag} Friend")
    public = await named_user(http, f"{tag} Public")
    stranger = await named_user(http, f"{tag} Stranger")
    private_room = await create_room(http, me["access_token"], preset="private_chat",
                                     invite=[friend["user_id"]])
    await join_room(http, friend["access_token"], private_room)
    await create_room(http, public["access_token"], preset="public_chat")
    await create_room(http, stranger["access_token"], preset="private_chat")

    found = await search(http, me["access_token"], tag.lower())
    assert found["limited"] is False
    by_id = {u["user_id"]: u for u in found["results"]}
    assert set(by_id) == {friend["user_id"], public["user_id"]}
    assert by_id[friend["user_id"]]["display_name"] == f"{tag} Friend"

    # Upper case, and the user ID's localpart.
    localpart = friend["user_id"][1:].split(":")[0]
    found = await search(http, me["access_token"], localpart.upper())
    assert [u["user_id"] for u in found["results"]] == [friend["user_id"]]
    stranger_local = stranger["user_id"][1:].split(":")[0]
    assert (await search(http, me["access_token"], stranger_local))["results"] == []

    limited = await search(http, me["access_token"], tag, limit=1)
    assert len(limited["results"]) == 1
    assert limited["limited"] is True

    # Once the friend leaves the shared room, they are no longer found.
    r = await http.post(room_path(private_room, "leave"), json={},
                        headers=bearer(friend["access_token"]))
    assert r.status_code == 200, r.text
    found = await search(http, me["access_token"], tag)
    assert [u["user_id"] for u in found["results"]] == [public["user_id"]]


async def test_deactivated_users_are_not_found(http: httpx.AsyncClient) -> None:
    tag = unique("Quill")
    me = await register(http)
    gone = await named_user(http, f"{tag} Gone")
    room_id = await create_room(http, me["access_token"], preset="public_chat")
    await join_room(http, gone["access_token"], room_id)
    assert [u["user_id"] for u in (await search(http, me["access_token"], tag))["results"]] \
        == [gone["user_id"]]
    await deactivate(http, gone)
    assert (await search(http, me["access_token"], tag))["results"] == []


async def test_search_validation(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    assert_error(await http.post(SEARCH, json={}, headers=bearer(token)), 400,
                 "M_MISSING_PARAM")
    assert_error(await http.post(SEARCH, json={"search_term": 5}, headers=bearer(token)), 400,
                 "M_BAD_JSON")
    assert_error(await http.post(SEARCH, json={"search_term": "a", "limit": "x"},
                                 headers=bearer(token)), 400, "M_BAD_JSON")
    assert_error(await http.post(SEARCH, json={"search_term": "a"}), 401, "M_MISSING_TOKEN")
    # LIKE wildcards are matched literally.
    assert (await search(http, token, "%"))["results"] == []


async def test_search_all_users_option(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits",
                         config_text="[user_directory]\nsearch_all_users = true\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        tag = unique("Lone")
        me = await register(http)
        loner = await named_user(http, f"{tag} Wolf")
        gone = await named_user(http, f"{tag} Gone")
        await deactivate(http, gone)
        found = await search(http, me["access_token"], tag)
        assert [u["user_id"] for u in found["results"]] == [loner["user_id"]]
