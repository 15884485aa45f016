"""A real federation identity for end-to-end tests: a trioserver peer, and requests "as" it.

`start_tls_peer` runs a trioserver whose server name is `127.0.0.1:<port>` with its TLS
listener on that port, so other servers fetch its keys over HTTPS as they would any peer's.
`FederationCaller` then speaks to a target server in that peer's name: it signs requests with
the peer's own signing key (read from its data dir) and builds PDUs with `RemoteServer`.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.fed_events import RemoteServer
from tests.server_process import ServerProcess, start_server
from tests.tls_certs import make_cert
from trioserver.services.events.hashing import compute_event_id
from trioserver.services.events.room_versions import RoomVersion, get_room_version
from trioserver.services.events.signing import SigningKey, parse_key_file_line
from trioserver.services.federation.request_auth import sign_request
from trioserver.services.rooms.cache import RoomView


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def q(identifier: str) -> str:
    """One path segment (room, event or user ID), percent-encoded as servers send it."""
    return quote(identifier, safe="")


@dataclass(frozen=True)
class Peer:
    """A running trioserver federating as `name`, and the private key it signs with."""

    proc: ServerProcess
    name: str
    key: SigningKey

    @property
    def remote(self) -> RemoteServer:
        return RemoteServer(self.name, key=self.key)


def start_tls_peer(data_dir: Path, *args: str, extra_config: str = "",
                   rate_limited: bool = False) -> Peer:
    port = free_port()
    name = f"127.0.0.1:{port}"
    certs = make_cert(data_dir / "tls", name="127.0.0.1")
    config = (f'[tls]\ncert = "{certs.cert}"\nkey = "{certs.key}"\n'
              f'listen = "127.0.0.1:{port}"\n'
              "[federation]\ninsecure_skip_verify = true\nallow_private_addresses = true\n"
              "trusted_key_servers = []\n" + extra_config)
    limits = () if rate_limited else ("--no-rate-limits",)
    proc = start_server(data_dir / "data", "--open-registration", *limits, *args,
                        config_text=config, server_name=name)
    key = parse_key_file_line((proc.data_dir / "signing.key").read_text())
    return Peer(proc, name, key)


class FederationCaller:
    """Signed federation requests to `target` as `origin` (its name and private key)."""

    def __init__(self, http: httpx.AsyncClient, target: Peer, origin: Peer) -> None:
        self.http = http
        self.target = target
        self.origin = origin

    async def request(self, method: str, path: str, *, body: Any | None = None,
                      query: Mapping[str, str] | None = None, sign: bool = True,
                      origin: str | None = None, key: SigningKey | None = None,
                      destination: str | None = None, signed_path: str | None = None,
                      signed_body: Any | None = None) -> httpx.Response:
        """Send `method path`; signed as the origin peer unless told otherwise.

        The signature covers the request target exactly as it goes on the wire (the raw path
        and query of the URL that is sent), as client.FederationClient does it; or, to replay
        a signature elsewhere, `signed_path` and `signed_body`.
        """
        url = httpx.URL(self.target.proc.url + path, params=query)
        headers = {}
        if sign:
            headers["Authorization"] = sign_request(
                method, signed_path or url.raw_path.decode("ascii"), origin or self.origin.name,
                destination or self.target.name,
                body if signed_body is None else signed_body, key or self.origin.key)
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return await self.http.request(method, url, headers=headers, content=content)

    async def send(self, pdus: list[dict[str, Any]], txn_id: str | None = None,
                   **kw: Any) -> httpx.Response:
        """PUT /_matrix/federation/v1/send/{txnId} with these PDUs."""
        body = {"origin": kw.get("origin") or self.origin.name,
                "origin_server_ts": 1_700_000_000_000, "pdus": pdus, "edus": []}
        return await self.request("PUT", f"/_matrix/federation/v1/send/{txn_id or new_txn_id()}",
                                  body=body, **kw)

    async def make_join(self, room_id: str, user_id: str) -> dict[str, Any]:
        r = await self.request("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/"
                               f"{q(user_id)}", query={"ver": "12"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def join(self, room_id: str, user_id: str) -> tuple[str, dict[str, Any]]:
        """make_join, fill and sign the template, send_join: (join event ID, response)."""
        made = await self.make_join(room_id, user_id)
        template, version = made["event"], version_of(made)
        pdu = self.origin.remote.event(
            version, room_id=room_id, type=template["type"], sender=template["sender"],
            state_key=template["state_key"], content=template["content"],
            prev_events=template["prev_events"], auth_events=template["auth_events"],
            depth=template["depth"], ts=template["origin_server_ts"])
        event_id = compute_event_id(pdu, version)
        r = await self.request("PUT", f"/_matrix/federation/v2/send_join/{q(room_id)}/"
                               f"{q(event_id)}", body=pdu)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return event_id, body

    async def view_of(self, room_id: str, state: Mapping[tuple[str, str], str]) -> RoomView:
        """The room as the target has it now, enough to build an event on top of it.

        The forward extremities and depth come from a make_join template (for a probe user of
        the origin: any server may ask for one in a public room); `state` (type, state_key) ->
        event ID from the client API.
        """
        made = await self.make_join(room_id, f"@probe:{self.origin.name}")
        template = made["event"]
        return RoomView(room_id=room_id, room_version=version_of(made), state=dict(state),
                        state_group=0, extremities=list(template["prev_events"]),
                        depth=template["depth"] - 1,
                        create_event_id=state[("m.room.create", "")])


def version_of(made: Mapping[str, Any]) -> RoomVersion:
    version = get_room_version(made["room_version"])
    assert version is not None, made
    return version


def new_txn_id() -> str:
    return uuid.uuid4().hex
