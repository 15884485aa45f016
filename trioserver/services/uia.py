"""User-Interactive Authentication (Client-Server API, "User-Interactive Authentication API").

A session lives in the TTL store, bound to the request it protects (method, path and, when
known, the requesting user) so it cannot be replayed against another operation. Each stage type
has a verifier: an async function that raises `StageFailed` when the client's credentials are
wrong. When every stage of one flow is complete, the session is consumed and the protected
operation may run.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trioserver.errors import Codes, MatrixError
from trioserver.storage.ttl_store import TTLStore

SESSION_TTL_S = 15 * 60

Verifier = Callable[[Mapping[str, Any]], Awaitable[None]]


class StageFailed(Exception):
    """A stage's credentials were wrong: answered as 401 with the flows and an errcode."""

    def __init__(self, errcode: str, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message


class UIARequired(MatrixError):
    """401 carrying the UIA state: flows, params, session, completed (and an error, if any)."""

    def __init__(
        self,
        session: str,
        flows: Sequence[Sequence[str]],
        params: Mapping[str, Any],
        completed: Sequence[str],
        failure: StageFailed | None = None,
    ) -> None:
        errcode, message = (failure.errcode, failure.message) if failure else ("", "")
        super().__init__(401, errcode, message)
        self.body: dict[str, Any] = {
            "session": session,
            "flows": [{"stages": list(f)} for f in flows],
            "params": dict(params),
        }
        if completed:
            self.body["completed"] = list(completed)
        if failure is not None:
            self.body["errcode"] = failure.errcode
            self.body["error"] = failure.message

    def to_json(self) -> dict[str, Any]:
        return self.body


@dataclass
class _Session:
    method: str
    path: str
    user_id: str | None
    completed: list[str] = field(default_factory=list)


class UIA:
    def __init__(self, store: TTLStore) -> None:
        self._store = store

    def _new_session(self, method: str, path: str, user_id: str | None) -> tuple[str, _Session]:
        sid = secrets.token_urlsafe(18)
        session = _Session(method, path, user_id)
        self._store.set(f"uia:{sid}", session, SESSION_TTL_S)
        return sid, session

    async def authenticate(
        self,
        auth: Mapping[str, Any] | None,
        *,
        flows: Sequence[Sequence[str]],
        verifiers: Mapping[str, Verifier],
        method: str,
        path: str,
        user_id: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Return when a flow is complete; otherwise raise `UIARequired` (401) or an error."""
        params = params or {}
        if auth is None:
            sid, session = self._new_session(method, path, user_id)
            raise UIARequired(sid, flows, params, [])
        sid_value = auth.get("session")
        if sid_value is None:
            # The spec lets a client attempt the first stage without a session.
            sid, session = self._new_session(method, path, user_id)
        else:
            if not isinstance(sid_value, str):
                raise MatrixError(400, Codes.BAD_JSON, "auth.session must be a string")
            sid = sid_value
            found = self._store.get(f"uia:{sid}")
            if not isinstance(found, _Session):
                raise MatrixError(400, Codes.UNKNOWN, f"Unknown session ID: {sid[:64]}")
            session = found
            if (session.method, session.path, session.user_id) != (method, path, user_id):
                raise MatrixError(
                    403, Codes.FORBIDDEN,
                    "Requested operation has changed during the UI authentication session",
                )
        stage = auth.get("type")
        if stage is None:
            # No stage attempted: report progress (e.g. after a fallback stage completed).
            raise UIARequired(sid, flows, params, session.completed)
        if not isinstance(stage, str) or not any(stage in f for f in flows):
            raise MatrixError(400, Codes.UNRECOGNIZED, "Unrecognised authentication type")
        if stage not in session.completed:
            try:
                await verifiers[stage](auth)
            except StageFailed as failure:
                raise UIARequired(sid, flows, params, session.completed, failure) from None
            # The verifier awaited: a concurrent request may have consumed the session
            # meanwhile. From here to the end nothing awaits, so only one request can win.
            if self._store.get(f"uia:{sid}") is not session:
                raise MatrixError(400, Codes.UNKNOWN, f"Unknown session ID: {sid[:64]}")
            session.completed.append(stage)
        if any(all(s in session.completed for s in f) for f in flows):
            self._store.delete(f"uia:{sid}")
            return
        raise UIARequired(sid, flows, params, session.completed)
