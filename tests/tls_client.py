"""A blocking TLS client on pyOpenSSL that offers exactly the key agreement groups it is given."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from OpenSSL import SSL
from OpenSSL._util import lib as openssl_lib


@dataclass(frozen=True)
class TLSResult:
    group: str | None
    version: str
    alpn: str | None
    response: bytes
    peer_sha256: str = ""  # the server certificate's SHA-256 fingerprint (hex)


def tls_request(host: str, port: int, groups: str, request: bytes, *,
                alpn: tuple[bytes, ...] = (b"http/1.1",), max_version: int | None = None,
                timeout: float = 10.0) -> TLSResult:
    """Connect offering only `groups` (e.g. "X25519MLKEM768"), send `request`, read to EOF.

    Raises SSL.Error when the server refuses the handshake.
    """
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    assert openssl_lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode())
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    sock = socket.create_connection((host, port), timeout=timeout)
    # pyOpenSSL wants a blocking socket; a receive timeout still bounds a silent server.
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(timeout), 0))
    try:
        conn = SSL.Connection(ctx, sock)
        conn.set_connect_state()
        conn.set_tlsext_host_name(b"localhost")
        conn.set_alpn_protos(list(alpn))
        conn.do_handshake()
        conn.sendall(request)
        data = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                break
            if not chunk:
                break
            data += chunk
        proto = conn.get_alpn_proto_negotiated()
        peer = conn.get_peer_certificate()
        fingerprint = peer.digest("sha256").decode() if peer is not None else ""
        return TLSResult(conn.get_group_name(), conn.get_protocol_version_name(),
                         proto.decode() if proto else None, data, fingerprint)
    finally:
        sock.close()


def http_get(path: str, headers: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
            .encode())
