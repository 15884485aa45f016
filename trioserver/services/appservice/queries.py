"""Asking application services about users and aliases they may create on demand.

Spec "Application Service API": Querying. GET /_matrix/app/v1/users/{userId} and
GET /_matrix/app/v1/rooms/{roomAlias}, with `Authorization: Bearer <hs_token>`; a 200 means the
appservice has now created the user or the room, anything else means it has not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import quote

import httpx
import trio

from trioserver.services.appservice.registration import Registration
from trioserver.services.appservice.registry import AppServices

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 10.0


async def _ask(reg: Registration, path: str,
               transport: httpx.AsyncBaseTransport | None) -> bool:
    assert reg.url
    url = f"{reg.url.rstrip('/')}{path}"
    try:
        with trio.fail_after(QUERY_TIMEOUT_S + 1):
            async with httpx.AsyncClient(timeout=QUERY_TIMEOUT_S, transport=transport,
                                         follow_redirects=False) as client:
                response = await client.get(
                    url, headers={"Authorization": f"Bearer {reg.hs_token}"})
    except (httpx.HTTPError, trio.TooSlowError) as e:
        log.info("appservice %s query %s failed: %s", reg.id, path, e)
        return False
    return response.status_code == 200


async def ask_user(reg: Registration, user_id: str,
                   transport: httpx.AsyncBaseTransport | None = None) -> bool:
    """Ask one appservice about one user; True when it answered 200 (it created the user)."""
    if not reg.url:
        return False
    return await _ask(reg, f"/_matrix/app/v1/users/{quote(user_id, safe='')}", transport)


def _with_url(regs: Sequence[Registration]) -> list[Registration]:
    return [r for r in regs if r.url]


async def query_alias(appservices: AppServices, alias: str, *,
                      transport: httpx.AsyncBaseTransport | None = None) -> bool:
    """Whether an appservice whose namespace holds `alias` says it has created the room (the
    caller then looks the alias up again)."""
    for reg in _with_url(appservices.interested_in_room_alias(alias)):
        if await _ask(reg, f"/_matrix/app/v1/rooms/{quote(alias, safe='')}", transport):
            return True
    return False
