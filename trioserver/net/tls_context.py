"""The TLS front's settings: TLS 1.3 with the hybrid X25519MLKEM768 key agreement first.

Python's `ssl` module is linked against the system OpenSSL, which is often older than 3.5 and
knows no ML-KEM. pyOpenSSL runs on the OpenSSL that the `cryptography` wheel bundles (3.5 or
newer), which does, so the TLS front uses it; the plain listener is unaffected.

Group preference is the server's: a client that supports X25519MLKEM768 gets it even if it
prefers X25519 or sent only an X25519 key share. With `pq_only`, only ML-KEM hybrids are
configured, so a classical client's handshake fails with a `handshake_failure` alert instead of
connecting.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from OpenSSL import SSL
from OpenSSL._util import lib as _openssl_lib

# Hybrid post-quantum groups, most preferred first (names as OpenSSL >= 3.5 spells them).
PQ_GROUPS = ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024")
CLASSICAL_GROUPS = ("X25519", "secp256r1", "secp384r1")
# TLS 1.2 fallback: forward-secret AEAD suites only.
TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


class TLSSetupError(Exception):
    """The TLS listener cannot start; the message says which file or setting and why."""


def openssl_version() -> str:
    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()


def _set_groups(ctx: SSL.Context, spec: str) -> bool:
    # pyOpenSSL has no wrapper for SSL_CTX_set1_groups_list; the curves spelling of the same
    # OpenSSL call is in cryptography's bindings and takes any group name.
    return bool(_openssl_lib.SSL_CTX_set1_curves_list(ctx._context, spec.encode()))


def supported_groups(candidates: Sequence[str]) -> list[str]:
    """The groups of `candidates` this OpenSSL build can negotiate."""
    probe = SSL.Context(SSL.TLS_SERVER_METHOD)
    return [g for g in candidates if _set_groups(probe, g)]


def server_groups(*, pq_only: bool) -> list[str]:
    pq = supported_groups(PQ_GROUPS)
    if "X25519MLKEM768" not in pq:
        raise TLSSetupError(
            f"this build's OpenSSL ({openssl_version()}) cannot do X25519MLKEM768; "
            "the TLS front needs the OpenSSL >= 3.5 bundled with cryptography >= 45")
    return pq if pq_only else pq + supported_groups(CLASSICAL_GROUPS)


def groups_spec(*, pq_only: bool) -> str:
    """OpenSSL's group list: the hybrids form the first preference tuple ('/' separates
    tuples), so a client that supports one but sent only a classical key share is asked for the
    hybrid share (one HelloRetryRequest) rather than settling for a classical group."""
    groups = server_groups(pq_only=pq_only)
    pq = [g for g in groups if "MLKEM" in g]
    classical = [g for g in groups if "MLKEM" not in g]
    return " / ".join(":".join(t) for t in (pq, classical) if t)


def _check_certificate(cert: Path) -> None:
    try:
        data = cert.read_bytes()
    except OSError as e:
        raise TLSSetupError(f"tls.cert: cannot read {cert}: {e.strerror or e}") from None
    try:
        leaf = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TLSSetupError(f"tls.cert: {cert} is not a PEM certificate") from None
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise TLSSetupError(
            f"tls.cert: {cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if leaf.not_valid_before_utc > now:
        raise TLSSetupError(
            f"tls.cert: {cert} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d} UTC")


def _select_alpn(offered: list[bytes], ours: tuple[bytes, ...]) -> bytes:
    for proto in ours:
        if proto in offered:
            return proto
    # No protocol in common: carry on without ALPN (HTTP/1.1), as most servers do.
    return b""


def build_server_context(
    cert: Path, key: Path, *, pq_only: bool = False, http2: bool = True
) -> SSL.Context:
    """A server context for the TLS front, or TLSSetupError naming what is wrong."""
    _check_certificate(cert)
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    # ML-KEM hybrids exist only in TLS 1.3; a post-quantum-only listener refuses 1.2 outright.
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION if pq_only else SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                    | SSL.OP_NO_RENEGOTIATION)
    ctx.set_cipher_list(TLS12_CIPHERS)
    if not _set_groups(ctx, groups_spec(pq_only=pq_only)):
        raise TLSSetupError("tls: OpenSSL refused the key agreement group list")
    try:
        ctx.use_certificate_chain_file(str(cert))
    except SSL.Error as e:
        raise TLSSetupError(f"tls.cert: {cert} cannot be used: {_reason(e)}") from None
    if not key.is_file():
        raise TLSSetupError(f"tls.key: cannot read {key}: no such file")
    try:
        ctx.use_privatekey_file(str(key))
    except SSL.Error as e:
        reason = _reason(e)
        if "mismatch" in reason:
            raise TLSSetupError(f"tls.key: {key} does not match the certificate {cert}") from None
        raise TLSSetupError(f"tls.key: {key} cannot be used: {reason}") from None
    try:
        ctx.check_privatekey()
    except SSL.Error:
        raise TLSSetupError(f"tls.key: {key} does not match the certificate {cert}") from None
    protocols = (b"h2", b"http/1.1") if http2 else (b"http/1.1",)
    ctx.set_alpn_select_callback(lambda _conn, offered: _select_alpn(offered, protocols))
    return ctx


def _reason(e: SSL.Error) -> str:
    details = e.args[0] if e.args and isinstance(e.args[0], list) else []
    reasons = [str(d[2]) for d in details if isinstance(d, tuple) and len(d) == 3]
    return "; ".join(reasons) or "unreadable or not PEM"
