"""Application services on the Client-Server API: registration file, as_token identity
assertion, m.login.application_service registration, exclusive namespaces, ping."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import ServerFactory
from tests.e2e.helpers import PASSWORD, assert_error, bearer, register, unique
from tests.e2e.push_gateway import fake_gateway
from tests.server_process import ServerProcess

REGISTER = "/_matrix/client/v3/register"
WHOAMI = "/_matrix/client/v3/account/whoami"
AS_TOKEN = "as_token_for_tests"
AS_AUTH = bearer(AS_TOKEN)


def _registration(tmp_path: Path, url: str | None) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(f"""\
id: bridge
url: {url or "null"}
as_token: {AS_TOKEN}
hs_token: hs_token_for_tests
sender_localpart: _bridge_bot
namespaces:
  users:
    - exclusive: true
      regex: "@_bridge_.*:localhost"
  aliases:
    - exclusive: true
      regex: "#_bridge_.*:localhost"
""", encoding="utf-8")
    return path


def _bridged_server(server_factory: ServerFactory, tmp_path: Path) -> ServerProcess:
    """A server with open registration and the test bridge registered (no URL)."""
    reg = _registration(tmp_path, None)
    return server_factory("--open-registration",
                          config_text=f'appservice_registrations = ["{reg}"]\n')


async def _as_register(http: httpx.AsyncClient, username: str, **extra: object
                       ) -> httpx.Response:
    body = {"type": "m.login.application_service", "username": username, **extra}
    return await http.post(REGISTER, json=body, headers=AS_AUTH)


async def test_identity_assertion_and_exclusive_namespace(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    srv = _bridged_server(server_factory, tmp_path)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        # The as_token alone acts as the sender.
        r = await http.get(WHOAMI, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@_bridge_bot:localhost"

        r = await _as_register(http, "_bridge_alice", inhibit_login=True)
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@_bridge_alice:localhost"
        assert "access_token" not in r.json()
        # Registering outside the namespace, or without/with a wrong token, is refused.
        assert_error(await _as_register(http, "someone"), 400, "M_EXCLUSIVE")
        r = await http.post(REGISTER, json={"type": "m.login.application_service",
                                            "username": "_bridge_x"})
        assert_error(r, 401, "M_MISSING_TOKEN")
        r = await http.post(REGISTER, json={"type": "m.login.application_service",
                                            "username": "_bridge_x"}, headers=bearer("nope"))
        assert_error(r, 401, "M_UNKNOWN_TOKEN")

        r = await http.get(WHOAMI, params={"user_id": "@_bridge_alice:localhost"},
                           headers=AS_AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == "@_bridge_alice:localhost"
        # In the namespace but never registered; outside the namespace.
        r = await http.get(WHOAMI, params={"user_id": "@_bridge_ghost:localhost"},
                           headers=AS_AUTH)
        assert_error(r, 403, "M_FORBIDDEN")
        normal = await register(http, unique("plain"))
        r = await http.get(WHOAMI, params={"user_id": normal["user_id"]}, headers=AS_AUTH)
        assert_error(r, 403, "M_FORBIDDEN")
        # A normal user's token ignores ?user_id=.
        r = await http.get(WHOAMI, params={"user_id": "@_bridge_alice:localhost"},
                           headers=bearer(normal["access_token"]))
        assert r.json()["user_id"] == normal["user_id"]

        # device_id (MSC3202): only an existing device of that user.
        r = await _as_register(http, "_bridge_bob", device_id="BOBDEVICE")
        assert r.status_code == 200, r.text
        assert r.json()["device_id"] == "BOBDEVICE"
        bob = {"user_id": "@_bridge_bob:localhost"}
        r = await http.get(WHOAMI, params={**bob, "device_id": "BOBDEVICE"}, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["device_id"] == "BOBDEVICE"
        r = await http.get(WHOAMI, params={**bob, "org.matrix.msc3202.device_id": "NOPE"},
                           headers=AS_AUTH)
        assert_error(r, 400, "M_UNKNOWN_DEVICE")

        # Normal users may not take names or aliases in the exclusive namespace.
        r = await http.post(REGISTER, json={"username": "_bridge_mallory", "password": PASSWORD,
                                            "auth": {"type": "m.login.dummy"}})
        assert_error(r, 400, "M_EXCLUSIVE")
        r = await http.get(f"{REGISTER}/available", params={"username": "_bridge_mallory"})
        assert_error(r, 400, "M_EXCLUSIVE")
        r = await http.post("/_matrix/client/v3/createRoom", json={},
                            headers=bearer(normal["access_token"]))
        room_id = r.json()["room_id"]
        alias_path = "/_matrix/client/v3/directory/room/%23_bridge_room:localhost"
        r = await http.put(alias_path, json={"room_id": room_id},
                           headers=bearer(normal["access_token"]))
        assert_error(r, 400, "M_EXCLUSIVE")

        # Ping with no URL configured.
        r = await http.post("/_matrix/client/v1/appservice/bridge/ping", json={},
                            headers=AS_AUTH)
        assert_error(r, 400, "M_URL_NOT_SET")


async def test_login_sender_account_and_deviceless_requests(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    srv = _bridged_server(server_factory, tmp_path)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        # The sender's account exists from start-up: it has a profile like any user.
        r = await http.get("/_matrix/client/v3/profile/@_bridge_bot:localhost")
        assert r.status_code == 200, r.text
        assert r.json()["displayname"] == "_bridge_bot"
        # Acting without a device: whoami names none; key upload needs one.
        r = await http.get(WHOAMI, headers=AS_AUTH)
        assert r.json() == {"user_id": "@_bridge_bot:localhost"}
        r = await http.post("/_matrix/client/v3/keys/upload", headers=AS_AUTH,
                            json={"one_time_keys": {}})
        assert_error(r, 400, "M_MISSING_PARAM")

        r = await http.get("/_matrix/client/v3/login")
        assert {"type": "m.login.application_service"} in r.json()["flows"]
        assert (await _as_register(http, "_bridge_carol", inhibit_login=True)).status_code == 200
        login = {"type": "m.login.application_service",
                 "identifier": {"type": "m.id.user", "user": "_bridge_carol"}}
        r = await http.post("/_matrix/client/v3/login", json=login, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        carol = r.json()
        assert carol["user_id"] == "@_bridge_carol:localhost"
        r = await http.get(WHOAMI, headers=bearer(carol["access_token"]))
        assert r.json()["device_id"] == carol["device_id"]
        # Outside the namespace; no token; a wrong token; a user never registered.
        normal = await register(http, unique("plain"))
        outside = {**login, "identifier": {"type": "m.id.user", "user": normal["user_id"]}}
        assert_error(await http.post("/_matrix/client/v3/login", json=outside,
                                     headers=AS_AUTH), 403, "M_EXCLUSIVE")
        assert_error(await http.post("/_matrix/client/v3/login", json=login), 401,
                     "M_MISSING_TOKEN")
        assert_error(await http.post("/_matrix/client/v3/login", json=login,
                                     headers=bearer(normal["access_token"])), 401,
                     "M_UNKNOWN_TOKEN")
        ghost = {**login, "identifier": {"type": "m.id.user", "user": "_bridge_nobody"}}
        assert_error(await http.post("/_matrix/client/v3/login", json=ghost,
                                     headers=AS_AUTH), 403, "M_FORBIDDEN")


async def test_appservice_device_management_msc4190(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    from nacl.signing import SigningKey

    from tests.e2e.test_cross_signing import cross_key

    srv = _bridged_server(server_factory, tmp_path)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        assert (await _as_register(http, "_bridge_dora", inhibit_login=True)).status_code == 200
        dora = {"user_id": "@_bridge_dora:localhost"}
        path = "/_matrix/client/v3/devices/BRIDGEDEV"
        # An appservice creates a device for its user (201), then renames it (200).
        r = await http.put(path, params=dora, json={"display_name": "bridge"}, headers=AS_AUTH)
        assert r.status_code == 201, r.text
        r = await http.put(path, params=dora, json={"display_name": "renamed"}, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        r = await http.get(WHOAMI, params={**dora, "device_id": "BRIDGEDEV"}, headers=AS_AUTH)
        assert r.json()["device_id"] == "BRIDGEDEV"
        r = await http.get(path, params=dora, headers=AS_AUTH)
        assert r.json()["display_name"] == "renamed"
        # A normal user may only rename existing devices.
        normal = await register(http, unique("plain"))
        r = await http.put(path, json={"display_name": "x"},
                           headers=bearer(normal["access_token"]))
        assert_error(r, 404, "M_NOT_FOUND")

        # Cross-signing keys replaced without UIA (a user would be asked for a password).
        key = SigningKey.generate()
        first = {"master_key": cross_key(dora["user_id"], "master", key)}
        r = await http.post("/_matrix/client/v3/keys/device_signing/upload", params=dora,
                            json=first, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        second = {"master_key": cross_key(dora["user_id"], "master", SigningKey.generate())}
        r = await http.post("/_matrix/client/v3/keys/device_signing/upload", params=dora,
                            json=second, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        own = {"master_key": cross_key(normal["user_id"], "master", SigningKey.generate())}
        r = await http.post("/_matrix/client/v3/keys/device_signing/upload", json=own,
                            headers=bearer(normal["access_token"]))
        assert r.status_code == 200, r.text  # the user's first upload needs no UIA either
        third = {"master_key": cross_key(normal["user_id"], "master", SigningKey.generate())}
        r = await http.post("/_matrix/client/v3/keys/device_signing/upload", json=third,
                            headers=bearer(normal["access_token"]))
        assert r.status_code == 401
        assert "flows" in r.json()

        # Deleted without UIA, for the appservice only.
        r = await http.delete(path, params=dora, headers=AS_AUTH)
        assert r.status_code == 200, r.text
        r = await http.get(path, params=dora, headers=AS_AUTH)
        assert_error(r, 404, "M_NOT_FOUND")
        r = await http.delete(f"/_matrix/client/v3/devices/{normal['device_id']}",
                              headers=bearer(normal["access_token"]))
        assert r.status_code == 401
        assert "flows" in r.json()


async def test_ping(server_factory: ServerFactory, tmp_path: Path) -> None:
    async with fake_gateway() as appservice:
        reg = _registration(tmp_path, f"http://127.0.0.1:{appservice.port}")
        srv = server_factory("--appservice-registration", str(reg))
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            ping = "/_matrix/client/v1/appservice/bridge/ping"
            r = await http.post(ping, json={"transaction_id": "t1"}, headers=AS_AUTH)
            assert r.status_code == 200, r.text
            assert isinstance(r.json()["duration_ms"], int)
            assert appservice.attempts == 1
            appservice.answers.append((403, {"errcode": "M_FORBIDDEN"}))
            r = await http.post(ping, json={}, headers=AS_AUTH)
            body = assert_error(r, 502, "M_BAD_STATUS")
            assert body["status"] == 403
            assert "M_FORBIDDEN" in body["body"]
            # Another appservice's id, and a normal user's token.
            assert_error(await http.post("/_matrix/client/v1/appservice/other/ping", json={},
                                         headers=AS_AUTH), 403, "M_FORBIDDEN")
        appservice_port = appservice.port
    # The appservice is gone now: connection refused.
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        r = await http.post(ping, json={}, headers=AS_AUTH)
        assert_error(r, 502, "M_CONNECTION_FAILED")
    assert appservice_port


def test_bad_registration_file_stops_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nurl: null\nas_token: a\nhs_token: b\nnamespaces: {}\n",
                   encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "trioserver", "check-appservice", str(bad)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert f"{bad}: sender_localpart:" in run.stderr
    good = _registration(tmp_path, None)
    run = subprocess.run([sys.executable, "-m", "trioserver", "check-appservice", str(good)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "id: bridge" in run.stdout
    run = subprocess.run([sys.executable, "-m", "trioserver", "serve", "--data-dir",
                          str(tmp_path / "d"), "--appservice-registration", str(bad)],
                         capture_output=True, text=True, check=False, timeout=30)
    assert run.returncode == 2
    assert "sender_localpart" in run.stderr


async def test_exclusive_appservice_users_get_no_push_actions(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """As in Synapse: users an appservice claims exclusively (bridged ghosts) get no push
    actions or unread counts, so a big bridged room costs nothing per ghost; other members are
    notified as usual."""
    srv = _bridged_server(server_factory, tmp_path)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        alice = await register(http, unique("alice"))
        bob = await register(http, unique("bob"))
        r = await http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                            headers=bearer(alice["access_token"]))
        room_id = r.json()["room_id"]
        assert (await _as_register(http, "_bridge_ghost", inhibit_login=True)).status_code == 200
        ghost = "@_bridge_ghost:localhost"
        for params, auth in (({"user_id": ghost}, AS_AUTH), ({}, bearer(bob["access_token"]))):
            r = await http.post(f"/_matrix/client/v3/join/{room_id}", params=params,
                                headers=auth)
            assert r.status_code == 200, r.text
        r = await http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                           json={"msgtype": "m.text", "body": "hello all"},
                           headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text

        async def notifications(params: dict[str, str], auth: dict[str, str]) -> int:
            r = await http.get("/_matrix/client/v3/notifications", params=params, headers=auth)
            assert r.status_code == 200, r.text
            return len(r.json()["notifications"])

        assert await notifications({"user_id": ghost}, AS_AUTH) == 0
        assert await notifications({}, bearer(bob["access_token"])) == 1
        r = await http.get("/_matrix/client/v3/sync", params={"user_id": ghost},
                           headers=AS_AUTH)
        counts = r.json()["rooms"]["join"][room_id]["unread_notifications"]
        assert counts.get("notification_count", 0) == 0
