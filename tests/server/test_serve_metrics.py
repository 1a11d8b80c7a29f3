"""`serve --metrics-bind`: a real server, real requests, and its /metrics read back with prometheus_client's
parser. The counts must be exact however many workers came and went (--max-requests), and a dead worker's
requests must stay counted once."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from commands import one_error_line, run
from polling import wait_for
from scrape import Scrape, get
from servers import APPS

DURATION = "http_server_request_duration_seconds_count"


def _scrape_when_counted(address: str, expected: int, max_requests: int = 0) -> Scrape:
    """The scrape once the last request is counted (a worker counts a request once its last byte is sent, so
    the client may read the answer a moment before) and every retiring worker was reaped: the restarts times
    --max-requests plus what the live workers answered is then the whole."""
    def settled():
        scrape = Scrape(address)
        retired = scrape.total("wsgistack_server_worker_restarts_total", cause="max_requests")
        live = scrape.total("wsgistack_worker_requests_total")
        reaped = not max_requests or retired * max_requests + live == expected
        whole = scrape.total(DURATION) == expected and reaped
        return scrape if whole else None
    return wait_for(settled, message=f"{expected} requests counted")  # type: ignore[return-value]


def test_counts_are_exact_across_max_requests_restarts(start_server, tmp_path):
    address = f"unix:{tmp_path / 'metrics.sock'}"
    server = start_server("behaviour_app:app", "-k", "sync", "-w", "2", "--max-requests", "50",
                          "--metrics-bind", address)
    base = f"http://127.0.0.1:{server.port}"
    plan = [("GET", "/hello", 200)] * 160 + [("GET", "/missing", 404)] * 30 + \
        [("POST", "/echo", 200)] * 20 + [("GET", "/boom", 500)] * 7
    for method, path, status in plan:
        answer = requests.request(method, base + path, data=b"x" * 1000 if method == "POST" else None, timeout=10)
        assert answer.status_code == status
    scrape = _scrape_when_counted(address, len(plan), 50)
    assert scrape.total(DURATION) == len(plan)
    assert scrape.total(DURATION, http_response_status_code="200", http_request_method="GET") == 160
    assert scrape.total(DURATION, http_response_status_code="404") == 30
    assert scrape.total(DURATION, http_response_status_code="500") == 7
    assert scrape.total(DURATION, http_request_method="POST") == 20
    assert scrape.total("http_server_request_body_size_bytes_sum", http_request_method="POST") == 20 * 1000
    assert scrape.total("http_server_request_duration_seconds_bucket", le="+Inf") == len(plan)
    assert scrape.total("wsgistack_server_exceptions_total") == 0  # Flask answers its own errors with a 500
    assert scrape.total("wsgistack_server_worker_restarts_total", cause="max_requests") >= 3
    assert scrape.total("wsgistack_server_worker_restarts_total", cause="crash") == 0
    assert scrape.total("wsgistack_server_workers") == 2
    assert scrape.total("http_server_active_requests") == 0
    assert scrape.labels("wsgistack_worker_rss_bytes", "pid") == {str(p) for p in server.wait_workers(2)}
    # the health endpoint's probes (readiness checks) are not the app's requests
    assert requests.get(base + "/_wsgistack/health", timeout=10).status_code == 200
    assert Scrape(address).total(DURATION) == len(plan)


def test_a_killed_worker_keeps_its_count_and_is_a_crash(start_server, tmp_path):
    address = f"unix:{tmp_path / 'metrics.sock'}"
    server = start_server("behaviour_app:app", "-k", "sync", "-w", "1", "--metrics-bind", address)
    base = f"http://127.0.0.1:{server.port}"
    for _ in range(12):
        assert requests.get(base + "/hello", timeout=10).status_code == 200
    (victim,) = server.wait_workers(1)
    _scrape_when_counted(address, 12)  # killed before it counted its last answer, that one would be lost
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: Scrape(address).total("wsgistack_server_worker_restarts_total", cause="crash") == 1,
             message="the crash to be counted")
    server.wait_workers(1)
    assert requests.get(base + "/hello", timeout=10).status_code == 200
    scrape = _scrape_when_counted(address, 13)
    assert scrape.total(DURATION) == 13
    assert str(victim) not in scrape.labels("wsgistack_worker_requests_total", "pid")


@pytest.mark.parametrize("worker_class", ["thread", "event"])
def test_threaded_workers_count_concurrent_requests_exactly(start_server, tmp_path, worker_class):
    address = f"unix:{tmp_path / 'metrics.sock'}"
    server = start_server("behaviour_app:app", "-k", worker_class, "-w", "2", "--threads", "4",
                          "--metrics-bind", address)
    url = f"http://127.0.0.1:{server.port}/hello"
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: requests.get(url, timeout=10).status_code, range(200)))
    assert statuses == [200] * 200
    scrape = _scrape_when_counted(address, 200)
    assert scrape.total(DURATION) == 200
    assert scrape.total("wsgistack_worker_requests_total") == 200
    assert scrape.total("http_server_active_requests") == 0


def test_an_app_that_raises_is_an_exception_and_a_500(start_server, tmp_path):
    address = f"unix:{tmp_path / 'metrics.sock'}"
    server = start_server("plain_app:router", "-w", "1", "--metrics-bind", address)
    for _ in range(3):
        assert requests.get(f"http://127.0.0.1:{server.port}/raise", timeout=10).status_code == 500
    scrape = _scrape_when_counted(address, 3)
    assert scrape.total("wsgistack_server_exceptions_total") == 3
    assert scrape.total("wsgistack_worker_exceptions_total") == 3
    assert scrape.total(DURATION, http_response_status_code="500") == 3


def test_the_endpoint_answers_only_scrapes(start_server, tmp_path):
    address = f"unix:{tmp_path / 'metrics.sock'}"
    start_server("behaviour_app:app", "-w", "1", "--metrics-bind", address)
    status, fields, body = get(address)
    assert status == 200 and fields["content-type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE http_server_request_duration_seconds histogram" in body
    status, fields, body = get(address, accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and fields["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert get(address, "/other")[0] == 404
    assert get(address, raw=b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0] == 405
    assert get(address, raw=b"NONSENSE\r\n\r\n")[0] == 400
    assert get(address, raw=b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 9000)[0] == 431
    assert get(address)[0] == 200  # and the master is still there


def test_a_tcp_metrics_address_is_not_the_app_listener(start_server, tmp_path):
    server = start_server("behaviour_app:app", "-w", "1", "--metrics-bind", "127.0.0.1:0")
    assert requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).status_code == 404


@pytest.mark.parametrize("given, says", [
    ("fd://3", "--metrics-bind: give HOST:PORT or unix:PATH"),
    ("unix:", "--metrics-bind 'unix:': unix: needs a path"),
])
def test_a_bad_metrics_address_is_one_line(tmp_path, given, says):
    result = run(APPS, "serve", "behaviour_app:app", "--metrics-bind", given, "--check-config")
    assert says in one_error_line(result)
