"""`proxy --metrics-bind`: real proxies in front of real upstreams, their /metrics read back with
prometheus_client's parser; the counts must be exact, and with `workers = N` stay exact however the workers
died. Then the collection code in process: slots, folding, the upstream-state rule, the settings' checks."""

from __future__ import annotations

import os
import signal
import socket
import textwrap

import requests
from commands import one_error_line, run
from polling import wait_for
from processes import children_of, pid_alive
from prometheus_client.parser import text_string_to_metric_families
from proxies import start_proxy, start_upstream, upstream_address
from scrape import Scrape

from wsgistack.proxy.metrics import (
    LIMIT_REJECTIONS,
    UPSTREAM_ACTIVE,
    UPSTREAM_REQUESTS,
    ProxyMetrics,
    ProxyRecorder,
)

DURATION = "http_server_request_duration_seconds_count"
UPSTREAM = "wsgistack_proxy_upstream_requests_total"
FAILURES = "wsgistack_proxy_upstream_failures_total"
STATE = "wsgistack_proxy_upstream_state"


def proxy_config(servers: list[str], metrics: str, workers: int = 1, extra: str = "") -> str:
    listed = ", ".join(f'"{server}"' for server in servers)
    return textwrap.dedent(f"""\
        [proxy]
        listen = ["127.0.0.1:0"]
        workers = {workers}
        metrics_bind = "{metrics}"

        [proxy.upstreams.app]
        servers = [{listed}]

        [[proxy.routes]]
        path = "/"
        upstream = "app"
        """) + textwrap.dedent(extra)


def state_of(scrape: Scrape, server: str) -> str:
    """The state whose series is 1 for `server`."""
    found = [sample.labels["state"] for sample in scrape.samples
             if sample.name == STATE and sample.labels["server"] == server and sample.value == 1]
    assert len(found) == 1, found
    return found[0]


def test_requests_split_static_hits_and_a_limit_rejection_are_counted_exactly(start_proxy, start_upstream,
                                                                              tmp_path):
    a, b = start_upstream("a"), start_upstream("b")
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("hello static\n")
    metrics = f"unix:{tmp_path / 'metrics.sock'}"
    extra = f"""
        [[proxy.routes]]
        path = "/static/"
        static = "{site}"

        [[proxy.routes]]
        path = "/limited"
        upstream = "app"
        limit_req = {{ rate = "1r/m" }}
        """
    proxy = start_proxy(proxy_config([upstream_address(a), upstream_address(b)], metrics, extra=extra))
    with requests.Session() as session:  # one kept-alive connection: its bytes are counted as they come
        answers = [session.get(proxy.url("/"), timeout=10) for _ in range(20)]
        assert sorted(answer.text for answer in answers) == ["a"] * 10 + ["b"] * 10
        assert session.get(proxy.url("/static/hello.txt"), timeout=10).text == "hello static\n"
        assert session.get(proxy.url("/static/missing.txt"), timeout=10).status_code == 404
        limited = [session.get(proxy.url("/limited"), timeout=10).status_code for _ in range(2)]
    assert limited[1] == 429 and limited[0] != 429

    scrape = Scrape(metrics)
    assert scrape.total(DURATION) == 24
    assert scrape.total(DURATION, http_route="/", http_response_status_code="200", http_request_method="GET") == 20
    assert scrape.total(DURATION, http_route="/static/") == 2
    assert scrape.total(DURATION, http_route="/limited", http_response_status_code="429") == 1
    assert scrape.total("http_server_response_body_size_bytes_sum", http_route="/") == 20  # "a" or "b" each
    assert scrape.total("http_server_active_requests") == 0
    # 21 attempts upstream: 20 on "/" (round robin: 10 each) and the one /limited let through
    assert scrape.total(UPSTREAM) == 21
    assert {scrape.total(UPSTREAM, server=upstream_address(s)) for s in (a, b)} == {10, 11}
    assert scrape.total(FAILURES) == 0
    assert scrape.total("wsgistack_proxy_upstream_retries_total", upstream="app") == 0
    assert scrape.total("wsgistack_proxy_upstream_response_duration_seconds_count") == 21
    # a gauge the ticker writes, not the request (proxy/metrics.py): it may still show the last request's 1
    wait_for(lambda: Scrape(metrics).total("wsgistack_proxy_upstream_active_connections") == 0,
             message="no upstream connection active in the scrape")
    assert state_of(scrape, upstream_address(a)) == state_of(scrape, upstream_address(b)) == "up"
    assert scrape.total("wsgistack_proxy_limit_rejections_total", limit="limit_req", zone="/limited") == 1
    assert scrape.total("wsgistack_proxy_limit_rejections_total", limit="max_connections") == 0
    assert scrape.total("wsgistack_proxy_static_hits_total") == 1  # the 404 is no hit
    sent = sum(len(answer.content) for answer in answers)
    assert scrape.total("wsgistack_proxy_sent_bytes_total") > sent + 20 * len("HTTP/1.1 200 OK\r\n")
    assert scrape.total("wsgistack_proxy_received_bytes_total") > 24 * len("GET / HTTP/1.1\r\n")
    # a scrape changes no count
    assert Scrape(metrics).total(DURATION) == 24
    # a reload's new state counts on into the same memory
    proxy.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in proxy.log(), message="the reload")
    assert proxy.get("/").status_code == 200
    assert Scrape(metrics).total(DURATION) == 25
    proxy.stop()
    assert not (tmp_path / "metrics.sock").exists()


def test_a_failing_server_is_counted_and_shown_down(start_proxy, start_upstream, tmp_path):
    a = start_upstream("a")
    dead = f"unix:{tmp_path / 'nobody-listens.sock'}"
    spare = f"unix:{tmp_path / 'spare.sock'}"
    metrics = f"unix:{tmp_path / 'metrics.sock'}"
    proxy = start_proxy(proxy_config([upstream_address(a), dead, f"{spare} backup"], metrics))
    assert all(proxy.get("/").text == "a" for _ in range(6))  # the dead server's attempts are retried on a
    scrape = Scrape(metrics)
    assert scrape.total(DURATION, http_response_status_code="200") == 6
    assert scrape.total(FAILURES, server=dead) == 1  # max_fails = 1: then it is out for fail_timeout
    assert scrape.total(UPSTREAM, server=dead) == 1
    assert scrape.total(UPSTREAM, server=upstream_address(a)) == 6
    assert scrape.total("wsgistack_proxy_upstream_retries_total", upstream="app") == 1
    assert state_of(scrape, dead) == "down"
    assert state_of(scrape, upstream_address(a)) == "up"
    assert state_of(scrape, spare) == "backup"


def test_counts_stay_exact_when_workers_are_killed_and_replaced(start_proxy, start_upstream, tmp_path):
    a = start_upstream("a")
    metrics = f"unix:{tmp_path / 'metrics.sock'}"
    proxy = start_proxy(proxy_config([upstream_address(a)], metrics, workers=2))

    def workers() -> set[int]:
        return {pid for pid in children_of(proxy.proc.pid) if pid_alive(pid)}

    def counted(total: int) -> Scrape:
        def settled():
            scrape = Scrape(metrics)
            return scrape if scrape.total(DURATION) == total else None
        return wait_for(settled, message=f"{total} requests in the scrape")  # type: ignore[return-value]

    first = wait_for(lambda: len(workers()) == 2 and workers(), message="two workers")
    total = 0
    for victim, signum in zip(sorted(first), (signal.SIGKILL, signal.SIGTERM)):  # type: ignore[arg-type]
        assert all(proxy.get("/").status_code == 200 for _ in range(15))
        total += 15
        counted(total)  # every answer was counted before its worker dies
        before = workers()
        os.kill(victim, signum)
        wait_for(lambda gone=victim: (now := workers()) and len(now) == 2 and gone not in now, message="a new worker")
        assert workers() != before
        scrape = counted(total)  # what the dead worker counted stays, once
        assert scrape.total(UPSTREAM) == total
    # both first workers are gone: every count so far came from a folded slot; the new ones add to them
    assert all(proxy.get("/").status_code == 200 for _ in range(10))
    scrape = counted(total + 10)
    assert scrape.total(UPSTREAM, server=upstream_address(a)) == total + 10
    assert scrape.total("http_server_response_body_size_bytes_sum") == total + 10
    assert scrape.total("http_server_active_requests") == 0
    # a gauge the ticker writes, not the request (proxy/metrics.py): it may still show the last request's 1
    wait_for(lambda: Scrape(metrics).total("wsgistack_proxy_upstream_active_connections") == 0,
             message="no upstream connection active in the scrape")
    assert state_of(scrape, upstream_address(a)) == "up"
    # a scraper that connects and says nothing holds up neither the signals nor the other scrapers
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(str(tmp_path / "metrics.sock"))
        proxy.signal(signal.SIGHUP)
        wait_for(lambda: proxy.log().count("reloaded") == 2, message="both workers reloaded")
        assert all(proxy.get("/").status_code == 200 for _ in range(5))
        counted(total + 15)
    assert proxy.stop() == 0
    assert not (tmp_path / "metrics.sock").exists()


def test_bad_metrics_addresses_are_one_line(tmp_path):
    cases = [
        (["--metrics-bind", "fd://3"], "give HOST:PORT or unix:PATH"),
        (["--metrics-bind", "unix:"], "unix: needs a path"),
        (["--listen", "127.0.0.1:18555", "--metrics-bind", "127.0.0.1:18555"], "is a listen address of the proxy"),
    ]
    for args, message in cases:
        result = run(tmp_path, "proxy", "--upstream", "127.0.0.1:9", *args, "--check-config")
        assert message in one_error_line(result), result.stderr


def test_a_metrics_address_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, "proxy", "--upstream", "127.0.0.1:9", "--listen", "127.0.0.1:0",
                     "--metrics-bind", f"127.0.0.1:{port}")
    line = one_error_line(result)
    assert f"proxy.metrics_bind 127.0.0.1:{port}" in line and "in use" in line


# -- in process: the collection ---------------------------------------------------------------------------

class FakeConfig:
    """What the scrape asks of the config: two servers of one upstream, one a backup, and a limit."""

    def __init__(self) -> None:
        self.down_here = False

    def server_states(self, now: float) -> list[tuple[str, str, bool, bool, int]]:
        return [("app", "s1", False, self.down_here, 0), ("app", "s2", True, False, 0)]

    def limit_zones(self) -> list[tuple[str, str]]:
        return [("limit_req", "/api/")]


def samples(metrics: ProxyMetrics) -> dict[tuple, float]:
    _, body = metrics.render("")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def test_dead_workers_are_folded_once_and_their_gauges_dropped():
    config = FakeConfig()
    metrics = ProxyMetrics(lambda: config)
    slots = {pid: metrics.new_slot() for pid in (101, 102)}
    for pid, slot in slots.items():
        metrics.worker_started(pid, slot)
    one, two = (ProxyRecorder(slot) for slot in slots.values())
    for recorder, count in ((one, 3), (two, 4)):
        for _ in range(count):
            recorder.started()
            recorder.attempt_ended("app", "s1", 0.02)
            recorder.finished("GET", 200, "/", 0.03, 0, 5)
    one.retried("app")
    one.started()  # in flight when its worker dies
    one.publish_upstreams([("app", "s1", False, False, 1)])
    one.rejected("limit_req", "/api/")
    found = samples(metrics)
    assert found[(UPSTREAM, (("server", "s1"), ("upstream", "app")))] == 7
    assert found[("wsgistack_proxy_upstream_active_connections", (("server", "s1"), ("upstream", "app")))] == 1
    assert found[("http_server_active_requests", ())] == 1
    metrics.worker_gone(101)
    metrics.worker_gone(101)  # a second reap of the same pid adds nothing
    found = samples(metrics)
    assert found[(UPSTREAM, (("server", "s1"), ("upstream", "app")))] == 7
    assert found[("wsgistack_proxy_upstream_response_duration_seconds_bucket",
                  (("le", "0.025"), ("server", "s1"), ("upstream", "app")))] == 7
    assert found[(DURATION, (("http_request_method", "GET"), ("http_response_status_code", "200"),
                             ("http_route", "/")))] == 7
    assert found[("wsgistack_proxy_upstream_retries_total", (("upstream", "app"),))] == 1
    assert found[("wsgistack_proxy_limit_rejections_total", (("limit", "limit_req"), ("zone", "/api/")))] == 1
    # the gauges die with their process
    assert found[("wsgistack_proxy_upstream_active_connections", (("server", "s1"), ("upstream", "app")))] == 0
    assert found[("http_server_active_requests", ())] == 0
    # what the config declares shows at 0 before anything happened to it
    assert found[(UPSTREAM, (("server", "s2"), ("upstream", "app")))] == 0
    assert found[("wsgistack_proxy_limit_rejections_total", (("limit", "max_connections"), ("zone", "total")))] == 0
    metrics.worker_gone(102)
    assert samples(metrics)[(UPSTREAM, (("server", "s1"), ("upstream", "app")))] == 7


def test_a_server_is_down_when_any_live_worker_sees_it_down():
    config = FakeConfig()
    metrics = ProxyMetrics(lambda: config)
    seeing, not_seeing = metrics.new_slot(), metrics.new_slot()
    metrics.worker_started(1, seeing)
    metrics.worker_started(2, not_seeing)
    ProxyRecorder(seeing).publish_upstreams([("app", "s1", False, True, 0)])
    ProxyRecorder(not_seeing).publish_upstreams([("app", "s1", False, False, 0)])

    def state(server: str) -> str:
        found = samples(metrics)
        return next(labels[1][1] for (name, labels), value in found.items()
                    if name == STATE and labels[0][1] == server and value == 1)

    assert state("s1") == "down"
    assert state("s2") == "backup"
    metrics.worker_gone(1)  # the only worker that saw it down is gone: its view goes with it
    assert state("s1") == "up"


def test_a_single_process_writes_its_own_view_at_the_scrape():
    config = FakeConfig()
    metrics = ProxyMetrics(lambda: config)
    slot = metrics.new_slot()
    metrics.worker_started(os.getpid(), slot)
    metrics.recorder = ProxyRecorder(slot)
    config.down_here = True
    assert samples(metrics)[(STATE, (("server", "s1"), ("state", "down"), ("upstream", "app")))] == 1
    config.down_here = False
    assert samples(metrics)[(STATE, (("server", "s1"), ("state", "up"), ("upstream", "app")))] == 1


def test_families_are_what_the_issue_names():
    assert UPSTREAM_REQUESTS.labels == UPSTREAM_ACTIVE.labels == ("upstream", "server")
    assert LIMIT_REJECTIONS.labels == ("limit", "zone")
