"""The presence keep-alive to other servers: our users who are not offline have their presence
sent again once PRESENCE_PING_INTERVAL_S passed since it was last sent (other servers time a
remote user out after 30 minutes without news), changed or not; offline users and other
servers' users never."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from trioserver.services.federation.ephemeral import EphemeralFederation
from trioserver.services.presence import UserPresence

INTERVAL = 100.0


class _Listeners:
    def add_listener(self, _listener: Callable[..., Any]) -> None:
        pass


class _Presence(_Listeners):
    def __init__(self) -> None:
        self.users: dict[str, UserPresence] = {}

    def not_offline(self) -> list[tuple[str, UserPresence]]:
        return [(u, p) for u, p in self.users.items() if p.state != "offline"]


def _presence(state: str) -> UserPresence:
    return UserPresence(state, None, 0, 0, state == "online")


def _federation(presence: _Presence, now: list[float]
                ) -> tuple[EphemeralFederation, list[str]]:
    fed = EphemeralFederation(
        "ours.example", None, None, lambda *_: None,  # type: ignore[arg-type]
        typing=_Listeners(), receipts=_Listeners(),  # type: ignore[arg-type]
        presence=presence, origin_allowed=None,  # type: ignore[arg-type]
        clock=lambda: now[0], presence_ping_interval_s=INTERVAL)
    sent: list[str] = []

    async def record(user_id: str, _p: UserPresence) -> None:
        sent.append(user_id)

    fed._presence_out = record  # type: ignore[method-assign,assignment]
    return fed, sent


async def _run_queued(fed: EphemeralFederation) -> None:
    while True:
        try:
            job = fed._jobs.receive_nowait()
        except trio.WouldBlock:
            return
        await job()


async def test_our_online_users_are_sent_again_after_the_interval() -> None:
    presence = _Presence()
    presence.users = {"@on:ours.example": _presence("online"),
                      "@away:ours.example": _presence("unavailable"),
                      "@off:ours.example": _presence("offline"),
                      "@remote:other.example": _presence("online")}
    now = [1000.0]
    fed, sent = _federation(presence, now)
    # Never sent since start-up: due at the first round.
    assert fed.ping_presence() == 2
    await _run_queued(fed)
    assert sorted(sent) == ["@away:ours.example", "@on:ours.example"]
    sent.clear()
    # Within the interval nothing is re-sent; a change sent meanwhile restarts the clock.
    now[0] += INTERVAL / 2
    assert fed.ping_presence() == 0
    fed.presence_changed("@on:ours.example", presence.users["@on:ours.example"])
    await _run_queued(fed)
    assert sent == ["@on:ours.example"]
    sent.clear()
    now[0] += INTERVAL / 2
    assert fed.ping_presence() == 1  # @away is due, @on was sent half an interval ago
    await _run_queued(fed)
    assert sent == ["@away:ours.example"]
    sent.clear()
    # A user going offline is no longer pinged.
    presence.users["@away:ours.example"] = _presence("offline")
    now[0] += INTERVAL
    assert fed.ping_presence() == 1
    await _run_queued(fed)
    assert sent == ["@on:ours.example"]
