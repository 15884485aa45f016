"""Outbound federation requests: resolve, sign, send over HTTPS, decode JSON.

Every request carries an X-Matrix signature (request_auth.sign_request) over the request
target exactly as sent. The destination is resolved by discovery.ServerResolver; the
well-known lookups it needs go through this client's transport too, so the same address
policy and certificate checks apply to them. Timeouts are `trio.fail_after` around the whole
exchange. Failures are FederationRequestError (the server answered non-2xx) or
FederationUnreachable (it did not answer); see errors.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import trio

from trioserver import __version__
from trioserver.services.events.signing import SigningKey
from trioserver.services.federation.discovery import (
    AddressPolicy,
    DnsLookup,
    ResolvedServer,
    ServerResolver,
    WellKnownReply,
)
from trioserver.services.federation.dns_lookup import SystemDns
from trioserver.services.federation.errors import (
    FederationRequestError,
    FederationUnreachable,
)
from trioserver.services.federation.request_auth import sign_request
from trioserver.services.federation.transport import (
    PinnedNetworkBackend,
    PinnedTransport,
    federation_ssl_context,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
WELL_KNOWN_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 100 * 1024 * 1024
MAX_WELL_KNOWN_BYTES = 64 * 1024
MAX_REDIRECTS = 5
USER_AGENT = f"trioserver/{__version__}"

Query = Mapping[str, str | Sequence[str]]


class FederationClient:
    """Signed JSON requests to other homeservers."""

    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        ca_file: str = "",
        insecure_skip_verify: bool = False,
        allowed_private_networks: Sequence[str] = (),
        enabled: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        dns: DnsLookup | None = None,
    ) -> None:
        self.server_name = server_name
        self._key = signing_key
        self._enabled = enabled
        self._timeout_s = timeout_s
        self._backend = PinnedNetworkBackend()
        self._http = httpx.AsyncClient(
            transport=PinnedTransport(
                federation_ssl_context(ca_file=ca_file, insecure_skip_verify=insecure_skip_verify),
                self._backend),
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self.resolver = ServerResolver(dns or SystemDns(), self._fetch_well_known,
                                       AddressPolicy(allowed_private_networks))

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send a signed request and return the decoded JSON response.

        `path` starts with /_matrix and is already percent-encoded (quote each identifier
        with `urllib.parse.quote(x, safe="")`); `query` values are encoded here; `body` is
        sent as JSON. Raises FederationRequestError or FederationUnreachable.
        """
        if not self._enabled:
            raise FederationUnreachable("federation is disabled on this server")
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        try:
            with trio.fail_after(timeout_s or self._timeout_s):
                target = await self.resolver.resolve(destination)
                return await self._send(method, destination, target, path, query, body)
        except trio.TooSlowError:
            raise FederationUnreachable(f"{method} {destination}{path}: timed out") from None

    async def get_json(self, destination: str, path: str, *, query: Query | None = None,
                       timeout_s: float | None = None) -> Any:
        return await self.request("GET", destination, path, query=query, timeout_s=timeout_s)

    async def put_json(self, destination: str, path: str, body: Any, *,
                       query: Query | None = None, timeout_s: float | None = None) -> Any:
        return await self.request("PUT", destination, path, query=query, body=body,
                                  timeout_s=timeout_s)

    async def post_json(self, destination: str, path: str, body: Any, *,
                        query: Query | None = None, timeout_s: float | None = None) -> Any:
        return await self.request("POST", destination, path, query=query, body=body,
                                  timeout_s=timeout_s)

    @asynccontextmanager
    async def stream(self, destination: str, path: str, *, query: Query | None = None,
                     sign: bool = True) -> AsyncIterator[httpx.Response]:
        """GET `path` on `destination` and yield the response with its body unread.

        For bodies that are not JSON (media). The caller reads `aiter_bytes()` inside the
        block, under its own size limit and deadline; the resolution and the headers are
        bounded by this client's timeout. `sign=False` leaves out the X-Matrix header (the
        deprecated unauthenticated media endpoints).
        """
        if not self._enabled:
            raise FederationUnreachable("federation is disabled on this server")
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        try:
            with trio.fail_after(self._timeout_s):
                target = await self.resolver.resolve(destination)
                self._backend.pin(target.url_host, target.port, target.addresses)
                suffix = f"?{urlencode(query, doseq=True)}" if query else ""
                url = httpx.URL(f"https://{target.url_host}:{target.port}{path}{suffix}")
                headers = {"Host": target.host_header}
                if sign:
                    headers["Authorization"] = sign_request(
                        "GET", url.raw_path.decode("ascii"), self.server_name, destination,
                        None, self._key)
                response = await self._http.send(
                    self._http.build_request("GET", url, headers=headers), stream=True)
        except trio.TooSlowError:
            raise FederationUnreachable(f"GET {destination}{path}: timed out") from None
        except httpx.HTTPError as e:
            raise FederationUnreachable(f"GET {destination}{path}: {_describe(e)}") from None
        try:
            yield response
        except httpx.HTTPError as e:
            raise FederationUnreachable(f"GET {destination}{path}: {_describe(e)}") from None
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()

    async def _send(self, method: str, destination: str, target: ResolvedServer, path: str,
                    query: Query | None, body: Any | None) -> Any:
        self._backend.pin(target.url_host, target.port, target.addresses)
        suffix = f"?{urlencode(query, doseq=True)}" if query else ""
        url = httpx.URL(f"https://{target.url_host}:{target.port}{path}{suffix}")
        # What is signed is the request target as it goes on the wire.
        uri = url.raw_path.decode("ascii")
        content = None if body is None else json.dumps(body, ensure_ascii=False,
                                                       separators=(",", ":")).encode()
        headers = {
            "Host": target.host_header,
            "Authorization": sign_request(method, uri, self.server_name, destination, body,
                                          self._key),
        }
        if content is not None:
            headers["Content-Type"] = "application/json"
        request = self._http.build_request(method, url, headers=headers, content=content)
        try:
            response = await self._http.send(request, stream=True)
            try:
                data = await _read_limited(response, MAX_RESPONSE_BYTES)
            finally:
                await response.aclose()
        except httpx.HTTPError as e:
            raise FederationUnreachable(f"{method} {destination}{path}: {_describe(e)}") from None
        return _decode(response.status_code, data, f"{method} {destination}{path}")

    # -- well-known (used by discovery) ------------------------------------------------------------

    async def _fetch_well_known(self, hostname: str) -> WellKnownReply:
        """GET https://<hostname>/.well-known/matrix/server, following https redirects."""
        url = f"https://{hostname}/.well-known/matrix/server"
        with trio.move_on_after(WELL_KNOWN_TIMEOUT_S):
            for _ in range(MAX_REDIRECTS + 1):
                parts = urlsplit(url)
                host, port = parts.hostname, parts.port or 443
                if parts.scheme != "https" or not host:
                    raise FederationUnreachable(f"well-known of {hostname}: redirect to {url}")
                self._backend.pin(host, port, await self.resolver.checked_addresses(host))
                try:
                    response = await self._http.send(self._http.build_request("GET", url),
                                                     stream=True)
                    try:
                        body = await _read_limited(response, MAX_WELL_KNOWN_BYTES)
                    except FederationRequestError:  # too large: an invalid answer
                        body = b""
                    finally:
                        await response.aclose()
                except httpx.HTTPError as e:
                    raise FederationUnreachable(
                        f"well-known of {hostname}: {_describe(e)}") from None
                if response.is_redirect and "location" in response.headers:
                    url = str(response.url.join(response.headers["location"]))
                    continue
                return WellKnownReply(response.status_code, body,
                                      response.headers.get("cache-control"))
            raise FederationUnreachable(f"well-known of {hostname}: too many redirects")
        raise FederationUnreachable(f"well-known of {hostname}: timed out")


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise FederationRequestError(response.status_code, "M_TOO_LARGE",
                                         f"response larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(status: int, data: bytes, what: str) -> Any:
    try:
        value = json.loads(data) if data else None
    except (ValueError, RecursionError):
        value = None
    if 200 <= status < 300:
        if value is None:
            raise FederationRequestError(status, "M_NOT_JSON", f"{what}: response is not JSON")
        return value
    errcode, message = "M_UNKNOWN", f"{what}: HTTP {status}"
    if isinstance(value, dict):
        if isinstance(value.get("errcode"), str):
            errcode = value["errcode"]
        if isinstance(value.get("error"), str):
            message = value["error"]
    raise FederationRequestError(status, errcode, message)


def _describe(e: httpx.HTTPError) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 300 else text[:300] + "..."


async def raise_for_error(response: httpx.Response, what: str) -> None:
    """FederationRequestError for a streamed non-2xx response, carrying its errcode."""
    if 200 <= response.status_code < 300:
        return
    try:
        data = await _read_limited(response, MAX_WELL_KNOWN_BYTES)
    except FederationRequestError:
        data = b""
    _decode(response.status_code, data, what)
