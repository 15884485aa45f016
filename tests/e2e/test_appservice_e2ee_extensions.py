"""The unstable transaction extensions encrypted bridges use, as Synapse sends them: MSC2409's
unstable ephemeral key and to-device messages (MSC4203), MSC3202 device lists and key counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.e2e.fake_appservice import FakeAppservice, fake_appservice
from tests.e2e.helpers import bearer, create_room, login, register, room_path, unique
from tests.e2e.olm_device import OlmDevice
from tests.server_process import ServerProcess

ServerFactory = Callable[..., ServerProcess]
TO_DEVICE = "de.sorunome.msc2409.to_device"
DEVICE_LISTS = "org.matrix.msc3202.device_lists"
OTK_COUNTS = "org.matrix.msc3202.device_one_time_keys_count"


def _registration(tmp_path: Path, url: str, as_id: str, flags: str) -> str:
    path = tmp_path / f"{unique('as')}.yaml"
    path.write_text(
        f"id: {as_id}\nurl: {url}\nas_token: as-{as_id}\nhs_token: hs-{as_id}\n"
        f"sender_localpart: {as_id}bot\n{flags}"
        f"namespaces:\n  users:\n    - exclusive: true\n      regex: '@{as_id}_.*'\n"
        "  aliases: []\n  rooms: []\n", encoding="utf-8")
    return str(path)


def _config(*registrations: str) -> str:
    listed = ", ".join(f'"{r}"' for r in registrations)
    return f"appservice_registrations = [{listed}]\n"


async def _ghost(http: httpx.AsyncClient, as_id: str, server_name: str) -> dict[str, Any]:
    """A logged-in ghost of the appservice (user_id, access_token, device_id)."""
    r = await http.post("/_matrix/client/v3/register", headers=bearer(f"as-{as_id}"), json={
        "type": "m.login.application_service", "username": unique(f"{as_id}_")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["user_id"].endswith(":" + server_name)
    return body


async def _send_to_device(http: httpx.AsyncClient, token: str, user_id: str, device_id: str,
                          content: dict[str, Any]) -> None:
    r = await http.put(f"/_matrix/client/v3/sendToDevice/m.test/{unique('txn')}",
                       json={"messages": {user_id: {device_id: content}}},
                       headers=bearer(token))
    assert r.status_code == 200, r.text


def _to_device(service: FakeAppservice) -> list[dict[str, Any]]:
    return [m for _, body in service.accepted() for m in body.get(TO_DEVICE, [])]


async def test_to_device_for_a_ghost_arrives_once_under_the_unstable_keys(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service, fake_appservice() as quiet:
        server = server_factory("--open-registration", config_text=_config(
            _registration(tmp_path, service.url, "unst",
                          "de.sorunome.msc2409.push_ephemeral: true\n"),
            _registration(tmp_path, quiet.url, "quiet", "")))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice = await register(http)
            server_name = alice["user_id"].split(":", 1)[1]
            ghost = await _ghost(http, "unst", server_name)
            quiet_ghost = await _ghost(http, "quiet", server_name)
            for user in (ghost, quiet_ghost):
                await _send_to_device(http, alice["access_token"], user["user_id"],
                                      user["device_id"], {"n": 1})
            # An event both get, so the quiet one sends a transaction we can look at.
            room_id = await create_room(http, alice["access_token"], preset="public_chat")
            for user in (ghost, quiet_ghost):
                r = await http.post(room_path(room_id, "join"), json={},
                                    headers=bearer(user["access_token"]))
                assert r.status_code == 200, r.text
            await service.wait_until(lambda: bool(_to_device(service)))
            await quiet.wait_until(lambda: bool(quiet.accepted()))
            await trio.sleep(0.5)
            # The device still gets it in /sync too, as in Synapse.
            r = await http.get("/_matrix/client/v3/sync", params={"timeout": "0"},
                               headers=bearer(ghost["access_token"]))
            assert r.status_code == 200, r.text
            synced = r.json().get("to_device", {}).get("events", [])
    messages = _to_device(service)
    assert messages == [{"to_user_id": ghost["user_id"], "to_device_id": ghost["device_id"],
                         "type": "m.test", "sender": alice["user_id"], "content": {"n": 1}}]
    assert [m["content"] for m in synced] == [{"n": 1}]
    for _, body in service.accepted():
        assert "de.sorunome.msc2409.ephemeral" in body  # push_ephemeral: the unstable key
        assert "ephemeral" not in body
    for _, body in quiet.accepted():
        assert TO_DEVICE not in body
        assert "ephemeral" not in body
        assert "de.sorunome.msc2409.ephemeral" not in body


async def test_to_device_survives_a_restart_while_the_appservice_is_down(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    data_dir = tmp_path / "hs"
    async with fake_appservice() as service:
        config = _config(_registration(tmp_path, service.url, "td",
                                       "receive_ephemeral: true\n"))
        server = server_factory("--open-registration", config_text=config, data_dir=data_dir)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice = await register(http)
            ghost = await _ghost(http, "td", alice["user_id"].split(":", 1)[1])
            await trio.sleep(0.3)
            service.answers = [503] * 1000
            for n in range(3):
                await _send_to_device(http, alice["access_token"], ghost["user_id"],
                                      ghost["device_id"], {"n": n})
            await service.wait_until(lambda: any(a.status == 503 for a in service.attempts))
        server.stop()
        service.answers = []
        server = server_factory("--open-registration", config_text=config, data_dir=data_dir)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            await _send_to_device(http, alice["access_token"], ghost["user_id"],
                                  ghost["device_id"], {"n": 3})
            await service.wait_until(lambda: len(_to_device(service)) >= 4)
            await trio.sleep(0.5)
    assert [m["content"]["n"] for m in _to_device(service)] == [0, 1, 2, 3]
    txn_ids = [txn for txn, _ in service.accepted()]
    assert len(txn_ids) == len(set(txn_ids))
    for _, body in service.accepted():
        assert "ephemeral" in body  # receive_ephemeral: the stable key
        assert "de.sorunome.msc2409.ephemeral" not in body
    failed = {a.path for a in service.attempts if a.status != 200}
    assert failed <= {a.path for a in service.attempts if a.status == 200}


async def _upload(http: httpx.AsyncClient, token: str, device: OlmDevice, **kw: Any
                  ) -> dict[str, Any]:
    r = await http.post("/_matrix/client/v3/keys/upload", json=device.upload_body(**kw),
                        headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _device_lists(service: FakeAppservice, key: str) -> set[str]:
    return {u for _, body in service.accepted() for u in body.get(DEVICE_LISTS, {}).get(key, [])}


async def test_msc3202_key_counts_and_device_lists(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as service, fake_appservice() as plain:
        server = server_factory("--open-registration", config_text=_config(
            _registration(tmp_path, service.url, "enc",
                          "receive_ephemeral: true\norg.matrix.msc3202: true\n"),
            _registration(tmp_path, plain.url, "plain", "receive_ephemeral: true\n")))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            alice = await register(http)
            bob = await register(http)
            server_name = alice["user_id"].split(":", 1)[1]
            ghost = await _ghost(http, "enc", server_name)
            await _ghost(http, "plain", server_name)
            room_id = await create_room(http, alice["access_token"], preset="public_chat")
            for user in (ghost, bob):
                r = await http.post(room_path(room_id, "join"), json={},
                                    headers=bearer(user["access_token"]))
                assert r.status_code == 200, r.text

            # The ghost's device publishes keys: its counts arrive.
            ghost_device = OlmDevice(ghost["user_id"], ghost["device_id"])
            await _upload(http, ghost["access_token"], ghost_device, one_time_keys=5,
                          fallback=True)

            def counted() -> dict[str, Any]:
                for _, body in reversed(service.accepted()):
                    counts = body.get(OTK_COUNTS, {}).get(ghost["user_id"], {})
                    if counts.get(ghost["device_id"]):
                        return dict(body)
                return {}

            await service.wait_until(lambda: bool(counted()))
            body = counted()
            assert body[OTK_COUNTS][ghost["user_id"]][ghost["device_id"]] == {
                "signed_curve25519": 5}
            assert body["org.matrix.msc3202.device_one_time_key_counts"] == body[OTK_COUNTS]
            assert body["org.matrix.msc3202.device_unused_fallback_key_types"][
                ghost["user_id"]][ghost["device_id"]] == ["signed_curve25519"]

            # Alice (sharing the room) publishes keys; bob logs in a new device with keys.
            await _upload(http, alice["access_token"],
                          OlmDevice(alice["user_id"], alice["device_id"]))
            await service.wait_until(lambda: alice["user_id"] in _device_lists(
                service, "changed"))
            r = await login(http, bob["user_id"])
            assert r.status_code == 200, r.text
            bob2 = r.json()
            await _upload(http, bob2["access_token"],
                          OlmDevice(bob["user_id"], bob2["device_id"]))
            await service.wait_until(lambda: bob["user_id"] in _device_lists(
                service, "changed"))
            assert bob["user_id"] not in _device_lists(service, "left")
            # Bob leaves the only room he shared with the appservice's users.
            r = await http.post(room_path(room_id, "leave"), json={},
                                headers=bearer(bob["access_token"]))
            assert r.status_code == 200, r.text
            await service.wait_until(lambda: bob["user_id"] in _device_lists(service, "left"))
            # A user sharing no room with the appservice: never listed.
            carol = await register(http)
            await _upload(http, carol["access_token"],
                          OlmDevice(carol["user_id"], carol["device_id"]))
            await trio.sleep(0.5)
    assert carol["user_id"] not in _device_lists(service, "changed")
    for _, body in plain.accepted():
        assert not any(k.startswith("org.matrix.msc3202") for k in body)
