"""A real client's end-to-end encryption against this server: matrix-nio with its Olm/Megolm
machine (vodozemac) uploads keys, queries, claims, shares a Megolm session over to-device and
the other client decrypts the room message."""

from __future__ import annotations

import asyncio
import tempfile
import uuid

import nio

from tests.server_process import ServerProcess

PASSWORD = "a long password 1"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


async def _encrypted_conversation(url: str) -> str | None:
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    alice = nio.AsyncClient(url, store_path=tempfile.mkdtemp(), config=config)
    bob = nio.AsyncClient(url, store_path=tempfile.mkdtemp(), config=config)
    try:
        for client, name in ((alice, "nioa"), (bob, "niob")):
            reg = await client.register(f"{name}{uuid.uuid4().hex[:8]}", PASSWORD)
            assert isinstance(reg, nio.RegisterResponse), reg
            upload = await client.keys_upload()
            assert isinstance(upload, nio.KeysUploadResponse), upload
            assert upload.signed_curve25519_count > 0
        room = await alice.room_create(invite=[bob.user_id], initial_state=[ENCRYPTION])
        assert isinstance(room, nio.RoomCreateResponse), room
        await bob.sync(timeout=1000, full_state=True)
        assert isinstance(await bob.join(room.room_id), nio.JoinResponse)
        await bob.sync(timeout=1000)
        synced = await alice.sync(timeout=1000, full_state=True)
        assert isinstance(synced, nio.SyncResponse), synced
        assert alice.rooms[room.room_id].encrypted
        if alice.should_query_keys:
            assert isinstance(await alice.keys_query(), nio.KeysQueryResponse)
        sent = await alice.room_send(room.room_id, "m.room.message",
                                     {"msgtype": "m.text", "body": "secret hello"},
                                     ignore_unverified_devices=True)
        assert isinstance(sent, nio.RoomSendResponse), sent
        for _ in range(5):
            response = await bob.sync(timeout=2000)
            assert isinstance(response, nio.SyncResponse), response
            joined = response.rooms.join.get(room.room_id)
            for event in joined.timeline.events if joined else []:
                if isinstance(event, nio.RoomMessageText):
                    return str(event.body)
        return None
    finally:
        await alice.close()
        await bob.close()


def test_nio_clients_exchange_an_encrypted_message(server: ServerProcess) -> None:
    assert asyncio.run(_encrypted_conversation(server.url)) == "secret hello"
