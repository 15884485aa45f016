"""The loaded application services: lookups by token and id, namespace questions.

Built once at start-up from the configured registration files and never changed while the
server runs, so lookups are plain dict reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from trioserver.services.appservice.registration import Registration, check_unique


class AppServices:
    def __init__(self, server_name: str, registrations: Iterable[Registration] = ()) -> None:
        self.server_name = server_name
        self._all = tuple(registrations)
        check_unique(list(self._all))
        self._by_token = {r.as_token: r for r in self._all}
        self._by_id = {r.id: r for r in self._all}

    def all(self) -> tuple[Registration, ...]:
        return self._all

    def __bool__(self) -> bool:
        return bool(self._all)

    def by_token(self, token: str) -> Registration | None:
        reg = self._by_token.get(token)
        # The dict lookup already found it; compare_digest keeps the final check constant-time.
        if reg is not None and secrets.compare_digest(reg.as_token, token):
            return reg
        return None

    def by_id(self, appservice_id: str) -> Registration | None:
        return self._by_id.get(appservice_id)

    def with_protocol(self, protocol: str) -> list[Registration]:
        """The appservices whose registration lists the third-party protocol."""
        return [r for r in self._all if protocol in r.protocols]

    def sender_of(self, reg: Registration) -> str:
        return reg.sender(self.server_name)

    def interested_in_user(self, user_id: str) -> list[Registration]:
        return [r for r in self._all if r.is_interested_in_user(user_id, self.server_name)]

    def interested_in_room_alias(self, alias: str) -> list[Registration]:
        return [r for r in self._all if r.is_interested_in_alias(alias)]

    def is_exclusive_user(self, user_id: str, *, except_for: Registration | None = None) -> bool:
        """Whether some appservice (other than `except_for`) claims the user exclusively."""
        return any(r.is_exclusive_user(user_id) for r in self._all if r is not except_for)

    def is_exclusive_alias(self, alias: str, *, except_for: Registration | None = None) -> bool:
        return any(r.is_exclusive_alias(alias) for r in self._all if r is not except_for)

    def exempt_from_rate_limits(self, appservice_id: str | None, user_id: str) -> bool:
        """Spec `rate_limited`: whether requests from masqueraded users are rate-limited; the
        sender is always excluded."""
        reg = self._by_id.get(appservice_id) if appservice_id else None
        return reg is not None and (not reg.rate_limited or user_id == self.sender_of(reg))

    def alias_namespaces(self, alias: str, appservice_id: str | None) -> tuple[bool, bool]:
        """(another appservice holds `alias` exclusively, the requester's appservice - if it is
        one - has it in its namespace)."""
        own = self._by_id.get(appservice_id) if appservice_id else None
        return (self.is_exclusive_alias(alias, except_for=own),
                own is not None and own.is_interested_in_alias(alias))
