"""The server starts, answers, and reports errors as Matrix JSON."""

from __future__ import annotations

import httpx

from tests.e2e.helpers import bearer, register


async def test_versions(http: httpx.AsyncClient) -> None:
    r = await http.get("/_matrix/client/versions")
    assert r.status_code == 200
    assert "v1.19" in r.json()["versions"]
    # The unstable features clients look for before using them, each implemented here.
    assert r.json()["unstable_features"] == {"org.matrix.simplified_msc3575": True,
                                             "org.matrix.msc3814": True}


async def test_register_and_whoami(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.get("/_matrix/client/v3/account/whoami", headers=bearer(reg["access_token"]))
    assert r.status_code == 200
    assert r.json() == {"user_id": reg["user_id"], "device_id": reg["device_id"]}
