"""Sync tokens: one position per stream, opaque to clients ("e12.ad4.rc7 ...").

The room-event position comes first so that /messages can take a sync token as `from`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from trioserver.errors import Codes, MatrixError

EVENTS = "e"
_PART = re.compile(r"([a-z]{1,3})(\d{1,18})")


@dataclass(frozen=True)
class SyncToken:
    positions: Mapping[str, int]

    @property
    def events(self) -> int:
        return self.positions.get(EVENTS, 0)

    def get(self, stream: str) -> int | None:
        return self.positions.get(stream)

    def encode(self) -> str:
        others = sorted((k, v) for k, v in self.positions.items() if k != EVENTS)
        ordered = [(EVENTS, self.events), *others]
        return ".".join(f"{k}{v}" for k, v in ordered)


def parse_sync_token(token: str) -> SyncToken:
    positions: dict[str, int] = {}
    for part in token.split("."):
        m = _PART.fullmatch(part)
        if m is None:
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid sync token")
        positions[m.group(1)] = int(m.group(2))
    if EVENTS not in positions:
        raise MatrixError(400, Codes.INVALID_PARAM, "Invalid sync token")
    return SyncToken(positions)
