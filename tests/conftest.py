"""Shared fixtures: a real server process per session, and a factory for custom ones."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess, start_server

# tests/interop talk to a reference homeserver that must be running (`make test-interop` starts
# one and sets this): the default run does not collect them.
collect_ignore = [] if os.environ.get("TRIOSERVER_INTEROP") == "1" else ["interop"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole session: open registration, rate limits off.

    Tests sharing it must use unique usernames (see `tests.e2e.helpers.unique`).
    """
    proc = start_server(tmp_path_factory.mktemp("server"), "--open-registration",
                        "--no-rate-limits")
    yield proc
    proc.stop()


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers with custom flags or config; all are stopped after the test.

    Usage: `srv = server_factory("--open-registration", config_text="...")`.
    """
    started: list[ServerProcess] = []
    counter = iter(range(1000))

    def factory(*args: str, config_text: str | None = None, **kw: object) -> ServerProcess:
        data_dir = kw.pop("data_dir", None) or tmp_path / f"server{next(counter)}"
        proc = start_server(Path(str(data_dir)), *args, config_text=config_text, **kw)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        yield client
