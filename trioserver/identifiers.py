"""Grammar of Matrix identifiers (spec appendix "Identifier grammar")."""

from __future__ import annotations

import ipaddress
import re

_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# Historical user IDs may contain any printable ASCII except ':' (spec: "Historical user IDs").
_HISTORICAL_LOCALPART = re.compile(r"[!-9;-~]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9.\-]{1,255}")
_PORT = re.compile(r"[0-9]{1,5}")
_DEVICE_ID_MAX = 255
MAX_USER_ID_BYTES = 255


def is_valid_server_name(name: str) -> bool:
    """server_name = hostname [ ":" port ], hostname being a DNS name, IPv4 or [IPv6]."""
    port: str | None = None
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return False
        host, rest = name[1:end], name[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    else:
        host = name
        if ":" in name:
            host, port = name.rsplit(":", 1)
        if not _HOSTNAME.fullmatch(host):
            return False
    return port is None or is_valid_port(port)


def is_valid_port(port: str) -> bool:
    """1-65535 in ASCII digits (str.isdigit would also accept other scripts' digits)."""
    return bool(_PORT.fullmatch(port)) and 0 < int(port) < 65536


def is_valid_localpart(localpart: str) -> bool:
    """Whether a localpart is allowed for a *new* user on this server."""
    return bool(_LOCALPART.fullmatch(localpart))


def user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def split_user_id(uid: str) -> tuple[str, str] | None:
    """(localpart, server_name) of a syntactically valid user ID, else None."""
    if not uid.startswith("@") or ":" not in uid or len(uid.encode()) > MAX_USER_ID_BYTES:
        return None
    localpart, server_name = uid[1:].split(":", 1)
    if not localpart or not _HISTORICAL_LOCALPART.fullmatch(localpart):
        return None
    if not is_valid_server_name(server_name):
        return None
    return localpart, server_name


def is_local_user(user_id: str, server_name: str) -> bool:
    """Whether `user_id` is a valid user ID on the server called `server_name`."""
    parts = split_user_id(user_id)
    return parts is not None and parts[1] == server_name


def is_valid_device_id(device_id: str) -> bool:
    return 0 < len(device_id) <= _DEVICE_ID_MAX and device_id.isprintable()
