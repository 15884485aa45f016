"""SIGHUP loads the TLS certificate and key again, so a renewed certificate (Let's Encrypt
renews every 60-90 days) needs no restart: `systemctl reload trioserver` or `kill -HUP`.

New connections get the new context; open ones keep theirs. A file that does not load (a
renewal half-written, a key that does not match) is logged and the certificate in use is kept.
Without a TLS listener, SIGHUP is logged and otherwise ignored (it never stops the server).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:  # pyOpenSSL is imported only when TLS is configured (start-up time)
    from OpenSSL import SSL

log = logging.getLogger(__name__)


class HasContext(Protocol):
    context: SSL.Context


def reload_context(listeners: Sequence[Any], build: Callable[[], SSL.Context] | None) -> bool:
    """Build a new context and hand it to every TLS listener; False (old one kept) on error."""
    if build is None or not listeners:
        log.info("SIGHUP: no TLS listener, nothing to reload")
        return False
    from trioserver.net.tls_context import TLSSetupError

    try:
        context = build()
    except TLSSetupError as e:
        log.error("SIGHUP: %s; keeping the certificate in use", e)
        return False
    for listener in listeners:
        listener.context = context  # each a TLSListener (HasContext)
    log.info("SIGHUP: TLS certificate and key reloaded")
    return True


async def reload_on_sighup(listeners: Sequence[Any],
                           build: Callable[[], SSL.Context] | None, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            # Reading two small files and checking them: quick enough for the event loop.
            reload_context(listeners, build)
