"""Space hierarchies: the client walk, pagination, visibility, and spaces on other servers."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.helpers import assert_error, bearer, create_room, put_state, register, unique
from tests.federation_peer import start_tls_peer


async def _space(http: httpx.AsyncClient, token: str, children: list[str], server: str,
                 suggested: set[str] | None = None, **body: object) -> str:
    space = await create_room(http, token, preset="public_chat",
                              creation_content={"type": "m.space"}, **body)
    for child in children:
        content: dict[str, object] = {"via": [server]}
        if suggested is not None and child in suggested:
            content["suggested"] = True
        r = await put_state(http, token, space, "m.space.child", content, state_key=child)
        assert r.status_code == 200, r.text
    return space


async def test_walk_depth_first_with_pagination_and_filters(http: httpx.AsyncClient) -> None:
    owner = await register(http, unique("owner"))
    token = owner["access_token"]
    server = owner["user_id"].split(":", 1)[1]
    leaf_a = await create_room(http, token, preset="public_chat", name="leaf a")
    leaf_b = await create_room(http, token, preset="public_chat", name="leaf b")
    sub = await _space(http, token, [leaf_a], server, name="sub")
    root = await _space(http, token, [sub, leaf_b], server, suggested={leaf_b}, name="root")
    # A child without `via` does not count.
    ghost = await create_room(http, token, preset="public_chat")
    await put_state(http, token, root, "m.space.child", {}, state_key=ghost)

    r = await http.get(f"/_matrix/client/v1/rooms/{root}/hierarchy", headers=bearer(token))
    assert r.status_code == 200, r.text
    rooms = r.json()["rooms"]
    ids = [room["room_id"] for room in rooms]
    assert ids[0] == root
    assert set(ids) == {root, sub, leaf_a, leaf_b}
    assert ids.index(sub) < ids.index(leaf_a)  # depth first: the sub-space's child follows it
    by_id = {room["room_id"]: room for room in rooms}
    assert by_id[root]["room_type"] == "m.space"
    assert by_id[leaf_a]["name"] == "leaf a"
    assert {c["state_key"] for c in by_id[root]["children_state"]} == {sub, leaf_b}
    assert all("origin_server_ts" in c for c in by_id[root]["children_state"])

    # max_depth and suggested_only.
    r = await http.get(f"/_matrix/client/v1/rooms/{root}/hierarchy",
                       params={"max_depth": "1"}, headers=bearer(token))
    assert {room["room_id"] for room in r.json()["rooms"]} == {root, sub, leaf_b}
    r = await http.get(f"/_matrix/client/v1/rooms/{root}/hierarchy",
                       params={"suggested_only": "true"}, headers=bearer(token))
    assert {room["room_id"] for room in r.json()["rooms"]} == {root, leaf_b}

    # Pagination: two at a time, nothing lost or repeated.
    seen: list[str] = []
    params = {"limit": "2"}
    for _ in range(5):
        page = (await http.get(f"/_matrix/client/v1/rooms/{root}/hierarchy", params=params,
                               headers=bearer(token))).json()
        seen += [room["room_id"] for room in page["rooms"]]
        if "next_batch" not in page:
            break
        params = {"limit": "2", "from": page["next_batch"]}
    assert sorted(seen) == sorted(ids)
    bad = await http.get(f"/_matrix/client/v1/rooms/{root}/hierarchy",
                         params={"from": "nonsense"}, headers=bearer(token))
    assert_error(bad, 400, "M_INVALID_PARAM")


async def test_private_space_is_hidden_from_outsiders(http: httpx.AsyncClient) -> None:
    owner = await register(http, unique("owner"))
    outsider = await register(http, unique("outsider"))
    space = await create_room(http, owner["access_token"], preset="private_chat",
                              creation_content={"type": "m.space"})
    r = await http.get(f"/_matrix/client/v1/rooms/{space}/hierarchy",
                       headers=bearer(outsider["access_token"]))
    assert_error(r, 403, "M_FORBIDDEN")


async def test_children_on_another_server_come_over_federation(tmp_path: Path) -> None:
    a = start_tls_peer(tmp_path / "a")
    b = start_tls_peer(tmp_path / "b")
    try:
        async with httpx.AsyncClient(base_url=a.proc.url, timeout=30) as ha, \
                httpx.AsyncClient(base_url=b.proc.url, timeout=30) as hb:
            alice = await register(ha, "alice")
            bob = await register(hb, "bob")
            # A space on B whose child is also on B; the space is listed from A.
            child = await create_room(hb, bob["access_token"], preset="public_chat",
                                      name="remote child")
            space_b = await _space(hb, bob["access_token"], [child], b.name, name="on B")
            space_a = await _space(ha, alice["access_token"], [space_b], a.name,
                                   name="on A")
            r = await ha.put(f"/_matrix/client/v3/rooms/{space_a}/state/m.space.child/"
                             f"{space_b}", json={"via": [b.name]},
                             headers=bearer(alice["access_token"]))
            assert r.status_code == 200, r.text
            r = await ha.get(f"/_matrix/client/v1/rooms/{space_a}/hierarchy",
                             headers=bearer(alice["access_token"]))
            assert r.status_code == 200, r.text
            names = {room.get("name") for room in r.json()["rooms"]}
            assert {"on A", "on B"} <= names, r.json()
    finally:
        a.proc.stop()
        b.proc.stop()
