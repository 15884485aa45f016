"""A real client library, matrix-nio (asyncio), against the server.

nio runs on asyncio, so these are plain synchronous tests that call `asyncio.run`.
"""

from __future__ import annotations

import asyncio

import nio

from tests.e2e.helpers import PASSWORD, unique
from tests.server_process import ServerProcess


async def _register_login_profile_devices_logout(url: str) -> None:
    username = unique("nio")
    user_id = f"@{username}:localhost"

    reg_client = nio.AsyncClient(url)
    try:
        reg = await reg_client.register(username, PASSWORD, device_name="nio register")
        assert isinstance(reg, nio.RegisterResponse), reg
        assert reg.user_id == user_id
        assert reg.access_token
        assert reg.device_id
        # nio adopts the new session; using it once gives the device a last-seen record.
        assert reg_client.access_token == reg.access_token
        who = await reg_client.whoami()
        assert isinstance(who, nio.WhoamiResponse), who
        assert who.device_id == reg.device_id
    finally:
        await reg_client.close()

    client = nio.AsyncClient(url, user_id)
    try:
        login = await client.login(PASSWORD, device_name="nio login")
        assert isinstance(login, nio.LoginResponse), login
        assert login.user_id == user_id
        assert login.device_id != reg.device_id
        assert client.access_token == login.access_token

        who = await client.whoami()
        assert isinstance(who, nio.WhoamiResponse), who
        assert who.user_id == user_id
        assert who.device_id == login.device_id

        got = await client.get_displayname()
        assert isinstance(got, nio.ProfileGetDisplayNameResponse), got
        assert got.displayname == username

        put = await client.set_displayname("Nio Tester")
        assert isinstance(put, nio.ProfileSetDisplayNameResponse), put
        got = await client.get_displayname()
        assert isinstance(got, nio.ProfileGetDisplayNameResponse), got
        assert got.displayname == "Nio Tester"
        profile = await client.get_profile()
        assert isinstance(profile, nio.ProfileGetResponse), profile
        assert profile.displayname == "Nio Tester"

        devices = await client.devices()
        assert isinstance(devices, nio.DevicesResponse), devices
        by_id = {d.id: d for d in devices.devices}
        assert set(by_id) == {reg.device_id, login.device_id}
        assert by_id[login.device_id].display_name == "nio login"
        assert by_id[reg.device_id].display_name == "nio register"
        assert by_id[login.device_id].last_seen_ip == "127.0.0.1"
        assert by_id[login.device_id].last_seen_date is not None

        token = client.access_token
        out = await client.logout()
        assert isinstance(out, nio.LogoutResponse), out
    finally:
        await client.close()

    # The logged-out token is dead; nio reports the server's error.
    stale = nio.AsyncClient(url, user_id)
    try:
        stale.access_token = token
        stale.user_id = user_id
        who = await stale.whoami()
        assert isinstance(who, nio.WhoamiError), who
        assert who.status_code == "M_UNKNOWN_TOKEN"
    finally:
        await stale.close()


def test_nio_register_login_profile_devices_logout(server: ServerProcess) -> None:
    asyncio.run(_register_login_profile_devices_logout(server.url))


async def _devices_unnamed_and_unseen(url: str) -> None:
    username = unique("nio")
    client = nio.AsyncClient(url)
    try:
        # nio's defaults: no initial_device_display_name is sent, and the registration
        # device is never used before the login device lists the devices.
        reg = await client.register(username, PASSWORD)
        assert isinstance(reg, nio.RegisterResponse), reg
        client.user = reg.user_id
        login = await client.login(PASSWORD)
        assert isinstance(login, nio.LoginResponse), login
        devices = await client.devices()
        # nio's schema requires display_name, last_seen_ip and last_seen_ts on every device
        # (null allowed), as Synapse sends them; omitting them makes this a DevicesError.
        assert isinstance(devices, nio.DevicesResponse), devices
        by_id = {d.id: d for d in devices.devices}
        assert set(by_id) == {reg.device_id, login.device_id}
        assert all(d.display_name is None for d in devices.devices)
        # nio logs in again with the device id it got at registration, so this is one device,
        # seen when it listed the devices.
        assert reg.device_id == login.device_id
        assert by_id[login.device_id].last_seen_ip == "127.0.0.1"
    finally:
        await client.close()


def test_nio_devices_unnamed_and_unseen(server: ServerProcess) -> None:
    asyncio.run(_devices_unnamed_and_unseen(server.url))


async def _discovery_and_wrong_password(url: str) -> None:
    client = nio.AsyncClient(url)
    try:
        info = await client.discovery_info()
        assert isinstance(info, nio.DiscoveryInfoResponse), info
        assert info.homeserver_url == url
        username = unique("nio")
        reg = await client.register(username, PASSWORD, device_name="d")
        assert isinstance(reg, nio.RegisterResponse), reg
    finally:
        await client.close()
    client = nio.AsyncClient(url, f"@{username}:localhost")
    try:
        bad = await client.login("not the password", device_name="d")
        assert isinstance(bad, nio.LoginError), bad
        assert bad.status_code == "M_FORBIDDEN"
    finally:
        await client.close()


def test_nio_discovery_and_wrong_password(server: ServerProcess) -> None:
    asyncio.run(_discovery_and_wrong_password(server.url))
