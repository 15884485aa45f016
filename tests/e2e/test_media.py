"""The content repository over HTTP: uploads, downloads, thumbnails, limits and safety headers."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from PIL import Image

from tests.conftest import ServerFactory
from tests.e2e.helpers import assert_error, bearer, register
from tests.server_process import ServerProcess

AUTHED = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


async def upload(http: httpx.AsyncClient, token: str, data: bytes,
                 content_type: str = "application/octet-stream",
                 filename: str | None = None) -> str:
    params = {"filename": filename} if filename else {}
    r = await http.post(f"{LEGACY}/upload", content=data, params=params,
                        headers={**bearer(token), "Content-Type": content_type})
    assert r.status_code == 200, r.text
    uri: str = r.json()["content_uri"]
    assert uri.startswith("mxc://")
    return uri[len("mxc://"):]


def blob_files(data_dir: Path) -> list[Path]:
    root = data_dir / "media"
    return [p for p in root.glob("??/??/*") if p.is_file()]


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), frames: int = 1) -> bytes:
    images = [Image.new("RGB", size, (40 * i % 255, 120, 200)) for i in range(frames)]
    buf = io.BytesIO()
    if frames > 1:
        images[0].save(buf, fmt, save_all=True, append_images=images[1:], duration=100, loop=0)
    else:
        images[0].save(buf, fmt)
    return buf.getvalue()


async def test_upload_download_round_trip(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    data = os.urandom(300_000)
    path = await upload(http, token, data, "application/x-thing", "résumé final.bin")
    r = await http.get(f"{AUTHED}/download/{path}", headers=bearer(token))
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert r.headers["Content-Type"] == "application/x-thing"
    assert r.headers["Content-Length"] == str(len(data))
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert "filename*=utf-8''r%C3%A9sum%C3%A9%20final.bin" in disposition
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    assert r.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    # A filename in the path overrides the stored one; plain text is shown inline.
    text_path = await upload(http, token, b"hello", "text/plain", "a.txt")
    r = await http.get(f"{AUTHED}/download/{text_path}/other.txt", headers=bearer(token))
    assert r.content == b"hello"
    assert r.headers["Content-Disposition"] == (
        "inline; filename=\"other.txt\"; filename*=utf-8''other.txt")
    # Legacy unauthenticated download still works (freeze is off by default).
    r = await http.get(f"{LEGACY}/download/{text_path}")
    assert r.content == b"hello"


async def test_html_and_svg_are_attachments(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    for ctype in ("text/html", "image/svg+xml", "application/javascript"):
        path = await upload(http, token, b"<script>alert(1)</script>", ctype, "x")
        r = await http.get(f"{AUTHED}/download/{path}", headers=bearer(token))
        assert r.headers["Content-Disposition"].startswith("attachment"), ctype
        assert "sandbox" in r.headers["Content-Security-Policy"]


async def test_auth_required_on_authenticated_endpoints(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    path = await upload(http, token, b"x")
    for url in (f"{AUTHED}/config", f"{AUTHED}/download/{path}",
                f"{AUTHED}/thumbnail/{path}?width=32&height=32"):
        assert_error(await http.get(url), 401, "M_MISSING_TOKEN")
    assert_error(await http.post(f"{LEGACY}/upload", content=b"x"), 401, "M_MISSING_TOKEN")
    r = await http.get(f"{AUTHED}/config", headers=bearer(token))
    assert r.json() == {"m.upload.size": 50 * 1024 * 1024}


async def test_bad_ids_and_unknown_media(http: httpx.AsyncClient, server: ServerProcess) -> None:
    token = (await register(http))["access_token"]
    auth = bearer(token)
    name = server.server_name
    for bad in ("..", "a.b", "a%20b", "x" * 256, "%2e%2e", "a%00"):
        r = await http.get(f"{AUTHED}/download/{name}/{bad}", headers=auth)
        assert r.status_code in (400, 404), (bad, r.text)
        assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND", "M_UNRECOGNIZED")
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E/%2E%2E/trioserver.db"):
        r = await http.get(f"{AUTHED}/download/{name}/{bad}", headers=auth)
        assert r.status_code in (400, 404), (bad, r.text)
        assert b"SQLite" not in r.content
    assert_error(await http.get(f"{AUTHED}/download/{name}/nosuchmedia", headers=auth),
                 404, "M_NOT_FOUND")
    path = await upload(http, token, b"remote?")
    media_id = path.split("/")[1]
    # A local id under another server's name is that server's media, never ours: other.example
    # does not resolve, so the federation fetch fails (502).
    r = await http.get(f"{AUTHED}/download/other.example/{media_id}", headers=auth)
    assert r.status_code in (404, 502), r.text
    assert b"remote?" not in r.content
    assert_error(await http.put(f"{LEGACY}/upload/{name}/a.b", content=b"x", headers=auth),
                 400, "M_INVALID_PARAM")
    assert_error(await http.post(f"{LEGACY}/upload", params={"filename": "a/b"}, content=b"x",
                                 headers=auth), 400, "M_INVALID_PARAM")


async def test_async_create_and_upload(http: httpx.AsyncClient, server: ServerProcess) -> None:
    alice = (await register(http))["access_token"]
    bob = (await register(http))["access_token"]
    r = await http.post("/_matrix/media/v1/create", headers=bearer(alice))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unused_expires_at"] > time.time() * 1000
    path = body["content_uri"][len("mxc://"):]
    # Not yet uploaded: 504 M_NOT_YET_UPLOADED once the wait times out.
    r = await http.get(f"{AUTHED}/download/{path}?timeout_ms=0", headers=bearer(alice))
    assert_error(r, 504, "M_NOT_YET_UPLOADED")
    assert_error(await http.put(f"{LEGACY}/upload/{path}", content=b"bob's",
                                headers=bearer(bob)), 403, "M_FORBIDDEN")

    async def wait_download(result: list[httpx.Response]) -> None:
        result.append(await http.get(f"{AUTHED}/download/{path}", headers=bearer(bob)))

    result: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_download, result)
        await trio.sleep(0.2)
        r = await http.put(f"{LEGACY}/upload/{path}", content=b"alice's",
                           params={"filename": "a.txt"},
                           headers={**bearer(alice), "Content-Type": "text/plain"})
        assert r.status_code == 200, r.text
        assert r.json() == {}
    assert result[0].content == b"alice's"
    assert_error(await http.put(f"{LEGACY}/upload/{path}", content=b"again",
                                headers=bearer(alice)), 409, "M_CANNOT_OVERWRITE_MEDIA")
    name = server.server_name
    assert_error(await http.put(f"{LEGACY}/upload/{name}/neverCreated", content=b"x",
                                headers=bearer(alice)), 404, "M_NOT_FOUND")


async def test_identical_concurrent_uploads_are_stored_once(
        server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits")
    data = os.urandom(2 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        token = (await register(http))["access_token"]
        paths: list[str] = []

        async def one() -> None:
            paths.append(await upload(http, token, data))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
        assert len(set(paths)) == 8
        files = blob_files(srv.data_dir)
        assert [p.name for p in files] == [hashlib.sha256(data).hexdigest()]
        assert not list((srv.data_dir / "media" / "tmp").iterdir())
        for path in paths:
            r = await http.get(f"{AUTHED}/download/{path}", headers=bearer(token))
            assert r.content == data


async def test_size_limit_is_enforced_while_streaming(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits",
                         config_text="[media]\nmax_upload_size = 3000000\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        token = (await register(http))["access_token"]
        # Bigger than max_request_body_bytes (1 MiB) but within the media limit: accepted.
        await upload(http, token, os.urandom(2_000_000))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield os.urandom(500_000)

        # Chunked (no Content-Length): refused once the stream passes the limit.
        r = await http.post(f"{LEGACY}/upload", content=chunks(), headers=bearer(token))
        assert_error(r, 413, "M_TOO_LARGE")
        # A declared Content-Length over the limit is refused up front.
        r = await http.post(f"{LEGACY}/upload", content=os.urandom(3_000_001),
                            headers=bearer(token))
        assert_error(r, 413, "M_TOO_LARGE")
        assert len(blob_files(srv.data_dir)) == 1
        assert not list((srv.data_dir / "media" / "tmp").iterdir())
        # JSON endpoints keep their own 1 MiB limit.
        r = await http.put("/_matrix/client/v3/profile/@x:localhost/displayname",
                           content=b"{" + b" " * 2_000_000 + b"}", headers=bearer(token))
        assert_error(r, 413, "M_TOO_LARGE")


async def test_user_quota(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits",
                         config_text="[media]\nuser_quota_bytes = 100000\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        token = (await register(http))["access_token"]
        await upload(http, token, os.urandom(60_000))
        r = await http.post(f"{LEGACY}/upload", content=os.urandom(60_000),
                            headers=bearer(token))
        assert_error(r, 403, "M_FORBIDDEN")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
async def test_100_mb_upload_streams_with_bounded_memory(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits",
                         config_text="[media]\nmax_upload_size = 209715200\n")
    total, chunk = 100 * 1024 * 1024, os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    peak = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal peak
        for i in range(total // len(chunk)):
            expected.update(chunk)
            if i % 8 == 0:
                peak = max(peak, rss_kib(srv.proc.pid))
            yield chunk

    async with httpx.AsyncClient(base_url=srv.url, timeout=120) as http:
        token = (await register(http))["access_token"]
        await upload(http, token, b"warm-up")
        before = rss_kib(srv.proc.pid)
        started = time.monotonic()
        r = await http.post(f"{LEGACY}/upload", content=body(), headers=bearer(token))
        up_s = time.monotonic() - started
        assert r.status_code == 200, r.text
        after = rss_kib(srv.proc.pid)
        path = r.json()["content_uri"][len("mxc://"):]
        got = hashlib.sha256()
        started = time.monotonic()
        async with http.stream("GET", f"{AUTHED}/download/{path}",
                               headers=bearer(token)) as resp:
            async for part in resp.aiter_bytes():
                got.update(part)
        down_s = time.monotonic() - started
    assert got.hexdigest() == expected.hexdigest()
    growth_mb = (max(peak, after) - before) / 1024
    print(f"\nupload {100 / up_s:.0f} MB/s, download {100 / down_s:.0f} MB/s, "
          f"RSS before {before / 1024:.0f} MB, peak {max(peak, after) / 1024:.0f} MB")
    assert growth_mb < 60, growth_mb


@pytest.mark.parametrize(("fmt", "ctype"), [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                            ("GIF", "image/gif"), ("WEBP", "image/webp")])
async def test_thumbnails_of_each_format(http: httpx.AsyncClient, fmt: str, ctype: str) -> None:
    token = (await register(http))["access_token"]
    path = await upload(http, token, image_bytes(fmt, (640, 480)), ctype)
    for method, expected in (("scale", (32, 24)), ("crop", (32, 32))):
        r = await http.get(f"{AUTHED}/thumbnail/{path}",
                           params={"width": 32, "height": 32, "method": method},
                           headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == ("image/jpeg" if fmt == "JPEG" else "image/png")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        with Image.open(io.BytesIO(r.content)) as thumb:
            assert thumb.size == expected
        again = await http.get(f"{AUTHED}/thumbnail/{path}",
                               params={"width": 32, "height": 32, "method": method},
                               headers=bearer(token))
        assert again.content == r.content


async def test_animated_thumbnails(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    for fmt, ctype in (("GIF", "image/gif"), ("WEBP", "image/webp")):
        original = image_bytes(fmt, (200, 100), frames=3)
        path = await upload(http, token, original, ctype)
        r = await http.get(f"{AUTHED}/thumbnail/{path}?width=50&height=50&animated=true",
                           headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.content == original
        r = await http.get(f"{AUTHED}/thumbnail/{path}?width=50&height=50",
                           headers=bearer(token))
        assert r.headers["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(r.content)) as thumb:
            assert thumb.size == (50, 25)


async def test_thumbnail_refusals(http: httpx.AsyncClient) -> None:
    token = (await register(http))["access_token"]
    auth = bearer(token)
    # A 10000 x 10000 PNG compresses to a few kB but would decode to 300 MB.
    bomb = await upload(http, token, image_bytes("PNG", (10_000, 10_000)), "image/png")
    r = await http.get(f"{AUTHED}/thumbnail/{bomb}?width=32&height=32", headers=auth)
    assert_error(r, 413, "M_TOO_LARGE")
    garbage = await upload(http, token, b"not an image", "image/png")
    r = await http.get(f"{AUTHED}/thumbnail/{garbage}?width=32&height=32", headers=auth)
    assert_error(r, 400, "M_UNKNOWN")
    svg = await upload(http, token, b"<svg/>", "image/svg+xml")
    r = await http.get(f"{AUTHED}/thumbnail/{svg}?width=32&height=32", headers=auth)
    assert r.status_code == 400
    png = await upload(http, token, image_bytes("PNG"), "image/png")
    for query in ("width=32", "width=a&height=3", "width=32&height=32&method=zoom",
                  "width=32&height=32&animated=maybe", "width=0&height=32"):
        r = await http.get(f"{AUTHED}/thumbnail/{png}?{query}", headers=auth)
        assert r.status_code == 400, query


async def test_freeze_unauthenticated(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits",
                         config_text="[media]\nfreeze_unauthenticated = true\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:
        token = (await register(http))["access_token"]
        path = await upload(http, token, image_bytes("PNG"), "image/png")
        assert_error(await http.get(f"{LEGACY}/download/{path}"), 404, "M_NOT_FOUND")
        assert_error(await http.get(f"{LEGACY}/thumbnail/{path}?width=8&height=8"),
                     404, "M_NOT_FOUND")
        r = await http.get(f"{AUTHED}/download/{path}", headers=bearer(token))
        assert r.status_code == 200
