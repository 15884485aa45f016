"""GET /health: liveness for load balancers and systemd-style probes (as Synapse answers it)."""

from __future__ import annotations

from quart import Blueprint, Response

from trioserver.services.container import Services


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.route("/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        """GET /health — "OK" while the database writer runs and a read succeeds, else 503."""
        ok = await services.db.healthy()
        return Response("OK" if ok else "unavailable", status=200 if ok else 503,
                        content_type="text/plain; charset=utf-8")

    return bp
