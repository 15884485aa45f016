"""POST /register (with User-Interactive Authentication), /register/available, token validity."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.helpers import PASSWORD, assert_error, bearer, login, password_auth, register, unique

REGISTER = "/_matrix/client/v3/register"
AVAILABLE = "/_matrix/client/v3/register/available"
TOKEN_VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"
WHOAMI = "/_matrix/client/v3/account/whoami"
DEVICES = "/_matrix/client/v3/devices"
DEACTIVATE = "/_matrix/client/v3/account/deactivate"
CHANGE_PASSWORD = "/_matrix/client/v3/account/password"
DUMMY = {"type": "m.login.dummy"}
# Localpart grammar of user IDs the server creates (spec appendix, "User Identifiers").
USER_ID_RE = re.compile(r"@[a-z0-9._=\-/+]+:localhost")


async def is_available(http: httpx.AsyncClient, username: str) -> bool:
    r = await http.get(AVAILABLE, params={"username": username})
    if r.status_code == 200:
        assert r.json() == {"available": True}
        return True
    assert_error(r, 400, "M_USER_IN_USE")
    return False


# -- User-Interactive Authentication --------------------------------------------------------------


async def test_uia_first_call_returns_flows_and_session(http: httpx.AsyncClient) -> None:
    name = unique()
    r = await http.post(REGISTER, json={"username": name, "password": PASSWORD})
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert isinstance(body["session"], str)
    assert body["session"]
    assert isinstance(body["params"], dict)
    assert body.get("completed", []) == []
    # Nothing was created by the 401.
    assert await is_available(http, name)


async def test_uia_complete_dummy_stage_with_session(http: httpx.AsyncClient) -> None:
    name = unique()
    first = await http.post(REGISTER, json={"username": name, "password": PASSWORD})
    assert first.status_code == 401, first.text
    session = first.json()["session"]

    r = await http.post(
        REGISTER,
        json={"username": name, "password": PASSWORD, "auth": {**DUMMY, "session": session}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == f"@{name}:localhost"
    assert isinstance(body["access_token"], str)
    assert isinstance(body["device_id"], str)
    assert "refresh_token" not in body
    assert "expires_in_ms" not in body

    who = await http.get(WHOAMI, headers=bearer(body["access_token"]))
    assert who.status_code == 200, who.text
    assert who.json() == {"user_id": body["user_id"], "device_id": body["device_id"]}


async def test_uia_dummy_stage_without_session_as_first_call(http: httpx.AsyncClient) -> None:
    name = unique()
    r = await http.post(REGISTER, json={"username": name, "password": PASSWORD, "auth": DUMMY})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == f"@{name}:localhost"
    assert not await is_available(http, name)


async def test_uia_unknown_session_is_400(http: httpx.AsyncClient) -> None:
    name = unique()
    r = await http.post(
        REGISTER,
        json={"username": name, "password": PASSWORD,
              "auth": {**DUMMY, "session": "no-such-session"}},
    )
    assert_error(r, 400, "M_UNKNOWN")
    assert await is_available(http, name)


async def test_uia_session_is_consumed_by_success(http: httpx.AsyncClient) -> None:
    first = await http.post(REGISTER, json={"username": unique(), "password": PASSWORD})
    session = first.json()["session"]
    ok = await http.post(
        REGISTER,
        json={"username": unique(), "password": PASSWORD, "auth": {**DUMMY, "session": session}},
    )
    assert ok.status_code == 200, ok.text
    # The completed session cannot authorise a second registration.
    name = unique()
    again = await http.post(
        REGISTER,
        json={"username": name, "password": PASSWORD, "auth": {**DUMMY, "session": session}},
    )
    assert again.status_code in (400, 401), again.text
    assert "errcode" in again.json() or "flows" in again.json()
    assert await is_available(http, name)


async def test_uia_register_session_cannot_authorise_another_operation(
    http: httpx.AsyncClient,
) -> None:
    reg = await register(http)
    first = await http.post(REGISTER, json={"username": unique(), "password": PASSWORD})
    assert first.status_code == 401, first.text
    register_session = first.json()["session"]

    r = await http.post(
        DEACTIVATE,
        headers=bearer(reg["access_token"]),
        json={"auth": password_auth(reg["user_id"], session=register_session)},
    )
    assert_error(r, 403, "M_FORBIDDEN")
    who = await http.get(WHOAMI, headers=bearer(reg["access_token"]))
    assert who.status_code == 200, who.text


async def test_uia_other_operation_session_cannot_authorise_registration(
    http: httpx.AsyncClient,
) -> None:
    reg = await register(http)
    first = await http.post(DEACTIVATE, headers=bearer(reg["access_token"]), json={})
    assert first.status_code == 401, first.text
    deactivate_session = first.json()["session"]

    name = unique()
    r = await http.post(
        REGISTER,
        json={"username": name, "password": PASSWORD,
              "auth": {**DUMMY, "session": deactivate_session}},
    )
    assert_error(r, 403, "M_FORBIDDEN")
    assert await is_available(http, name)


async def test_uia_stage_not_in_flows_is_refused(http: httpx.AsyncClient) -> None:
    name = unique()
    r = await http.post(
        REGISTER,
        json={"username": name, "password": PASSWORD, "auth": {"type": "m.login.bogus"}},
    )
    assert r.status_code in (400, 401), r.text
    assert await is_available(http, name)


# -- usernames ------------------------------------------------------------------------------------


async def test_username_is_lower_cased(http: httpx.AsyncClient) -> None:
    name = unique("MiXeD")
    reg = await register(http, name)
    assert reg["user_id"] == f"@{name.lower()}:localhost"
    assert not await is_available(http, name.lower())
    assert not await is_available(http, name.upper())


@pytest.mark.parametrize(
    "username",
    [
        "has space",
        "colon:inside",
        "",
        "ünïcode",
        "tab\tname",
        "a" * 245,  # "@" + 245 + ":localhost" = 256 bytes > 255
        "a" * 300,
    ],
    ids=["space", "colon", "empty", "non-ascii", "tab", "mxid-256-bytes", "300-chars"],
)
async def test_invalid_username(http: httpx.AsyncClient, username: str) -> None:
    r = await http.post(REGISTER, json={"username": username, "password": PASSWORD,
                                        "auth": DUMMY})
    assert_error(r, 400, "M_INVALID_USERNAME")


async def test_invalid_username_is_reported_before_uia(http: httpx.AsyncClient) -> None:
    r = await http.post(REGISTER, json={"username": "bad name", "password": PASSWORD})
    assert_error(r, 400, "M_INVALID_USERNAME")


async def test_longest_valid_username(http: httpx.AsyncClient) -> None:
    prefix = unique("long")
    name = prefix + "a" * (244 - len(prefix))  # "@" + 244 + ":localhost" = 255 bytes
    reg = await register(http, name)
    assert reg["user_id"] == f"@{name}:localhost"
    assert len(reg["user_id"].encode()) == 255


async def test_username_taken(http: httpx.AsyncClient) -> None:
    name = unique()
    await register(http, name)
    r = await http.post(REGISTER, json={"username": name, "password": PASSWORD, "auth": DUMMY})
    assert_error(r, 400, "M_USER_IN_USE")
    # Differing only in case is the same user.
    r = await http.post(REGISTER, json={"username": name.upper(), "password": PASSWORD,
                                        "auth": DUMMY})
    assert_error(r, 400, "M_USER_IN_USE")


async def test_username_taken_is_reported_before_uia(http: httpx.AsyncClient) -> None:
    name = unique()
    await register(http, name)
    r = await http.post(REGISTER, json={"username": name, "password": PASSWORD})
    assert_error(r, 400, "M_USER_IN_USE")


async def test_concurrent_registrations_of_one_username(http: httpx.AsyncClient) -> None:
    name = unique("race")
    results: list[httpx.Response] = []

    async def attempt() -> None:
        results.append(await http.post(
            REGISTER, json={"username": name, "password": PASSWORD, "auth": DUMMY}
        ))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(attempt)

    winners = [r for r in results if r.status_code == 200]
    losers = [r for r in results if r.status_code != 200]
    assert len(winners) == 1, [r.text for r in results]
    assert len(losers) == 9
    for r in losers:
        assert_error(r, 400, "M_USER_IN_USE")
    token = winners[0].json()["access_token"]
    who = await http.get(WHOAMI, headers=bearer(token))
    assert who.json()["user_id"] == f"@{name}:localhost"


async def test_omitted_username_generates_a_user_id(http: httpx.AsyncClient) -> None:
    bodies = []
    for _ in range(2):
        r = await http.post(REGISTER, json={"password": PASSWORD, "auth": DUMMY})
        assert r.status_code == 200, r.text
        bodies.append(r.json())
    for body in bodies:
        assert USER_ID_RE.fullmatch(body["user_id"]), body["user_id"]
        assert len(body["user_id"].encode()) <= 255
        who = await http.get(WHOAMI, headers=bearer(body["access_token"]))
        assert who.json()["user_id"] == body["user_id"]
    assert bodies[0]["user_id"] != bodies[1]["user_id"]
    # The generated account can log in with its password.
    r = await login(http, bodies[0]["user_id"])
    assert r.status_code == 200, r.text


# -- passwords ------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["short", "7charss"])
async def test_weak_password(http: httpx.AsyncClient, password: str) -> None:
    name = unique()
    r = await http.post(REGISTER, json={"username": name, "password": password, "auth": DUMMY})
    assert_error(r, 400, "M_WEAK_PASSWORD")
    assert await is_available(http, name)


async def test_eight_character_password_is_accepted(http: httpx.AsyncClient) -> None:
    reg = await register(http, password="8charsok")
    r = await login(http, reg["user_id"], password="8charsok")
    assert r.status_code == 200, r.text


async def test_missing_password_after_uia(http: httpx.AsyncClient) -> None:
    name = unique()
    r = await http.post(REGISTER, json={"username": name, "auth": DUMMY})
    assert_error(r, 400, "M_MISSING_PARAM")
    assert await is_available(http, name)


# -- options --------------------------------------------------------------------------------------


async def test_inhibit_login(http: httpx.AsyncClient) -> None:
    name = unique()
    r = await http.post(REGISTER, json={"username": name, "password": PASSWORD, "auth": DUMMY,
                                        "inhibit_login": True, "refresh_token": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == f"@{name}:localhost"
    assert set(body) <= {"user_id", "home_server"}, body
    # The account exists and can log in; no device was created by the registration.
    logged_in = await login(http, name)
    assert logged_in.status_code == 200, logged_in.text
    devices = await http.get(DEVICES, headers=bearer(logged_in.json()["access_token"]))
    assert devices.status_code == 200, devices.text
    assert [d["device_id"] for d in devices.json()["devices"]] == [logged_in.json()["device_id"]]


async def test_device_id_and_display_name_are_honoured(http: httpx.AsyncClient) -> None:
    reg = await register(http, device_id="MYPHONE", initial_device_display_name="My phone")
    assert reg["device_id"] == "MYPHONE"
    who = await http.get(WHOAMI, headers=bearer(reg["access_token"]))
    assert who.json()["device_id"] == "MYPHONE"
    r = await http.get(DEVICES, headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    devices = r.json()["devices"]
    assert len(devices) == 1
    assert devices[0]["device_id"] == "MYPHONE"
    assert devices[0]["display_name"] == "My phone"


async def test_server_generates_device_id(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    assert isinstance(reg["device_id"], str)
    assert reg["device_id"]
    r = await http.get(DEVICES, headers=bearer(reg["access_token"]))
    assert [d["device_id"] for d in r.json()["devices"]] == [reg["device_id"]]


async def test_refresh_token_requested(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=True)
    assert isinstance(reg["refresh_token"], str)
    assert reg["refresh_token"]
    assert reg["refresh_token"] != reg["access_token"]
    assert isinstance(reg["expires_in_ms"], int)
    assert reg["expires_in_ms"] > 0
    who = await http.get(WHOAMI, headers=bearer(reg["access_token"]))
    assert who.status_code == 200, who.text


async def test_refresh_token_false_gives_none(http: httpx.AsyncClient) -> None:
    reg = await register(http, refresh_token=False)
    assert "refresh_token" not in reg
    assert "expires_in_ms" not in reg


# -- malformed requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", 5),
        ("inhibit_login", "yes"),
        ("password", 12345678),
        ("device_id", ["DEV"]),
        ("refresh_token", 1),
        ("auth", "m.login.dummy"),
    ],
)
async def test_wrong_field_type(http: httpx.AsyncClient, field: str, value: Any) -> None:
    body: dict[str, Any] = {"username": unique(), "password": PASSWORD, "auth": DUMMY}
    body[field] = value
    r = await http.post(REGISTER, json=body)
    assert_error(r, 400, "M_BAD_JSON")


@pytest.mark.parametrize("content", ["[]", '"hello"', "42", "null", "true"])
async def test_body_not_an_object(http: httpx.AsyncClient, content: str) -> None:
    r = await http.post(REGISTER, content=content,
                        headers={"Content-Type": "application/json"})
    assert_error(r, 400, "M_BAD_JSON")


@pytest.mark.parametrize("content", ["{", "not json", "{'a': 1}", '{"a": NaN}', ""])
async def test_body_not_json(http: httpx.AsyncClient, content: str) -> None:
    r = await http.post(REGISTER, content=content,
                        headers={"Content-Type": "application/json"})
    assert_error(r, 400, "M_NOT_JSON")


# -- /register/available --------------------------------------------------------------------------


async def test_available(http: httpx.AsyncClient) -> None:
    r = await http.get(AVAILABLE, params={"username": unique()})
    assert r.status_code == 200, r.text
    assert r.json() == {"available": True}


async def test_available_taken(http: httpx.AsyncClient) -> None:
    name = unique()
    await register(http, name)
    assert_error(await http.get(AVAILABLE, params={"username": name}), 400, "M_USER_IN_USE")
    assert_error(await http.get(AVAILABLE, params={"username": f"@{name}:localhost"}), 400,
                 "M_USER_IN_USE")


@pytest.mark.parametrize("username", ["bad name", "a:b", "", "a" * 300])
async def test_available_invalid(http: httpx.AsyncClient, username: str) -> None:
    r = await http.get(AVAILABLE, params={"username": username})
    assert_error(r, 400, "M_INVALID_USERNAME")


async def test_available_missing_param(http: httpx.AsyncClient) -> None:
    assert_error(await http.get(AVAILABLE), 400, "M_MISSING_PARAM")


# -- guests ---------------------------------------------------------------------------------------


async def test_guest_registration_refused_by_default(http: httpx.AsyncClient) -> None:
    r = await http.post(REGISTER, params={"kind": "guest"}, json={})
    assert_error(r, 403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_guest_registration_when_allowed(server_factory) -> None:
    srv = server_factory(config_text="[registration]\nallow_guests = true\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        r = await http.post(
            REGISTER, params={"kind": "guest"},
            # Everything but initial_device_display_name must be ignored for guests.
            json={"username": "ignoredname", "device_id": "IGNOREDDEV",
                  "initial_device_display_name": "Guest device", "inhibit_login": True},
        )
        assert r.status_code == 200, r.text
        guest = r.json()
        assert USER_ID_RE.fullmatch(guest["user_id"]), guest
        assert guest["user_id"] != "@ignoredname:localhost"
        assert isinstance(guest["access_token"], str)
        assert isinstance(guest["device_id"], str)
        assert guest["device_id"] != "IGNOREDDEV"
        token = guest["access_token"]

        who = await http.get(WHOAMI, headers=bearer(token))
        assert who.status_code == 200, who.text
        assert who.json() == {"user_id": guest["user_id"], "device_id": guest["device_id"],
                              "is_guest": True}

        devices = await http.get(DEVICES, headers=bearer(token))
        assert devices.status_code == 200, devices.text
        assert [(d["device_id"], d.get("display_name")) for d in devices.json()["devices"]] == [
            (guest["device_id"], "Guest device")
        ]

        r = await http.post(CHANGE_PASSWORD, headers=bearer(token),
                            json={"new_password": "a new long password"})
        assert_error(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await http.post(
            CHANGE_PASSWORD, headers=bearer(token),
            json={"new_password": "a new long password",
                  "auth": password_auth(guest["user_id"], password="anything")},
        )
        assert_error(r, 403, "M_GUEST_ACCESS_FORBIDDEN")


# -- server configuration -------------------------------------------------------------------------


async def test_registration_closed(server_factory) -> None:
    srv = server_factory()
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        name = unique()
        r = await http.post(REGISTER, json={"username": name, "password": PASSWORD})
        assert_error(r, 403, "M_FORBIDDEN")
        r = await http.post(REGISTER, json={"username": name, "password": PASSWORD,
                                            "auth": DUMMY})
        assert_error(r, 403, "M_FORBIDDEN")
        assert await is_available(http, name)
        # No registration at all, so no registration token can be valid.
        r = await http.get(TOKEN_VALIDITY, params={"token": "anything"})
        assert_error(r, 403, "M_FORBIDDEN")


async def test_registration_tokens(server_factory) -> None:
    srv = server_factory(config_text='[registration]\ntokens = ["tok123"]\n')
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        name = unique()
        first = await http.post(REGISTER, json={"username": name, "password": PASSWORD})
        assert first.status_code == 401, first.text
        ui = first.json()
        assert ui["flows"] == [{"stages": ["m.login.registration_token"]}]
        session = ui["session"]

        # m.login.dummy is not offered and must not bypass the token.
        r = await http.post(REGISTER, json={"username": name, "password": PASSWORD,
                                            "auth": DUMMY})
        assert r.status_code in (400, 401), r.text
        assert await is_available(http, name)

        wrong = await http.post(
            REGISTER,
            json={"username": name, "password": PASSWORD,
                  "auth": {"type": "m.login.registration_token", "token": "wrong",
                           "session": session}},
        )
        assert wrong.status_code == 401, wrong.text
        body = wrong.json()
        assert body["errcode"] == "M_UNAUTHORIZED"
        assert isinstance(body["error"], str)
        assert body["session"] == session
        assert body["flows"] == [{"stages": ["m.login.registration_token"]}]
        assert body.get("completed", []) == []
        assert await is_available(http, name)

        ok = await http.post(
            REGISTER,
            json={"username": name, "password": PASSWORD,
                  "auth": {"type": "m.login.registration_token", "token": "tok123",
                           "session": session}},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["user_id"] == f"@{name}:localhost"
        who = await http.get(WHOAMI, headers=bearer(ok.json()["access_token"]))
        assert who.status_code == 200, who.text

        r = await http.get(TOKEN_VALIDITY, params={"token": "tok123"})
        assert r.status_code == 200, r.text
        assert r.json() == {"valid": True}
        r = await http.get(TOKEN_VALIDITY, params={"token": "tok1234"})
        assert r.status_code == 200, r.text
        assert r.json() == {"valid": False}
        assert_error(await http.get(TOKEN_VALIDITY), 400, "M_MISSING_PARAM")


async def test_registration_rate_limited(server_factory) -> None:
    srv = server_factory(
        "--open-registration",
        config_text="[rate_limits]\nregistration_per_address = { per_second = 0.01, burst = 2 }\n",
    )
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        await register(http)
        await register(http)
        name = unique()
        r = await http.post(REGISTER, json={"username": name, "password": PASSWORD,
                                            "auth": DUMMY})
        body = assert_error(r, 429, "M_LIMIT_EXCEEDED")
        assert isinstance(body["retry_after_ms"], int)
        assert not isinstance(body["retry_after_ms"], bool)
        assert body["retry_after_ms"] > 0
        assert await is_available(http, name)
