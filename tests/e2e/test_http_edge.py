"""HTTP-level behaviour: routing errors, CORS, body limits, bad JSON, discovery, shutdown."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from tests.conftest import ServerFactory
from tests.e2e.helpers import PASSWORD, bearer, login, register, unique
from tests.server_process import ServerProcess, start_server

REGISTER = "/_matrix/client/v3/register"
JSON_HEADERS = {"Content-Type": "application/json"}
LIMITED_CONFIG = "max_request_body_bytes = 2048\n"


def _assert_error(r: httpx.Response, status: int, errcode: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["errcode"] == errcode, r.text


def _assert_cors(r: httpx.Response) -> None:
    assert r.headers["access-control-allow-origin"] == "*"
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= methods
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed


# -- routing ------------------------------------------------------------------------------


async def test_unknown_path_is_unrecognized(http: httpx.AsyncClient) -> None:
    for path in ("/_matrix/client/v3/no_such_endpoint", "/nope", "/_matrix/client/v9/login"):
        r = await http.get(path)
        _assert_error(r, 404, "M_UNRECOGNIZED")


async def test_wrong_method_is_405_unrecognized(http: httpx.AsyncClient) -> None:
    r = await http.delete("/_matrix/client/versions")
    _assert_error(r, 405, "M_UNRECOGNIZED")
    r = await http.get("/_matrix/client/v3/logout")
    _assert_error(r, 405, "M_UNRECOGNIZED")


# -- CORS ---------------------------------------------------------------------------------


async def test_options_preflight_on_any_path(http: httpx.AsyncClient) -> None:
    preflight = {
        "Origin": "https://app.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for path in ("/_matrix/client/versions", "/_matrix/client/v3/login",
                 "/_matrix/client/v3/profile/@someone:localhost/displayname",
                 "/_matrix/client/v3/definitely/unknown", "/"):
        r = await http.options(path, headers=preflight)
        assert r.status_code == 200, (path, r.text)
        _assert_cors(r)


async def test_normal_and_error_responses_carry_cors(http: httpx.AsyncClient) -> None:
    r = await http.get("/_matrix/client/versions")
    assert r.status_code == 200
    _assert_cors(r)
    r = await http.get("/_matrix/client/v3/account/whoami")
    assert r.status_code == 401
    _assert_cors(r)
    r = await http.get("/_matrix/client/v3/unknown")
    assert r.status_code == 404
    _assert_cors(r)


# -- request body limits ------------------------------------------------------------------


def _big_register_body(size: int) -> bytes:
    body = {"username": unique("big"), "password": PASSWORD, "auth": {"type": "m.login.dummy"},
            "padding": "p" * size}
    return json.dumps(body).encode()


async def test_body_over_limit_with_content_length(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits", config_text=LIMITED_CONFIG)
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
        data = _big_register_body(4096)
        r = await client.post(REGISTER, content=data, headers=JSON_HEADERS)
        assert r.request.headers["content-length"] == str(len(data))
        _assert_error(r, 413, "M_TOO_LARGE")
        # A body under the limit still works, on the same server.
        r = await client.post(REGISTER, content=_big_register_body(100), headers=JSON_HEADERS)
        assert r.status_code == 200, r.text


async def test_body_over_limit_chunked(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits", config_text=LIMITED_CONFIG)
    data = _big_register_body(4096)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 512):
            yield data[i:i + 512]

    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
        r = await client.post(REGISTER, content=chunks(), headers=JSON_HEADERS)
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        _assert_error(r, 413, "M_TOO_LARGE")

        small = _big_register_body(100)

        async def small_chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(small), 64):
                yield small[i:i + 64]

        r = await client.post(REGISTER, content=small_chunks(), headers=JSON_HEADERS)
        assert r.status_code == 200, r.text


# -- malformed bodies ---------------------------------------------------------------------


NOT_JSON_BODIES: list[bytes] = [
    b"{not json",
    b"",
    b"   ",
    b'{"username": "x",}',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b'{"a": "\xff\xfe"}',
    b"\xff\xfe\x00\x00",
    b'{"a": "\\ud800"' + b"",  # unterminated
    b"[" * 100_000,
    b'{"a": ' * 50_000,
]

BAD_JSON_BODIES: list[bytes] = [b"[]", b'[{"a": 1}]', b"123", b'"a string"', b"null", b"true"]


async def test_malformed_json_is_not_json(http: httpx.AsyncClient) -> None:
    for data in NOT_JSON_BODIES:
        r = await http.post(REGISTER, content=data, headers=JSON_HEADERS)
        _assert_error(r, 400, "M_NOT_JSON")
        r = await http.post("/_matrix/client/v3/login", content=data, headers=JSON_HEADERS)
        _assert_error(r, 400, "M_NOT_JSON")


async def test_non_object_json_is_bad_json(http: httpx.AsyncClient) -> None:
    for data in BAD_JSON_BODIES:
        r = await http.post(REGISTER, content=data, headers=JSON_HEADERS)
        _assert_error(r, 400, "M_BAD_JSON")
        r = await http.post("/_matrix/client/v3/login", content=data, headers=JSON_HEADERS)
        _assert_error(r, 400, "M_BAD_JSON")


async def test_malformed_json_on_authenticated_endpoints(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    headers = {**JSON_HEADERS, **bearer(reg["access_token"])}
    paths = [("PUT", f"/_matrix/client/v3/devices/{reg['device_id']}"),
             ("PUT", f"/_matrix/client/v3/profile/{reg['user_id']}/displayname"),
             ("POST", "/_matrix/client/v3/account/password"),
             ("POST", "/_matrix/client/v3/delete_devices")]
    for method, path in paths:
        r = await http.request(method, path, content=b'{"x": NaN}', headers=headers)
        _assert_error(r, 400, "M_NOT_JSON")
        r = await http.request(method, path, content=b"[1]", headers=headers)
        _assert_error(r, 400, "M_BAD_JSON")


def _fuzz_cases(user_id: str, device_id: str) -> list[tuple[str, str, bool, Any]]:
    """(method, path, authenticated, body) tuples whose bodies are all wrong somehow."""
    pw = "long enough password"
    dummy = {"type": "m.login.dummy"}
    cases: list[tuple[str, str, bool, Any]] = []
    register_bodies: list[Any] = [
        {"username": 5, "password": pw, "auth": dummy},
        {"username": ["a"], "password": pw, "auth": dummy},
        {"username": unique(), "password": [], "auth": dummy},
        {"username": unique(), "password": 12345678, "auth": dummy},
        {"username": unique(), "password": pw, "auth": "dummy"},
        {"username": unique(), "password": pw, "auth": {"type": 5}},
        {"username": unique(), "password": pw, "auth": {"type": "m.login.bogus"}},
        {"username": unique(), "password": pw, "auth": {"type": "m.login.dummy", "session": 5}},
        {"username": unique(), "password": pw, "auth": dummy, "device_id": {}},
        {"username": unique(), "password": pw, "auth": dummy, "inhibit_login": "yes"},
        {"username": unique(), "password": pw, "auth": dummy, "refresh_token": 1},
        {"username": unique(), "password": pw, "auth": dummy, "initial_device_display_name": []},
        {"username": "Has Space", "password": pw, "auth": dummy},
        {"username": "x" * 300, "password": pw, "auth": dummy},
        {"username": "@x:other.server", "password": pw, "auth": dummy},
        {"username": unique(), "password": "short", "auth": dummy},
        {"username": unique(), "auth": dummy},
    ]
    cases += [("POST", REGISTER, False, b) for b in register_bodies]
    login_bodies: list[Any] = [
        {},
        {"type": 5},
        {"type": "m.login.password", "identifier": "x", "password": pw},
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5},
         "password": pw},
        {"type": "m.login.password", "identifier": {"type": 5}, "password": pw},
        {"type": "m.login.password", "user": {}, "password": pw},
        {"type": "m.login.password", "user": user_id, "password": 5},
        {"type": "m.login.password", "user": user_id, "password": pw, "device_id": []},
        {"type": "m.login.password", "user": user_id, "password": pw, "refresh_token": "y"},
        {"type": "m.login.token", "token": 5},
        {"type": "m.login.password", "user": "@@@:::", "password": pw},
        {"type": "m.login.password", "user": "\u0000", "password": pw},
    ]
    cases += [("POST", "/_matrix/client/v3/login", False, b) for b in login_bodies]
    refresh_bodies: list[Any] = [{}, {"refresh_token": 5}, {"refresh_token": []},
                                 {"refresh_token": None}, {"refresh_token": ""},
                                 {"refresh_token": "x" * 1000}]
    cases += [("POST", "/_matrix/client/v3/refresh", False, b) for b in refresh_bodies]
    password_bodies: list[Any] = [
        {},
        {"new_password": 5},
        {"new_password": None},
        {"new_password": [pw]},
        {"new_password": pw, "logout_devices": 1},
        {"new_password": pw, "auth": "x"},
        {"new_password": pw, "auth": {"type": 5}},
        {"new_password": pw, "auth": {"type": "m.login.password", "session": 5}},
        {"new_password": pw, "auth": {"type": "m.login.password", "session": "unknown"}},
        {"new_password": pw, "auth": {"type": "m.login.password", "identifier": 5,
                                      "password": []}},
        {"new_password": "x" * 5000},
    ]
    cases += [("POST", "/_matrix/client/v3/account/password", True, b) for b in password_bodies]
    device_bodies: list[Any] = [{"display_name": 5}, {"display_name": []},
                                {"display_name": {}}, {"display_name": True},
                                {"display_name": "x" * 1000}, {"display_name": "ok"}]
    cases += [("PUT", "/_matrix/client/v3/devices/x", True, b) for b in device_bodies]
    cases += [("PUT", f"/_matrix/client/v3/devices/{device_id}", True, {"display_name": 1.5})]
    profile = f"/_matrix/client/v3/profile/{user_id}"
    cases += [
        ("PUT", f"{profile}/displayname", True, {"displayname": 5}),
        ("PUT", f"{profile}/displayname", True, {"displayname": ["a"]}),
        ("PUT", f"{profile}/displayname", True, {"displayname": {"a": 1}}),
        ("PUT", f"{profile}/displayname", True, {"displayname": False}),
        ("PUT", f"{profile}/displayname", True, {"avatar_url": "mxc://a/b"}),
        ("PUT", f"{profile}/avatar_url", True, {"avatar_url": "ftp://x"}),
        ("PUT", f"{profile}/avatar_url", True, {"avatar_url": 7}),
        ("PUT", f"{profile}/m.tz", True, {"m.tz": 5}),
        ("PUT", f"{profile}/NotAKey", True, {"NotAKey": 1}),
        ("PUT", f"{profile}/com.example.x", True, {"com.example.y": 1}),
        ("PUT", "/_matrix/client/v3/profile/@other:localhost/displayname", True,
         {"displayname": "x"}),
    ]
    # Bodies that are valid JSON but not objects, on every endpoint.
    non_objects: list[Any] = [[], 1, "s", None, True, [{}]]
    for method, path, authed in [("POST", REGISTER, False),
                                 ("POST", "/_matrix/client/v3/login", False),
                                 ("POST", "/_matrix/client/v3/refresh", False),
                                 ("POST", "/_matrix/client/v3/account/password", True),
                                 ("PUT", "/_matrix/client/v3/devices/x", True),
                                 ("PUT", f"{profile}/displayname", True)]:
        cases += [(method, path, authed, b) for b in non_objects]
    return cases


async def test_fuzz_odd_bodies_never_500(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    cases = _fuzz_cases(reg["user_id"], reg["device_id"])
    assert len(cases) >= 50
    for method, path, authed, body in cases:
        headers = dict(JSON_HEADERS)
        if authed:
            headers.update(bearer(reg["access_token"]))
        r = await http.request(method, path, content=json.dumps(body).encode(), headers=headers)
        context = (method, path, body, r.status_code, r.text[:300])
        assert 400 <= r.status_code < 500, context
        assert r.headers["content-type"].startswith("application/json"), context
        errcode = r.json()["errcode"]
        assert isinstance(errcode, str), context
        assert errcode.startswith("M_"), context
    # Nothing above changed the account: its password and token still work.
    r = await http.get("/_matrix/client/v3/account/whoami", headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    r = await login(http, reg["user_id"], PASSWORD)
    assert r.status_code == 200, r.text
    r = await http.get(f"/_matrix/client/v3/profile/{reg['user_id']}")
    assert r.json() == {"displayname": reg["user_id"][1:].split(":")[0]}


# -- discovery ----------------------------------------------------------------------------


async def test_well_known_client(server: ServerProcess, http: httpx.AsyncClient) -> None:
    r = await http.get("/.well-known/matrix/client")
    assert r.status_code == 200, r.text
    assert r.json()["m.homeserver"]["base_url"] == server.url
    _assert_cors(r)


async def test_well_known_server_not_configured(http: httpx.AsyncClient) -> None:
    r = await http.get("/.well-known/matrix/server")
    _assert_error(r, 404, "M_NOT_FOUND")


async def test_well_known_server_configured(server_factory: ServerFactory) -> None:
    srv = server_factory(config_text='[well_known]\nserver = "example.org:443"\n')
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
        r = await client.get("/.well-known/matrix/server")
        assert r.status_code == 200, r.text
        assert r.json() == {"m.server": "example.org:443"}


# -- connection handling and process lifecycle --------------------------------------------


async def test_connection_close_is_honoured(server: ServerProcess) -> None:
    parts = urlsplit(server.url)
    assert parts.hostname is not None
    assert parts.port is not None
    received = b""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            await stream.send_all(
                b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break  # EOF: the server closed the connection
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 200"), received[:200]
    assert b"connection: close" in head.lower()
    assert "v1.19" in json.loads(body)["versions"]


async def _raw_exchange(server: ServerProcess, request: bytes) -> bytes:
    """Send `request` on a fresh connection; return the response head (up to the blank line)."""
    parts = urlsplit(server.url)
    assert parts.hostname is not None
    assert parts.port is not None
    received = b""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            await stream.send_all(request)
            while b"\r\n\r\n" not in received:
                chunk = await stream.receive_some(65536)
                assert chunk, received
                received += chunk
    return received.partition(b"\r\n\r\n")[0].lower()


async def test_an_answer_before_the_body_says_connection_close(server: ServerProcess) -> None:
    """A response sent before the request body has arrived ends the connection (the server
    does not read the rest); it must say so, or a client reusing the connection loses its
    next request. With the body sent, the connection is kept."""
    early = await _raw_exchange(server, b"POST /_matrix/client/v3/logout HTTP/1.1\r\n"
                                        b"Host: x\r\nContent-Length: 2\r\n\r\n")
    assert early.startswith(b"http/1.1 401"), early
    assert b"connection: close" in early
    whole = await _raw_exchange(server, b"POST /_matrix/client/v3/logout HTTP/1.1\r\n"
                                        b"Host: x\r\nContent-Length: 2\r\n\r\n{}")
    assert whole.startswith(b"http/1.1 401"), whole
    assert b"connection: close" not in whole
    kept = await _raw_exchange(server, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n"
                                       b"\r\n")
    assert kept.startswith(b"http/1.1 200"), kept
    assert b"connection: close" not in kept


def _assert_clean_exit(srv: ServerProcess, sig: int) -> None:
    r = httpx.get(f"{srv.url}/_matrix/client/versions", timeout=10)
    assert r.status_code == 200
    assert srv.stop(sig) == 0
    assert any(" listening on http://127.0.0.1:" in line for line in srv.stdout_lines), \
        srv.stdout_lines
    assert "Traceback" not in srv.log(), srv.log()


# These start the server with `start_server` rather than `server_factory`: the factory's
# teardown calls `ServerProcess.stop()` again, and a second `stop()` raises on the already
# closed stdout pipe.


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv")
    try:
        _assert_clean_exit(srv, signal.SIGTERM)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


def test_sigint_exits_cleanly(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv")
    try:
        _assert_clean_exit(srv, signal.SIGINT)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
