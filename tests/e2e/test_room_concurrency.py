"""Many clients sending into one room at once: one linear DAG, nothing lost or duplicated."""

from __future__ import annotations

import apsw
import httpx
import msgpack
import trio

from tests.e2e.helpers import bearer, register
from tests.server_process import ServerProcess

SENDERS = 6
PER_SENDER = 25


async def test_concurrent_senders_build_one_linear_dag(server_factory) -> None:
    srv: ServerProcess = server_factory("--open-registration", "--no-rate-limits")
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        users = [await register(http) for _ in range(SENDERS)]
        r = await http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                            headers=bearer(users[0]["access_token"]))
        room = r.json()["room_id"]
        for u in users[1:]:
            r = await http.post(f"/_matrix/client/v3/join/{room}",
                                headers=bearer(u["access_token"]))
            assert r.status_code == 200

    sent: dict[str, str] = {}

    async def sender(user: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            async def one(i: int) -> None:
                # Every message is sent twice with the same txn id, concurrently.
                txn = f"t{i}"
                results = []

                async def put() -> None:
                    r = await client.put(
                        f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
                        json={"msgtype": "m.text", "body": f"{user['user_id']} {i}"},
                        headers=bearer(user["access_token"]))
                    assert r.status_code == 200, r.text
                    results.append(r.json()["event_id"])

                async with trio.open_nursery() as inner:
                    inner.start_soon(put)
                    inner.start_soon(put)
                assert results[0] == results[1]
                sent[f"{user['user_id']} {i}"] = results[0]

            async with trio.open_nursery() as nursery:
                for i in range(PER_SENDER):
                    nursery.start_soon(one, i)

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(sender, user)
    assert len(set(sent.values())) == SENDERS * PER_SENDER

    conn = apsw.Connection(str(srv.data_dir / "trioserver.db"), flags=apsw.SQLITE_OPEN_READONLY)
    rows = conn.execute("SELECT event_id, pdu FROM events WHERE room_id = ?"
                        " ORDER BY stream_ordering", (room,)).fetchall()
    extremities = conn.execute("SELECT event_id FROM forward_extremities WHERE room_id = ?",
                               (room,)).fetchall()
    conn.close()
    messages = [str(event_id) for event_id, pdu in rows
                if msgpack.unpackb(pdu)["type"] == "m.room.message"]
    assert sorted(messages) == sorted(sent.values())  # each persisted exactly once
    previous = None
    depth = 0
    for event_id, blob in rows:
        pdu = msgpack.unpackb(blob)
        expected_prev: list[object] = [] if previous is None else [previous]
        assert pdu["prev_events"] == expected_prev, "the DAG forked"
        assert pdu["depth"] == depth + 1
        previous, depth = event_id, pdu["depth"]
    assert extremities == [(previous,)]


async def test_identical_rooms_created_at_once_get_distinct_ids(http: httpx.AsyncClient) -> None:
    """v12 room IDs are hashes of the create event: same creator, same content, same instant."""
    user = await register(http)
    ids: list[str] = []

    async def create() -> None:
        r = await http.post("/_matrix/client/v3/createRoom", json={},
                            headers=bearer(user["access_token"]))
        assert r.status_code == 200, r.text
        ids.append(r.json()["room_id"])

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(create)
    assert len(set(ids)) == 20
