"""The one error handler: MatrixError JSON, HTTP errors mapped, unexpected errors -> 500."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from trioserver.app import create_app
from trioserver.config import Config
from trioserver.errors import MatrixError
from trioserver.services.container import build_services
from trioserver.services.events.signing import load_or_create_signing_key
from trioserver.storage.db import Database
from trioserver.storage.ttl_store import TTLStore


@pytest.fixture
def app(tmp_path: Path):
    config = Config(data_dir=tmp_path)
    db = Database.open(config.database_path, readers=1)
    key = load_or_create_signing_key(tmp_path / "signing.key")
    application = create_app(build_services(config, db, TTLStore(), key))

    @application.route("/_test/boom")
    async def boom() -> str:
        raise RuntimeError("kaboom: secret-token-value")

    @application.route("/_test/matrix")
    async def matrix_error() -> str:
        raise MatrixError(418, "M_TEAPOT", "short and stout", extra_field=1)

    yield application
    db.close()


async def test_unexpected_exception_is_500_m_unknown_and_logged(
    app, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="trioserver.http"):
        r = await client.get("/_test/boom")
    assert r.status_code == 500
    body = await r.get_json()
    assert body["errcode"] == "M_UNKNOWN"
    # The client sees a request id, never the exception text.
    assert "kaboom" not in body["error"]
    request_id = body["error"].split("request ")[1].rstrip(")")
    assert any(request_id in rec.getMessage() for rec in caplog.records)
    assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_matrix_error_carries_status_errcode_and_extra_fields(app) -> None:
    r = await app.test_client().get("/_test/matrix")
    assert r.status_code == 418
    assert await r.get_json() == {"errcode": "M_TEAPOT", "error": "short and stout",
                                  "extra_field": 1}


async def test_unknown_route_and_method(app) -> None:
    client = app.test_client()
    r = await client.get("/_matrix/client/v3/nothing/here")
    assert r.status_code == 404
    assert (await r.get_json())["errcode"] == "M_UNRECOGNIZED"
    r = await client.put("/_matrix/client/versions")
    assert r.status_code == 405
    assert (await r.get_json())["errcode"] == "M_UNRECOGNIZED"
    await trio.lowlevel.checkpoint()
