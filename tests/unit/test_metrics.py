"""The metrics registry and its Prometheus text exposition."""

from __future__ import annotations

import re

from trioserver.metrics import Histogram, Metrics


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram(buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0, 0.01):
        h.observe(v)
    lines = list(h.lines("x", 'a="b"'))
    assert lines == ['x_bucket{a="b",le="0.1"} 3', 'x_bucket{a="b",le="1.0"} 4',
                     'x_bucket{a="b",le="+Inf"} 5', 'x_sum{a="b"} 2.660000',
                     'x_count{a="b"} 5']
    assert list(Histogram(buckets=(1.0,)).lines("y"))[-2:] == ["y_sum 0.000000", "y_count 0"]


async def test_render_counts_requests_commits_handshakes_and_gauges() -> None:
    m = Metrics()
    m.observe_request("/_matrix/client/v3/rooms/<room_id>/send", "PUT", 200, 0.003)
    m.observe_request("/_matrix/client/v3/rooms/<room_id>/send", "PUT", 200, 0.004)
    m.observe_request('we"ird\\', "GET", 404, 0.001)
    m.observe_commit(0.002, 7)
    m.observe_tls_handshake("X25519MLKEM768", "TLSv1.3")

    async def forty_two() -> float:
        return 42.0

    m.gauge("trioserver_answer", "The answer.", forty_two)
    text = await m.render()
    assert ('trioserver_http_requests_total{endpoint="/_matrix/client/v3/rooms/<room_id>/send",'
            'method="PUT",status="200"} 2') in text
    assert 'endpoint="we\\"ird\\\\"' in text
    assert "trioserver_db_writes_total 7" in text
    assert "trioserver_db_commit_duration_seconds_count 1" in text
    assert 'trioserver_tls_handshakes_total{group="X25519MLKEM768",version="TLSv1.3"} 1' in text
    assert "# TYPE trioserver_answer gauge\ntrioserver_answer 42\n" in text
    # Every sample line is NAME{labels} VALUE or NAME VALUE.
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{.*\})? [0-9.e+-]+', line), line
