"""Interop tests against a reference homeserver that `make test-interop` starts.

Collected only with TRIOSERVER_INTEROP=1 (see tests/conftest.py). The figures tests measure
are printed at the end of the run, whatever pytest's capture settings.
"""

from __future__ import annotations

import pytest

_FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Append "name: value" lines to report them in the terminal summary."""
    return _FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("interop figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
