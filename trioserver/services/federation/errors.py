"""The failures of talking to other servers, drawn in one place:

    FederationError                 base; never reaches a client as such
    ├── FederationAuthError         a request or object is not validly signed by its origin
    │                               (missing or malformed X-Matrix header, wrong destination,
    │                               unknown key, bad signature); the HTTP edge answers
    │                               401 M_UNAUTHORIZED
    ├── FederationRequestError      the remote server answered, but not with 2xx JSON:
    │                               carries its status, errcode and message
    └── FederationUnreachable       no answer: DNS, connect, TLS, timeout, or a destination
        └── DestinationRefused      that resolves only to addresses we refuse to contact
                                    (private, loopback, link-local ... unless allowed)

`KeyResponseError` is a `FederationError` too: a /_matrix/key/v2 response that fails its checks.
"""

from __future__ import annotations


class FederationError(Exception):
    """Base of every federation failure."""


class FederationAuthError(FederationError):
    """A signature (X-Matrix header or signed JSON) did not verify; the message says why."""


class FederationRequestError(FederationError):
    """The destination answered with a non-2xx status (or a 2xx that is not JSON)."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message


class FederationUnreachable(FederationError):
    """The destination could not be reached (resolution, connection, TLS or timeout)."""


class DestinationRefused(FederationUnreachable):
    """The destination resolves only to addresses this server refuses to contact."""


class KeyResponseError(FederationError):
    """A server key response is malformed, for the wrong server, or not validly self-signed."""
