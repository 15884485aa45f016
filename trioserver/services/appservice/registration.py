"""Application-service registration files (spec: Application Service API, Registration).

A registration is a YAML file the server admin installs; it is parsed once at start-up into a
frozen `Registration`. Namespace regexes are compiled and anchored at the start of the ID only,
as Synapse matches them (so `@telegram_[0-9]+` claims `@telegram_42:hs`, and `@_irc_.*` never
matches `@x_irc_y:hs`); bridges that want an exact match write `^...$` themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trioserver.identifiers import is_valid_localpart

NAMESPACE_KINDS = ("users", "aliases", "rooms")
# Registration flag -> the transaction key its ephemeral list goes under (as Synapse sends:
# the stable flag gets "ephemeral", the MSC2409 one the unstable key, both flags both keys).
EPHEMERAL_KEYS = {"receive_ephemeral": "ephemeral",
                  "de.sorunome.msc2409.push_ephemeral": "de.sorunome.msc2409.ephemeral"}
MSC3202_KEY = "org.matrix.msc3202"


class RegistrationError(Exception):
    """A registration file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Namespace:
    exclusive: bool
    regex: re.Pattern[str]

    def matches(self, value: str) -> bool:
        return self.regex.match(value) is not None


@dataclass(frozen=True)
class Registration:
    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender_localpart: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    # The transaction keys the ephemeral list is sent under (see EPHEMERAL_KEYS).
    ephemeral_keys: tuple[str, ...] = ()
    # MSC3202 transaction extensions: device lists, one-time-key counts, unused fallback keys.
    msc3202: bool = False
    source: str = ""

    def sender(self, server_name: str) -> str:
        return f"@{self.sender_localpart}:{server_name}"

    def is_interested_in_user(self, user_id: str, server_name: str) -> bool:
        return user_id == self.sender(server_name) or any(n.matches(user_id) for n in self.users)

    def is_exclusive_user(self, user_id: str) -> bool:
        return any(n.exclusive and n.matches(user_id) for n in self.users)

    def is_interested_in_alias(self, alias: str) -> bool:
        return any(n.matches(alias) for n in self.aliases)

    def is_exclusive_alias(self, alias: str) -> bool:
        return any(n.exclusive and n.matches(alias) for n in self.aliases)

    def is_interested_in_room(self, room_id: str) -> bool:
        return any(n.matches(room_id) for n in self.rooms)


def _fail(source: str, field: str, problem: str) -> RegistrationError:
    return RegistrationError(f"{source}: {field}: {problem}")


def _req_str(data: dict[str, Any], field: str, source: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise _fail(source, field, "required, a non-empty string")
    return value


def _namespaces(raw: Any, kind: str, source: str) -> tuple[Namespace, ...]:
    where = f"namespaces.{kind}"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(source, where, "expected a list of {exclusive, regex}")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _fail(source, at, "expected a mapping with exclusive and regex")
        exclusive, regex = item.get("exclusive"), item.get("regex")
        if not isinstance(exclusive, bool):
            raise _fail(source, f"{at}.exclusive", "required, true or false")
        if not isinstance(regex, str) or not regex:
            raise _fail(source, f"{at}.regex", "required, a non-empty string")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise _fail(source, f"{at}.regex", f"invalid regular expression: {e}") from None
        out.append(Namespace(exclusive, compiled))
    return tuple(out)


def parse_registration(data: Any, source: str = "<registration>") -> Registration:
    """Validate one parsed YAML document into a `Registration`."""
    if not isinstance(data, dict):
        raise RegistrationError(f"{source}: expected a YAML mapping at the top level")
    if "url" not in data:
        raise _fail(source, "url", "required, an http(s) URL or null (no transactions)")
    url = data.get("url")
    if url is not None and (not isinstance(url, str)
                            or not url.startswith(("http://", "https://"))):
        raise _fail(source, "url", "expected an http(s) URL or null")
    sender = _req_str(data, "sender_localpart", source)
    if not is_valid_localpart(sender):
        raise _fail(source, "sender_localpart", f"{sender!r} is not a valid localpart")
    namespaces = data.get("namespaces")
    if not isinstance(namespaces, dict):  # required, as in the spec and Synapse (may be {})
        raise _fail(source, "namespaces", "required, a mapping of users, aliases, rooms")
    rate_limited = data.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise _fail(source, "rate_limited", "expected true or false")
    protocols = data.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        raise _fail(source, "protocols", "expected a list of strings")
    ephemeral_keys = []
    for flag, body_key in EPHEMERAL_KEYS.items():
        value = data.get(flag)
        if value is not None and not isinstance(value, bool):
            raise _fail(source, flag, "expected true or false")
        if value:
            ephemeral_keys.append(body_key)
    msc3202 = data.get(MSC3202_KEY, False)
    if not isinstance(msc3202, bool):
        raise _fail(source, MSC3202_KEY, "expected true or false")
    as_token = _req_str(data, "as_token", source)
    hs_token = _req_str(data, "hs_token", source)
    if as_token == hs_token:
        raise _fail(source, "hs_token", "must differ from as_token")
    as_id = _req_str(data, "id", source)
    if "|" in as_id:  # third-party instance IDs are "<id>|<network>"
        raise _fail(source, "id", "must not contain '|'")
    return Registration(
        id=as_id,
        url=url.rstrip("/") if url else None,
        as_token=as_token,
        hs_token=hs_token,
        sender_localpart=sender,
        users=_namespaces(namespaces.get("users"), "users", source),
        aliases=_namespaces(namespaces.get("aliases"), "aliases", source),
        rooms=_namespaces(namespaces.get("rooms"), "rooms", source),
        rate_limited=rate_limited,
        protocols=tuple(protocols),
        receive_ephemeral=bool(ephemeral_keys),
        ephemeral_keys=tuple(ephemeral_keys),
        msc3202=msc3202,
        source=source,
    )


def load_registration_file(path: Path) -> Registration:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistrationError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RegistrationError(f"{path}: not valid YAML: {e}") from None
    return parse_registration(data, str(path))


def load_registrations(paths: Iterable[str | Path]) -> list[Registration]:
    """Load every file; duplicate ids, as_tokens or hs_tokens are refused."""
    regs = [load_registration_file(Path(p)) for p in paths]
    check_unique(regs)
    return regs


def check_unique(regs: list[Registration]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for reg in regs:
        for field, value in (("id", reg.id), ("as_token", reg.as_token),
                             ("hs_token", reg.hs_token), ("sender_localpart",
                                                          reg.sender_localpart)):
            key = ("token" if field.endswith("token") else field, value)
            if key in seen:
                raise _fail(reg.source, field, f"already used by {seen[key]}")
            seen[key] = reg.source


def summary(reg: Registration) -> str:
    """The human-readable lines `trioserver check-appservice` prints."""
    def ns(kind: str, items: tuple[Namespace, ...]) -> str:
        shown = ", ".join(f"{n.regex.pattern}{' (exclusive)' if n.exclusive else ''}"
                          for n in items)
        return f"  {kind}: {shown or '-'}"

    return "\n".join([
        f"id: {reg.id}",
        f"  url: {reg.url or '(none: no transactions are pushed)'}",
        f"  sender: @{reg.sender_localpart}",
        ns("users", reg.users),
        ns("aliases", reg.aliases),
        ns("rooms", reg.rooms),
        f"  rate_limited: {str(reg.rate_limited).lower()}",
        f"  receive_ephemeral: {', '.join(reg.ephemeral_keys) or 'false'}",
        f"  org.matrix.msc3202: {str(reg.msc3202).lower()}",
        f"  protocols: {', '.join(reg.protocols) or '-'}",
    ])
