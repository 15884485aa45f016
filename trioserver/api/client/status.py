"""GET /_trioserver/status: a few live figures for operators (loopback clients only)."""

from __future__ import annotations

import ipaddress
import time

from quart import Blueprint, Response

from trioserver import __version__
from trioserver.api.http import client_ip, reply
from trioserver.errors import forbidden
from trioserver.services.container import Services

STARTED = time.monotonic()


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("status", __name__)

    @bp.route("/_trioserver/status", methods=["GET"])
    async def status() -> Response:
        """GET /_trioserver/status (not part of the Matrix spec)."""
        try:
            loopback = ipaddress.ip_address(client_ip()).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise forbidden("Only available from this machine")
        return reply({
            "version": __version__,
            "uptime_s": round(time.monotonic() - STARTED, 1),
            "long_polls_waiting": services.notifier.waiting_tasks(),
            "db_writes": services.db.writes,
            "db_commits": services.db.commits,
        })

    return bp
