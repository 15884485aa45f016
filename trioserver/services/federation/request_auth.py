"""Signed federation requests: the `Authorization: X-Matrix ...` header.

Spec: Server-Server API, "Authentication" / "Request Authentication". The sender signs
`{"method", "uri", "origin", "destination", "content"}` with the JSON signing algorithm and puts
the signature in the header; the receiver rebuilds that object from what it received (the
method, the request target exactly as sent, its own server name, the parsed body) and checks
the signature with the origin's key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trioserver.identifiers import is_valid_server_name
from trioserver.services.events.signing import SigningKey, sign_json, verify_json_signature
from trioserver.services.federation.errors import FederationAuthError, FederationError

if TYPE_CHECKING:
    from trioserver.services.federation.keys import KeyRing

SCHEME = "x-matrix"
# RFC 9110 token characters (parameter names and unquoted values).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# A parameter: name "=" (quoted-string | unquoted value). Unquoted values may also hold ':'
# (older servers send keys such as ed25519:abc unquoted), so anything but separators is taken.
_PARAM = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]+))[ \t]*(?:,|$)'
)
_UNESCAPE = re.compile(r"\\(.)")
MAX_HEADER_LENGTH = 8192


@dataclass(frozen=True)
class XMatrix:
    """The parameters of one X-Matrix Authorization header."""

    origin: str
    key: str
    sig: str
    # Absent in requests from servers older than spec v1.3.
    destination: str | None = None


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any | None
) -> dict[str, Any]:
    """The object whose signature authenticates a request (step 1 of the spec)."""
    obj: dict[str, Any] = {"method": method, "uri": uri, "origin": origin,
                           "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    method: str, uri: str, origin: str, destination: str, content: Any | None, key: SigningKey
) -> str:
    """The `Authorization` header value for a request from `origin` to `destination`.

    `uri` is the request target as sent: the path starting with /_matrix, with `?` and the
    query string if any. `content` is the JSON body (already parsed), or None for no body.
    """
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, key)
    sig = signed["signatures"][origin][key.key_id]
    # Quoted, lower-case names, no spaces around commas: what older servers parse.
    return (f'X-Matrix origin="{origin}",destination="{destination}",key="{key.key_id}",'
            f'sig="{sig}"')


def parse_x_matrix(header: str) -> XMatrix:
    """Parse one `X-Matrix` Authorization header value; FederationAuthError if malformed.

    Tolerant as the spec asks: the scheme and parameter names in any case, values quoted
    (with backslash escapes) or not, spaces and tabs around commas, parameters in any order,
    unknown parameters ignored. A repeated parameter is refused (which one would be meant?).
    """
    if len(header) > MAX_HEADER_LENGTH:
        raise FederationAuthError("X-Matrix header too long")
    scheme, sep, rest = header.strip().partition(" ")
    if scheme.lower() != SCHEME or not sep:
        raise FederationAuthError("Authorization header is not of the X-Matrix scheme")
    rest = rest.strip()
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            raise FederationAuthError("malformed X-Matrix header")
        name = m.group(1).lower()
        value = _UNESCAPE.sub(r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        if name in params:
            raise FederationAuthError(f"X-Matrix parameter {name!r} given twice")
        params[name] = value
        pos = m.end()
    missing = [n for n in ("origin", "key", "sig") if not params.get(n)]
    if missing:
        raise FederationAuthError(f"X-Matrix header lacks {', '.join(missing)}")
    origin, destination = params["origin"], params.get("destination")
    if not is_valid_server_name(origin):
        raise FederationAuthError("X-Matrix origin is not a valid server name")
    if destination is not None and not is_valid_server_name(destination):
        raise FederationAuthError("X-Matrix destination is not a valid server name")
    return XMatrix(origin=origin, key=params["key"], sig=params["sig"], destination=destination)


def _authorization_values(headers: Iterable[tuple[str, str]]) -> list[str]:
    return [value for name, value in headers if name.lower() == "authorization"]


def _parse_content(content: bytes | None) -> Any | None:
    if content is None or not content.strip():
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        raise FederationAuthError("request body is not JSON") from None


async def verify_request(
    keyring: KeyRing,
    *,
    method: str,
    uri: str,
    headers: Iterable[tuple[str, str]],
    content: bytes | None,
    our_server_name: str,
) -> str:
    """Check a received request's X-Matrix signature; return the origin server name.

    `uri` is the request target as received (raw path and query string), `headers` every
    (name, value) pair (several Authorization headers may be sent: any valid one suffices),
    `content` the raw body (None or empty for none). The signed object always names this
    server as destination, as in every version of the spec. Raises FederationAuthError.
    """
    values = [v for v in _authorization_values(headers)
              if v.strip().lower().startswith(SCHEME + " ")]
    if not values:
        raise FederationAuthError("missing X-Matrix Authorization header")
    body = _parse_content(content)
    failure = "no valid X-Matrix signature"
    for value in values:
        try:
            auth = parse_x_matrix(value)
            if auth.destination is not None and auth.destination != our_server_name:
                raise FederationAuthError(
                    f"request is for {auth.destination}, not this server ({our_server_name})")
            obj = request_json(method, uri, auth.origin, our_server_name, body)
            obj["signatures"] = {auth.origin: {auth.key: auth.sig}}
            keys = await keyring.verify_keys(auth.origin, [auth.key],
                                             minimum_valid_until_ts=keyring.now_ms())
            verify_key = keys.get(auth.key)
            if verify_key is None:
                raise FederationAuthError(f"unknown key {auth.key} of {auth.origin}")
            if not verify_json_signature(obj, auth.origin, auth.key, verify_key):
                raise FederationAuthError(f"bad X-Matrix signature from {auth.origin}")
        except FederationAuthError as e:
            failure = str(e)
            continue
        except FederationError as e:  # the keys could not be fetched
            failure = f"cannot check the signature: {e}"
            continue
        return auth.origin
    raise FederationAuthError(failure)
