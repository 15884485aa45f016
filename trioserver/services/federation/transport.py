"""The HTTPS transport under the federation client: connect only where discovery said.

Request URLs name the host the certificate must be valid for (the `tls_name` of discovery, or
an IP literal), so SNI, certificate checks and connection pooling are all per that name; the
network backend connects to the addresses discovery resolved and checked for that name and
port ("pins"), never resolving anything itself. A name nobody pinned cannot be connected to,
so no request can reach an address that the address policy has not seen, whatever the DNS
says between the check and the connect.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import Iterable

import certifi
import httpcore
import httpx

MAX_PINS = 10_000
MAX_CONNECTIONS = 200
MAX_KEEPALIVE_CONNECTIONS = 50
KEEPALIVE_EXPIRY_S = 60.0


def federation_ssl_context(*, ca_file: str = "", insecure_skip_verify: bool = False
                           ) -> ssl.SSLContext:
    """Certificate checks on: the system's CAs, or only those in `ca_file` when given.

    `insecure_skip_verify` turns checking off entirely (tests, closed networks).
    """
    context = ssl.create_default_context(cafile=ca_file or None)
    if not ca_file and context.cert_store_stats()["x509_ca"] == 0:
        # A system without a CA bundle where OpenSSL looks (a one-file binary on an unusual
        # distribution): fall back to Mozilla's list as shipped with certifi.
        context.load_verify_locations(certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects (host, port) to the addresses pinned for it, trying each in turn."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.TrioBackend()
        self._pins: OrderedDict[tuple[str, int], tuple[str, ...]] = OrderedDict()

    def pin(self, host: str, port: int, addresses: Iterable[str]) -> None:
        key = (host.lower().strip("[]"), port)
        self._pins.pop(key, None)
        self._pins[key] = tuple(addresses)
        while len(self._pins) > MAX_PINS:
            self._pins.popitem(last=False)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get((host.lower().strip("[]"), port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not resolved by server discovery")
        failure: Exception = httpcore.ConnectError(f"no address for {host}:{port}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("federation never uses Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on a PinnedNetworkBackend (HTTP/1.1)."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: PinnedNetworkBackend) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend: give it a pool built like its own, on ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
            http1=True,
            http2=False,
            network_backend=backend,
        )
