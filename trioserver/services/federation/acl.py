"""Server ACLs (`m.room.server_acl`): which servers may take part in a room.

Per the spec: a server is denied if it is an IP literal and `allow_ip_literals` is false, if
it matches a `deny` glob, or if it matches no `allow` glob (no `allow` list allows nobody).
Globs use `*` and `?`, compared case-insensitively on the server name without its port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _host(server_name: str) -> str:
    if server_name.startswith("["):
        return server_name[1:].split("]", 1)[0]
    host, _, port = server_name.rpartition(":")
    return host if host and port.isdigit() else server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def server_allowed(acl: Mapping[str, Any] | None, server_name: str) -> bool:
    if acl is None:
        return True
    host = _host(server_name)
    if acl.get("allow_ip_literals", True) is False and _is_ip_literal(host):
        return False
    deny = [p for p in acl.get("deny", []) or [] if isinstance(p, str)]
    if any(_glob(p).fullmatch(host) for p in deny):
        return False
    allow = [p for p in acl.get("allow", []) or [] if isinstance(p, str)]
    return any(_glob(p).fullmatch(host) for p in allow)
