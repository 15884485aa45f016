"""In-process metrics and their Prometheus text exposition (no client library needed).

Counters and histograms are plain integers updated on the hot path (one dict lookup each);
gauges are read only when scraped. Labels are kept to a bounded set: the endpoint label is the
route pattern (`/_matrix/client/v3/rooms/<room_id>/send/...`), never the concrete path.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)

Gauge = Callable[[], Awaitable[float]]


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> Iterable[str]:
        sep = "," if labels else ""
        cumulative = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            cumulative += n
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cumulative}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {self.total:.6f}"
        yield f"{name}_count{braces} {self.count}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The server's metrics registry."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.request_seconds: dict[str, Histogram] = {}
        self.commit_seconds = Histogram()
        self.commit_writes = 0
        self.tls_handshakes: dict[tuple[str, str], int] = {}
        self._gauges: list[tuple[str, str, Gauge]] = []

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.request_seconds.get(endpoint)
        if hist is None:
            hist = self.request_seconds[endpoint] = Histogram()
        hist.observe(seconds)

    def observe_commit(self, seconds: float, writes: int) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_writes += writes

    def observe_tls_handshake(self, group: str, version: str) -> None:
        key = (group, version)
        self.tls_handshakes[key] = self.tls_handshakes.get(key, 0) + 1

    def gauge(self, name: str, help_text: str, read: Gauge) -> None:
        """Register a value read at scrape time."""
        self._gauges.append((name, help_text, read))

    async def render(self) -> str:
        out: list[str] = [
            "# HELP trioserver_http_requests_total HTTP requests by route, method and status.",
            "# TYPE trioserver_http_requests_total counter",
        ]
        for (endpoint, method, status), n in sorted(self.requests.items()):
            out.append(f'trioserver_http_requests_total{{endpoint="{_escape(endpoint)}",'
                       f'method="{method}",status="{status}"}} {n}')
        out += ["# HELP trioserver_http_request_duration_seconds Time to the end of the response.",
                "# TYPE trioserver_http_request_duration_seconds histogram"]
        for endpoint, hist in sorted(self.request_seconds.items()):
            out += hist.lines("trioserver_http_request_duration_seconds",
                              f'endpoint="{_escape(endpoint)}"')
        out += ["# HELP trioserver_db_commit_duration_seconds Time of one group commit.",
                "# TYPE trioserver_db_commit_duration_seconds histogram"]
        out += self.commit_seconds.lines("trioserver_db_commit_duration_seconds")
        out += ["# HELP trioserver_db_writes_total Writes committed (several per group commit).",
                "# TYPE trioserver_db_writes_total counter",
                f"trioserver_db_writes_total {self.commit_writes}",
                "# HELP trioserver_tls_handshakes_total Completed TLS handshakes by key agreement.",
                "# TYPE trioserver_tls_handshakes_total counter"]
        for (group, version), n in sorted(self.tls_handshakes.items()):
            out.append(f'trioserver_tls_handshakes_total{{group="{_escape(group)}",'
                       f'version="{_escape(version)}"}} {n}')
        for name, help_text, read in self._gauges:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                    f"{name} {await read():g}"]
        return "\n".join(out) + "\n"
