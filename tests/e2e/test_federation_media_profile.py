"""Two trioservers over TLS: remote media, profiles, aliases and public rooms through B."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.e2e.helpers import assert_error, bearer, create_room, register
from tests.federation_peer import FederationCaller, Peer, start_tls_peer

MB = 1024 * 1024


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[Peer, Peer]]:
    a = start_tls_peer(tmp_path / "a")
    # B accepts at most 2 MB of media, remote media included.
    b = start_tls_peer(tmp_path / "b", extra_config="[media]\nmax_upload_size = 2097152\n")
    try:
        yield a, b
    finally:
        a.proc.stop()
        b.proc.stop()


def _png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def _upload(http: httpx.AsyncClient, token: str, data: bytes, content_type: str,
                  filename: str) -> str:
    r = await http.post("/_matrix/media/v3/upload", params={"filename": filename},
                        content=data, headers={**bearer(token), "Content-Type": content_type})
    assert r.status_code == 200, r.text
    uri: str = r.json()["content_uri"]
    return uri.removeprefix("mxc://").split("/", 1)[1]


def _download(server: str, media_id: str) -> str:
    return f"/_matrix/client/v1/media/download/{server}/{media_id}"


async def test_remote_media_download_thumbnail_and_cache(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=60) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=60) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        blob = os.urandom(MB)
        blob_id = await _upload(ha, alice["access_token"], blob, "application/octet-stream",
                                "blob.bin")
        png_id = await _upload(ha, alice["access_token"], _png(), "image/png", "red.png")
        bob_auth = bearer(bob["access_token"])

        started = time.monotonic()
        r = await hb.get(_download(a.name, blob_id), headers=bob_auth)
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert r.content == blob
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["content-disposition"].startswith("attachment")
        assert "blob.bin" in r.headers["content-disposition"]
        print(f"remote fetch of 1 MB: {elapsed * 1000:.0f} ms")

        r = await hb.get(f"/_matrix/client/v1/media/thumbnail/{a.name}/{png_id}",
                         params={"width": "32", "height": "32", "method": "scale"},
                         headers=bob_auth)
        assert r.status_code == 200, r.text
        thumb = Image.open(io.BytesIO(r.content))
        assert max(thumb.size) <= 32

        # Unknown ids are A's 404; bad ids never leave B.
        r = await hb.get(_download(a.name, "doesNotExist"), headers=bob_auth)
        assert_error(r, 404, "M_NOT_FOUND")
        r = await hb.get(_download(a.name, "bad%2E%2Fid"), headers=bob_auth)
        assert_error(r, 400, "M_INVALID_PARAM")
        r = await hb.get(_download("bad%21name", "abc"), headers=bob_auth)
        assert_error(r, 400, "M_INVALID_PARAM")

        # Over B's 2 MB limit: refused while streaming, nothing kept.
        big_id = await _upload(ha, alice["access_token"], os.urandom(3 * MB),
                               "application/octet-stream", "big.bin")
        r = await hb.get(_download(a.name, big_id), headers=bob_auth)
        assert_error(r, 502, "M_TOO_LARGE")

        # With A gone, B still serves what it fetched.
        a.proc.stop()
        r = await hb.get(_download(a.name, blob_id), headers=bob_auth)
        assert r.status_code == 200, r.text
        assert r.content == blob
        r = await hb.get(_download(a.name, big_id), headers=bob_auth)
        assert r.status_code == 502


async def test_federation_media_endpoint_is_multipart(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=60) as ha:
        alice = await register(ha, "alice")
        media_id = await _upload(ha, alice["access_token"], b"hello world", "text/plain",
                                 "hello.txt")
        caller = FederationCaller(ha, a, b)
        r = await caller.request("GET", f"/_matrix/federation/v1/media/download/{media_id}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("multipart/mixed; boundary=")
        boundary = r.headers["content-type"].split("boundary=", 1)[1]
        parts = r.content.split(f"--{boundary}".encode())
        assert parts[1] == b"\r\nContent-Type: application/json\r\n\r\n{}\r\n"
        head, body = parts[2].split(b"\r\n\r\n", 1)
        assert b"Content-Type: text/plain" in head
        assert body == b"hello world\r\n"
        assert parts[3] == b"--\r\n"
        r = await caller.request("GET", f"/_matrix/federation/v1/media/download/{media_id}",
                                 sign=False)
        assert r.status_code == 401

        png_id = await _upload(ha, alice["access_token"], _png(), "image/png", "red.png")
        r = await caller.request("GET", f"/_matrix/federation/v1/media/thumbnail/{png_id}",
                                 query={"width": "16", "height": "16", "method": "crop"})
        assert r.status_code == 200, r.text
        boundary = r.headers["content-type"].split("boundary=", 1)[1]
        head, body = r.content.split(f"--{boundary}".encode())[2].split(b"\r\n\r\n", 1)
        assert b"Content-Type: image/" in head
        assert Image.open(io.BytesIO(body[:-2])).size == (16, 16)
        r = await caller.request("GET", "/_matrix/federation/v1/media/download/no.such%2Fid")
        assert r.status_code in (400, 404)


async def test_profile_alias_join_and_public_rooms(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    async with httpx.AsyncClient(base_url=a.proc.url, timeout=60) as ha, \
            httpx.AsyncClient(base_url=b.proc.url, timeout=60) as hb:
        alice = await register(ha, "alice")
        bob = await register(hb, "bob")
        r = await ha.put(f"/_matrix/client/v3/profile/{alice['user_id']}/displayname",
                         json={"displayname": "Alice A"}, headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text

        user = quote(alice["user_id"], safe="")
        r = await hb.get(f"/_matrix/client/v3/profile/{user}")
        assert r.status_code == 200, r.text
        assert r.json()["displayname"] == "Alice A"
        r = await hb.get(f"/_matrix/client/v3/profile/{user}/displayname")
        assert r.json() == {"displayname": "Alice A"}
        r = await hb.get(f"/_matrix/client/v3/profile/{quote('@nobody:' + a.name, safe='')}")
        assert_error(r, 404, "M_NOT_FOUND")

        room = await create_room(ha, alice["access_token"], preset="public_chat",
                                 room_alias_name="lobby", name="The lobby",
                                 visibility="public")
        alias = f"#lobby:{a.name}"
        r = await hb.get(f"/_matrix/client/v3/directory/room/{quote(alias, safe='')}")
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == room
        assert a.name in r.json()["servers"]
        r = await hb.get(f"/_matrix/client/v3/directory/room/{quote('#nope:' + a.name)}")
        assert_error(r, 404, "M_NOT_FOUND")

        r = await hb.post(f"/_matrix/client/v3/join/{quote(alias, safe='')}", json={},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == room

        r = await hb.get("/_matrix/client/v3/publicRooms", params={"server": a.name},
                         headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        listed = {c["room_id"]: c for c in r.json()["chunk"]}
        assert listed[room]["name"] == "The lobby"
        assert listed[room]["num_joined_members"] == 2
        r = await hb.post("/_matrix/client/v3/publicRooms", params={"server": a.name},
                          json={"filter": {"generic_search_term": "lobby"}, "limit": 5},
                          headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        assert [c["room_id"] for c in r.json()["chunk"]] == [room]
        r = await hb.post("/_matrix/client/v3/publicRooms", params={"server": a.name},
                          json={"filter": {"generic_search_term": "no such room"}},
                          headers=bearer(bob["access_token"]))
        assert r.json()["chunk"] == []
