"""observe/summary.py in process: Prometheus text in, exact numbers out; and the documented metric names, which
docs/metrics.md, the Grafana dashboard and the summary must agree on."""

from __future__ import annotations

import http.server
import json
import math
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from metrics_samples import START, serve_text, stack_text
from unix_http import UnixHTTPServer

from wsgistack.config.errors import ConfigError
from wsgistack.observe import summary
from wsgistack.observe.summary import (
    MetricsError,
    fetch_metrics,
    histogram_quantile,
    metrics_address,
    parse_snapshot,
    summarise,
)

ROOT = Path(__file__).resolve().parents[2]
INF = math.inf


def snapshot(text: str, at: float) -> summary.Snapshot:
    return parse_snapshot(text, at=at, wall=START + 7200 + at)


def by_program(items, program):  # type: ignore[no-untyped-def]
    (found,) = [item for item in items if item.program == program]
    return found


# ---- quantiles: Prometheus' histogram_quantile


def test_quantile_interpolates_linearly_inside_the_bucket():
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 10 / 20)  # rank 20 of 10..30
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)  # rank 10: the top of the first bucket
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # the first bucket starts at 0
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.5 + 0.5 * 6 / 10)
    assert histogram_quantile(1.0, buckets) == pytest.approx(1.0)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    assert histogram_quantile(0.99, [(0.1, 1.0), (0.5, 2.0), (INF, 10.0)]) == 0.5


def test_quantile_of_nothing_is_none():
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 3.0), (1.0, 4.0)]) is None  # no +Inf bucket: not a whole histogram


def test_quantile_bounds_are_prometheus_own():
    buckets = [(0.1, 1.0), (INF, 1.0)]
    assert histogram_quantile(-0.5, buckets) == -INF
    assert histogram_quantile(1.5, buckets) == INF
    assert histogram_quantile(0.5, [(-1.0, 4.0), (INF, 4.0)]) == -1.0  # a first bucket at or below zero


def test_quantile_does_not_care_about_the_order_of_buckets():
    assert histogram_quantile(0.5, [(INF, 4.0), (1.0, 4.0), (0.5, 2.0)]) == pytest.approx(0.5)


# ---- one stack, two scrapes one second apart


def test_apps_over_a_window_exact_numbers():
    result = summarise(snapshot(stack_text(1), 11.0), snapshot(stack_text(0), 10.0))
    assert result.window_seconds == 1.0
    assert [app.program for app in result.apps] == ["proxy", "web"]
    web = by_program(result.apps, "web")
    assert web.requests_per_second == 102.0  # 100 GET / and 2 GET /boom in the second
    assert web.errors_per_second == 2.0
    assert web.errors_total == 51 * 2  # the 5xx since the start: 51 scrapes' worth
    assert web.requests_total == 51 * 102 + 20
    assert web.active_requests == 3
    # the window's 102 requests: 10 <= 5 ms, 30 <= 10 ms, 40 <= 25 ms, 15 <= 50 ms, 5 <= 75 ms, 2 in 250-500 ms
    assert web.p50 == pytest.approx(0.01 + 0.015 * (51 - 40) / 40)
    assert web.p95 == pytest.approx(0.05 + 0.025 * (96.9 - 95) / 5)
    assert web.p99 == pytest.approx(0.25 + 0.25 * (100.98 - 100) / 2)
    assert by_program(result.apps, "proxy").active_requests == 1


def test_the_window_leaves_the_slow_start_out():
    # 20 slow requests (1-2.5 s) came before scrape 0: a single scrape counts them, the window does not
    lifetime = summarise(snapshot(stack_text(1), 11.0))
    window = summarise(snapshot(stack_text(1), 11.0), snapshot(stack_text(0), 10.0))
    assert by_program(window.apps, "web").p99 == pytest.approx(0.3725)
    assert by_program(lifetime.apps, "web").p99 == pytest.approx(0.25 + 0.25 * (0.99 * 5222 - 5100) / 102)
    assert lifetime.window_seconds is None
    assert by_program(lifetime.apps, "web").requests_per_second is None  # no rate without a window
    assert by_program(lifetime.apps, "web").errors_per_second is None


def test_rates_divide_by_the_window():
    result = summarise(snapshot(stack_text(4), 14.0), snapshot(stack_text(0), 10.0))
    assert result.window_seconds == 4.0
    assert by_program(result.apps, "web").requests_per_second == pytest.approx(102.0)
    workers = {worker.pid: worker for worker in result.workers}
    assert workers["101"].requests_per_second == pytest.approx(60.0)
    assert workers["102"].requests_per_second == pytest.approx(42.0)


def test_workers_upstreams_programs():
    result = summarise(snapshot(stack_text(1), 11.0), snapshot(stack_text(0), 10.0))
    assert [(w.program, w.pid, w.requests_total, w.busy, w.rss_bytes, w.uptime_seconds) for w in result.workers] == [
        ("web", "101", 560, True, 52428800, 3601), ("web", "102", 522, False, 48234496, 1801)]
    assert [(u.upstream, u.server, u.state, u.requests_per_second, u.failures_total, u.active_connections)
            for u in result.upstreams] == [
        ("api", "127.0.0.1:9002", "down", 0.0, 18, None),
        ("web", "127.0.0.1:9001", "backup", 0.0, 0, None),
        ("web", "unix:/tmp/wsgistack/web.sock", "up", 102.0, 3, 4)]
    assert [(p.program, p.state, p.restarts_total, p.uptime_seconds) for p in result.programs] == [
        ("mailer", "backoff", 8, 0), ("proxy", "running", 0, 3701), ("web", "running", 1, 3601)]
    assert result.uptime_seconds == 7211.0  # the supervisor's process_start_time_seconds, by the wall clock


def test_a_counter_that_went_down_counts_from_zero():
    # the server restarted between the scrapes: its counters began again at zero, so the window holds what the
    # new process counted (one scrape's worth), never a negative rate
    before = snapshot(serve_text(9), 10.0)
    after = snapshot(serve_text(1, base=0), 12.0)
    result = summarise(after, before)
    (app,) = result.apps
    assert app.requests_per_second == pytest.approx(102 / 2)
    assert app.errors_per_second == pytest.approx(2 / 2)
    assert app.p50 == pytest.approx(0.014125)  # the new process's requests alone
    assert app.requests_total == 102
    workers = {worker.pid: worker for worker in result.workers}
    assert workers["101"].requests_per_second == pytest.approx(60 / 2)  # 60 now, 1040 before


def test_a_new_series_counts_from_zero():
    before = snapshot(serve_text(0).replace('http_response_status_code="500"', 'http_response_status_code="200"'), 0)
    after = snapshot(serve_text(0), 1.0)
    app = summarise(after, before).apps[0]
    assert app.errors_per_second == 100.0  # the 500 series is new: all its 100 requests are in the window
    assert app.requests_per_second == 100.0  # ... and they are requests of the window too


def test_a_lone_server_is_one_unnamed_app():
    result = summarise(snapshot(serve_text(2), 2.0), snapshot(serve_text(1), 1.0))
    assert [app.program for app in result.apps] == [""]
    assert result.apps[0].requests_per_second == 102.0
    assert [worker.pid for worker in result.workers] == ["101", "102"]
    assert result.upstreams == () and result.programs == ()
    assert result.uptime_seconds == 3602  # no process_start_time_seconds: the oldest worker


def test_an_empty_scrape_is_an_empty_summary():
    result = summarise(parse_snapshot("", 1.0, 2.0))
    assert (result.apps, result.workers, result.upstreams, result.programs, result.uptime_seconds) == ((), (), (), (), None)


@pytest.mark.parametrize("text", ["<html><body>404</body></html>", "metric{label 1", "x{a=\"1\" 1"])
def test_text_that_is_not_prometheus_is_one_line_error(text):
    with pytest.raises(MetricsError) as caught:
        parse_snapshot(text, 0, 0)
    assert "\n" not in str(caught.value) and "not Prometheus text" in str(caught.value)


# ---- addresses and the fetch helper


@pytest.mark.parametrize(("text", "shown"), [
    ("127.0.0.1:9100", "http://127.0.0.1:9100"), ("http://localhost:9100/metrics", "http://localhost:9100"),
    ("http://[::1]:9100/", "http://[::1]:9100"), ("unix:/run/m.sock", "unix:/run/m.sock"), ("9100", "http://0.0.0.0:9100")])
def test_metrics_addresses(text, shown):
    assert str(metrics_address(text)) == shown


@pytest.mark.parametrize("text", ["fd://3", "ftp://x:1", "host:port", "unix:", "http://h:1/other"])
def test_bad_metrics_addresses_are_config_errors(text):
    with pytest.raises(ConfigError, match="is not a metrics address"):
        metrics_address(text)


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b"up 1\n"
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def endpoint() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_fetch_over_tcp(endpoint):
    assert fetch_metrics(f"127.0.0.1:{endpoint.server_port}", 2.0) == "up 1\n"


def test_fetch_over_a_unix_socket(tmp_path):
    path = str(tmp_path / "metrics.sock")
    server = UnixHTTPServer(path, _Metrics)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        assert fetch_metrics(f"unix:{path}", 2.0) == "up 1\n"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_failures_are_one_line(endpoint, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(MetricsError, match=rf"^127\.0\.0\.1:{port}: connection refused$"):
        fetch_metrics(f"127.0.0.1:{port}", 1.0)
    with pytest.raises(MetricsError, match=r"no such file"):
        fetch_metrics(f"unix:{tmp_path / 'none.sock'}", 1.0)
    with socket.socket() as silent:  # accepts (the kernel's queue) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(MetricsError, match=r"no answer within 0.2s$"):
            fetch_metrics(f"127.0.0.1:{silent.getsockname()[1]}", 0.2)
    _Metrics.status = 503
    try:
        with pytest.raises(MetricsError, match=r"/metrics: HTTP 503"):
            fetch_metrics(f"127.0.0.1:{endpoint.server_port}", 1.0)
    finally:
        _Metrics.status = 200


# ---- the documented names: docs/metrics.md, the Grafana dashboard and this module agree


def documented_metrics() -> dict[str, str]:
    """name -> type, from the tables of docs/metrics.md (rows: | `name` | type | labels | ... |)."""
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    found = dict(re.findall(r"^\| `([a-z_]+)` \| (counter|gauge|histogram) \|", text, flags=re.MULTILINE))
    assert len(found) > 30, "docs/metrics.md lost its tables"
    return found


def base_name(sample: str, documented: dict[str, str]) -> str:
    """A sample or query name back to its metric: histograms' _bucket/_count/_sum, counters are named with _total."""
    for suffix in ("_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and documented.get(sample.removesuffix(suffix)) == "histogram":
            return sample.removesuffix(suffix)
    return sample


def test_every_grafana_query_uses_documented_metrics():
    documented = documented_metrics()
    dashboard = json.loads((ROOT / "docs" / "grafana" / "wsgistack.json").read_text(encoding="utf-8"))
    assert any(item.get("type") == "datasource" for item in dashboard["__inputs"])
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 8
    used = {base_name(name, documented) for expr in expressions
            for name in re.findall(r"\b(?:http_server|wsgistack)_[a-z_]+", expr)}
    assert used, expressions
    assert used - set(documented) == set()


def test_the_summary_reads_only_documented_metrics():
    documented = documented_metrics()
    read = {base_name(value, documented) for name, value in vars(summary).items()
            if name.isupper() and isinstance(value, str) and value.startswith(("http_server_", "wsgistack_"))}
    assert len(read) > 10
    assert read - set(documented) == set()
