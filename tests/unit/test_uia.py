"""User-Interactive Authentication flow logic, driven directly (no HTTP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

from tests.unit.fakes import FakeClock
from trioserver.errors import Codes, MatrixError
from trioserver.services.uia import SESSION_TTL_S, UIA, StageFailed, UIARequired, Verifier
from trioserver.storage.ttl_store import TTLStore

PASSWORD = "m.login.password"
STAGE_A = "org.example.a"
STAGE_B = "org.example.b"
FLOWS = [[PASSWORD], [STAGE_A, STAGE_B]]
PARAMS = {"org.example.a": {"hint": 1}}
METHOD, PATH, USER = "POST", "/_matrix/client/v3/delete_devices", "@alice:example.org"


class Verifiers:
    """Verifiers that count their calls; the password one checks auth["password"]."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def password(self, auth: Mapping[str, Any]) -> None:
        self.calls.append(PASSWORD)
        if auth.get("password") != "secret":
            raise StageFailed(Codes.FORBIDDEN, "Invalid password")

    async def a(self, auth: Mapping[str, Any]) -> None:
        self.calls.append(STAGE_A)

    async def b(self, auth: Mapping[str, Any]) -> None:
        self.calls.append(STAGE_B)

    def mapping(self) -> dict[str, Verifier]:
        return {PASSWORD: self.password, STAGE_A: self.a, STAGE_B: self.b}


@pytest.fixture
def uia(store: TTLStore) -> UIA:
    return UIA(store)


@pytest.fixture
def verifiers() -> Verifiers:
    return Verifiers()


async def auth_call(
    uia: UIA,
    verifiers: Verifiers,
    auth: Mapping[str, Any] | None,
    *,
    method: str = METHOD,
    path: str = PATH,
    user_id: str | None = USER,
) -> None:
    await uia.authenticate(
        auth,
        flows=FLOWS,
        verifiers=verifiers.mapping(),
        method=method,
        path=path,
        user_id=user_id,
        params=PARAMS,
    )


async def new_session(uia: UIA, verifiers: Verifiers, **kw: Any) -> str:
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, None, **kw)
    session = info.value.to_json()["session"]
    assert isinstance(session, str)
    return session


async def test_no_auth_starts_a_session(uia: UIA, verifiers: Verifiers, store: TTLStore) -> None:
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, None)
    err = info.value
    assert err.status == 401
    body = err.to_json()
    assert set(body) == {"session", "flows", "params"}
    assert len(body["session"]) >= 16
    assert body["flows"] == [{"stages": [PASSWORD]}, {"stages": [STAGE_A, STAGE_B]}]
    assert body["params"] == PARAMS
    assert "errcode" not in body
    assert verifiers.calls == []
    assert len(store) == 1
    assert store.ttl(f"uia:{body['session']}") == pytest.approx(SESSION_TTL_S)


async def test_each_request_without_auth_gets_a_new_session(uia: UIA, verifiers: Verifiers) -> None:
    assert await new_session(uia, verifiers) != await new_session(uia, verifiers)


async def test_single_stage_flow_with_session(
    uia: UIA, verifiers: Verifiers, store: TTLStore
) -> None:
    sid = await new_session(uia, verifiers)
    await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})
    assert verifiers.calls == [PASSWORD]
    assert len(store) == 0  # consumed


async def test_first_stage_without_session(uia: UIA, verifiers: Verifiers, store: TTLStore) -> None:
    await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret"})
    assert verifiers.calls == [PASSWORD]
    assert len(store) == 0


async def test_multi_stage_flow(uia: UIA, verifiers: Verifiers, store: TTLStore) -> None:
    sid = await new_session(uia, verifiers)
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, {"type": STAGE_A, "session": sid})
    body = info.value.to_json()
    assert body["session"] == sid
    assert body["completed"] == [STAGE_A]
    assert "errcode" not in body
    # Asking for progress without attempting a stage.
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, {"session": sid})
    assert info.value.to_json()["completed"] == [STAGE_A]
    # Repeating a completed stage does not verify it again and does not finish the flow.
    with pytest.raises(UIARequired):
        await auth_call(uia, verifiers, {"type": STAGE_A, "session": sid})
    assert verifiers.calls == [STAGE_A]
    await auth_call(uia, verifiers, {"type": STAGE_B, "session": sid})
    assert verifiers.calls == [STAGE_A, STAGE_B]
    assert len(store) == 0


async def test_multi_stage_started_without_session(uia: UIA, verifiers: Verifiers) -> None:
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, {"type": STAGE_A})
    body = info.value.to_json()
    assert body["completed"] == [STAGE_A]
    await auth_call(uia, verifiers, {"type": STAGE_B, "session": body["session"]})


async def test_failed_stage_reports_error_and_can_be_retried(
    uia: UIA, verifiers: Verifiers, store: TTLStore
) -> None:
    sid = await new_session(uia, verifiers)
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "password": "wrong", "session": sid})
    err = info.value
    assert err.status == 401
    assert err.errcode == Codes.FORBIDDEN
    body = err.to_json()
    assert body["errcode"] == "M_FORBIDDEN"
    assert body["error"] == "Invalid password"
    assert body["session"] == sid
    assert body["flows"] == [{"stages": [PASSWORD]}, {"stages": [STAGE_A, STAGE_B]}]
    assert "completed" not in body
    assert len(store) == 1
    await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})
    assert verifiers.calls == [PASSWORD, PASSWORD]
    assert len(store) == 0


async def test_failed_stage_keeps_earlier_progress(uia: UIA, verifiers: Verifiers) -> None:
    sid = await new_session(uia, verifiers)
    with pytest.raises(UIARequired):
        await auth_call(uia, verifiers, {"type": STAGE_A, "session": sid})
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "password": "x", "session": sid})
    body = info.value.to_json()
    assert body["completed"] == [STAGE_A]
    assert body["errcode"] == "M_FORBIDDEN"


async def test_failed_first_stage_without_session_returns_a_session(
    uia: UIA, verifiers: Verifiers
) -> None:
    with pytest.raises(UIARequired) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "password": "wrong"})
    sid = info.value.to_json()["session"]
    await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})


async def test_unknown_session(uia: UIA, verifiers: Verifiers) -> None:
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": "nope"})
    assert not isinstance(info.value, UIARequired)
    assert info.value.status == 400
    assert info.value.errcode == Codes.UNKNOWN
    assert verifiers.calls == []


async def test_session_must_be_a_string(uia: UIA, verifiers: Verifiers) -> None:
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "session": 12})
    assert info.value.status == 400
    assert info.value.errcode == Codes.BAD_JSON


async def test_session_expires(uia: UIA, verifiers: Verifiers, clock: FakeClock) -> None:
    sid = await new_session(uia, verifiers)
    clock.now += SESSION_TTL_S
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})
    assert info.value.status == 400
    assert verifiers.calls == []


@pytest.mark.parametrize(
    "changed",
    [
        {"method": "DELETE"},
        {"path": "/_matrix/client/v3/account/password"},
        {"user_id": "@mallory:example.org"},
        {"user_id": None},
    ],
)
async def test_session_is_bound_to_the_request(
    uia: UIA, verifiers: Verifiers, store: TTLStore, changed: dict[str, Any]
) -> None:
    sid = await new_session(uia, verifiers)
    with pytest.raises(MatrixError) as info:
        await auth_call(
            uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid}, **changed
        )
    assert not isinstance(info.value, UIARequired)
    assert info.value.status == 403
    assert info.value.errcode == Codes.FORBIDDEN
    assert verifiers.calls == []
    # The session still works for the operation it was created for.
    await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})


async def test_session_without_user_is_bound_too(uia: UIA, verifiers: Verifiers) -> None:
    sid = await new_session(uia, verifiers, user_id=None)
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"type": STAGE_A, "session": sid}, user_id=USER)
    assert info.value.status == 403


@pytest.mark.parametrize("stage", ["m.login.unknown", 5, ["m.login.password"], ""])
async def test_unknown_stage_type(uia: UIA, verifiers: Verifiers, stage: object) -> None:
    sid = await new_session(uia, verifiers)
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"type": stage, "session": sid})
    assert not isinstance(info.value, UIARequired)
    assert info.value.status == 400
    assert info.value.errcode == Codes.UNRECOGNIZED
    assert verifiers.calls == []


async def test_session_is_consumed_after_success(
    uia: UIA, verifiers: Verifiers, store: TTLStore
) -> None:
    sid = await new_session(uia, verifiers)
    await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})
    assert store.get(f"uia:{sid}") is None
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"type": PASSWORD, "password": "secret", "session": sid})
    assert not isinstance(info.value, UIARequired)
    assert info.value.status == 400
    assert info.value.errcode == Codes.UNKNOWN
    # Not even a progress query finds it.
    with pytest.raises(MatrixError) as info:
        await auth_call(uia, verifiers, {"session": sid})
    assert info.value.status == 400


async def test_concurrent_requests_cannot_both_consume_a_session(
    uia: UIA, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow_password(auth: Mapping[str, Any]) -> None:
        await trio.sleep(1)  # e.g. Argon2id in a worker thread

    succeeded: list[int] = []
    refused: list[int] = []
    sid = ""
    with pytest.raises(UIARequired) as info:
        await uia.authenticate(
            None,
            flows=[[PASSWORD]],
            verifiers={PASSWORD: slow_password},
            method=METHOD,
            path=PATH,
            user_id=USER,
        )
    sid = info.value.to_json()["session"]

    async def attempt(i: int) -> None:
        try:
            await uia.authenticate(
                {"type": PASSWORD, "session": sid},
                flows=[[PASSWORD]],
                verifiers={PASSWORD: slow_password},
                method=METHOD,
                path=PATH,
                user_id=USER,
            )
        except MatrixError:
            refused.append(i)
        else:
            succeeded.append(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, 1)
        nursery.start_soon(attempt, 2)
    assert len(succeeded) == 1
    assert len(refused) == 1


def test_uia_required_body_shape() -> None:
    plain = UIARequired("s1", [["a"]], {}, [])
    assert plain.to_json() == {"session": "s1", "flows": [{"stages": ["a"]}], "params": {}}
    failed = UIARequired("s2", [["a", "b"]], {"a": {}}, ["a"], StageFailed("M_X", "bad"))
    assert failed.status == 401
    assert failed.to_json() == {
        "session": "s2",
        "flows": [{"stages": ["a", "b"]}],
        "params": {"a": {}},
        "completed": ["a"],
        "errcode": "M_X",
        "error": "bad",
    }
