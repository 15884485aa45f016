"""Operating the server: /health, /metrics, the access log, trusted proxies, graceful shutdown."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import ServerFactory
from tests.e2e.helpers import (
    bearer,
    create_room,
    login,
    register,
    room_path,
    send_text,
    unique,
    user_and_token,
)
from tests.server_process import ServerProcess, start_server


async def test_health_on_the_client_listener(http: httpx.AsyncClient) -> None:
    r = await http.get("/health")
    assert r.status_code == 200
    assert r.text == "OK"
    assert (await http.head("/health")).status_code == 200


async def test_metrics_listener_is_separate(server: ServerProcess, http: httpx.AsyncClient) -> None:
    metrics_url = server.listener_url("metrics")
    assert metrics_url.startswith("http://127.0.0.1:")
    r = await http.get("/metrics")
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_UNRECOGNIZED"
    async with httpx.AsyncClient() as client:
        m = await client.get(metrics_url)
        assert m.status_code == 200
        assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
        health = await client.get(metrics_url.replace("/metrics", "/health"))
        assert health.text == "OK"
        other = await client.get(metrics_url.replace("/metrics", "/_matrix/client/versions"))
        assert other.status_code == 404
        assert (await client.post(metrics_url)).status_code == 405


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def test_metrics_count_requests_by_route_pattern(server: ServerProcess,
                                                       http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    room = await create_room(http, token)
    for i in range(3):
        await send_text(http, token, room, f"m{i}")
    await http.get("/_matrix/client/v3/no/such/endpoint")
    async with httpx.AsyncClient() as client:
        text = (await client.get(server.listener_url("metrics"))).text
    send_route = "/_matrix/client/v3/rooms/<room_id>/send/<event_type>/<txn_id>"
    count = _value(text, f'trioserver_http_requests_total{{endpoint="{send_route}",'
                         f'method="PUT",status="200"}}')
    assert count >= 3
    assert room not in text  # labels are patterns, never concrete ids
    assert 'endpoint="unmatched",method="GET",status="404"' in text
    assert _value(text, f'trioserver_http_request_duration_seconds_count{{endpoint="{send_route}"}}'
                  ) >= 3
    assert _value(text, "trioserver_db_commit_duration_seconds_count") >= 1
    assert _value(text, "trioserver_db_writes_total") >= 5
    assert _value(text, "trioserver_db_bytes") > 0
    assert _value(text, "trioserver_db_write_queue") >= 0
    assert _value(text, "trioserver_media_bytes") >= 0
    assert _value(text, "trioserver_process_resident_memory_bytes") > 10_000_000


async def test_metrics_show_waiting_long_polls(server: ServerProcess,
                                               http: httpx.AsyncClient) -> None:
    _, token = await user_and_token(http)
    first = (await http.get("/_matrix/client/v3/sync", headers=bearer(token))).json()
    url = server.listener_url("metrics")

    async def long_poll() -> None:
        await http.get("/_matrix/client/v3/sync", headers=bearer(token),
                       params={"since": first["next_batch"], "timeout": "3000"})

    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        nursery.start_soon(long_poll)
        with trio.fail_after(5):
            # Polling another process's metrics: there is no event to wait on.
            while _value((await client.get(url)).text,  # noqa: ASYNC110
                         "trioserver_long_polls_waiting") < 1:
                await trio.sleep(0.05)


async def test_access_log_has_one_line_per_request_and_no_secrets(
        server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration")
    secret_password = "correct horse battery staple 42"
    async with httpx.AsyncClient(base_url=srv.url) as http:
        user = await register(http, unique("log"), password=secret_password)
        token = user["access_token"]
        await http.get("/_matrix/client/v3/account/whoami", headers=bearer(token),
                       params={"access_token": token, "secret": "query-secret"})
        await login(http, user["user_id"], password=secret_password)
    srv.wait_log('"POST /_matrix/client/v3/login" 200')
    lines = [line for line in srv.log().splitlines() if "trioserver.access" in line]
    whoami = [line for line in lines if "/account/whoami" in line]
    assert len(whoami) == 1, lines
    assert re.search(r'127\.0\.0\.1 "GET /_matrix/client/v3/account/whoami" 200 [\d.]+ms '
                     + re.escape(user["user_id"]), whoami[0]), whoami[0]
    assert any('"POST /_matrix/client/v3/login" 200' in line for line in lines), lines
    log = srv.log()
    for secret in (token, secret_password, "query-secret"):
        assert secret not in log


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
        server_factory: ServerFactory) -> None:
    trusted = server_factory("--open-registration",
                             config_text='trusted_proxies = ["127.0.0.0/8"]\n')
    untrusted = server_factory("--open-registration",
                               config_text='trusted_proxies = ["10.0.0.0/8"]\n')
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 127.0.0.1"}
    seen = {}
    for name, srv in (("trusted", trusted), ("untrusted", untrusted)):
        async with httpx.AsyncClient(base_url=srv.url, headers=headers) as http:
            user = await register(http, unique("xff"))
            devices = (await http.get("/_matrix/client/v3/devices",
                                      headers=bearer(user["access_token"]))).json()["devices"]
            seen[name] = devices[0]["last_seen_ip"]
        srv.wait_log(f'{seen[name]} "GET /_matrix/client/v3/devices"')
    # The right-most address that is not a trusted proxy; the spoofable left part is ignored.
    assert seen == {"trusted": "203.0.113.9", "untrusted": "127.0.0.1"}


# -- graceful shutdown --------------------------------------------------------------------
# These use `start_server` so the test itself stops the process and checks how.


async def _wait_exit(srv: ServerProcess, limit_s: float) -> tuple[int, float]:
    start = time.monotonic()
    code = await trio.to_thread.run_sync(partial(srv.proc.wait, timeout=limit_s))
    return code, time.monotonic() - start


async def test_sigterm_answers_waiting_long_polls_and_exits_zero(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv", "--open-registration")
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            _, token = await user_and_token(http)
            since = (await http.get("/_matrix/client/v3/sync",
                                    headers=bearer(token))).json()["next_batch"]
            results: list[tuple[int, float]] = []

            async def long_poll() -> None:
                start = time.monotonic()
                r = await http.get("/_matrix/client/v3/sync", headers=bearer(token),
                                   params={"since": since, "timeout": "30000"})
                results.append((r.status_code, time.monotonic() - start))
                assert r.json()["next_batch"]

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(long_poll)
                await trio.sleep(0.5)
                srv.proc.send_signal(signal.SIGTERM)
                code, took = await _wait_exit(srv, 10)
        assert code == 0
        assert took < 5, took
        assert [status for status, _ in results] == [200] * 5
        assert all(t < 6 for _, t in results), results
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()


async def _slow_body(chunks: int, parked: trio.Event, release: trio.Event
                     ) -> AsyncIterator[bytes]:
    yield b"a" * 1000
    parked.set()
    await release.wait()
    for _ in range(chunks):
        yield b"b" * 1000


async def test_sigterm_stops_accepting_but_finishes_requests_in_flight(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv", "--open-registration")
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            token = (await register(http, "uploader"))["access_token"]
            parked, release = trio.Event(), trio.Event()
            upload: list[httpx.Response] = []

            async def slow_upload() -> None:
                upload.append(await http.post(
                    "/_matrix/media/v3/upload", headers={**bearer(token),
                                                         "Content-Type": "text/plain"},
                    content=_slow_body(20, parked, release)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_upload)
                await parked.wait()
                await trio.sleep(0.2)
                srv.proc.send_signal(signal.SIGTERM)
                # New connections are refused while the upload is still streaming in.
                with trio.fail_after(5):
                    while True:
                        try:
                            async with httpx.AsyncClient(base_url=srv.url) as fresh:
                                await fresh.get("/_matrix/client/versions")
                        except httpx.ConnectError:
                            break
                        await trio.sleep(0.05)
                release.set()
            assert upload[0].status_code == 200, upload[0].text
            mxc = upload[0].json()["content_uri"]
        code, _ = await _wait_exit(srv, 10)
        assert code == 0
    finally:
        srv.stop()
    # The upload that was in flight at SIGTERM is complete after a restart.
    again = start_server(tmp_path / "srv", "--open-registration")
    try:
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as http:
            token = (await login(http, "uploader")).json()["access_token"]
            server_name, media_id = mxc.removeprefix("mxc://").split("/")
            r = await http.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}",
                               headers=bearer(token))
            assert r.status_code == 200
            assert r.content == b"a" * 1000 + b"b" * 20_000
    finally:
        again.stop()


async def test_sigterm_commits_every_acknowledged_write(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv", "--open-registration", "--no-rate-limits")
    acknowledged: list[str] = []
    enough = trio.Event()
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            user = await register(http, "writer")
            token = user["access_token"]
            room = await create_room(http, token)

            async def sender(n: int) -> None:
                for i in range(1000):
                    try:
                        r = await http.put(room_path(room, "send", "m.room.message",
                                                     f"t{n}-{i}"),
                                           headers=bearer(token),
                                           json={"msgtype": "m.text", "body": f"{n}/{i}"})
                    except httpx.TransportError:
                        return
                    if r.status_code != 200:
                        assert r.status_code < 500, r.text
                        return
                    acknowledged.append(r.json()["event_id"])
                    if len(acknowledged) >= 50:
                        enough.set()

            async with trio.open_nursery() as nursery:
                for n in range(8):
                    nursery.start_soon(sender, n)
                await enough.wait()
                srv.proc.send_signal(signal.SIGTERM)
                code, _ = await _wait_exit(srv, 15)
        assert code == 0
    finally:
        srv.stop()
    again = start_server(tmp_path / "srv", "--open-registration")
    try:
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as http:
            token = (await login(http, "writer")).json()["access_token"]
            for event_id in acknowledged:
                r = await http.get(room_path(room, "event", event_id), headers=bearer(token))
                assert r.status_code == 200, (event_id, r.text)
    finally:
        again.stop()
    assert len(acknowledged) >= 50


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_idle_server_stops_at_once(tmp_path: Path, sig: int) -> None:
    srv = start_server(tmp_path / "srv")
    try:
        httpx.get(f"{srv.url}/health", timeout=10)
        start = time.monotonic()
        assert srv.stop(sig) == 0
        assert time.monotonic() - start < 3
    finally:
        srv.stop()


def test_a_storm_of_signals_during_shutdown_still_exits_zero(tmp_path: Path) -> None:
    """systemd (KillMode=control-group) signals the one-file bootloader and the server at
    once, and the bootloader forwards its own: late signals, even one that arrives as the
    signal receiver closes, must not kill a shutdown in progress."""
    for attempt in range(3):
        srv = start_server(tmp_path / f"srv{attempt}")
        try:
            httpx.get(f"{srv.url}/health", timeout=10)
            deadline = time.monotonic() + 10
            while srv.proc.poll() is None and time.monotonic() < deadline:
                try:
                    srv.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.0005)
            assert srv.proc.wait(timeout=10) == 0
        finally:
            srv.stop()
