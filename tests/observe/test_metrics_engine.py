"""The metrics machinery in process: slots of shared memory, the master's totals, the scrape's text. The real
server's use of it is in tests/server/test_serve_metrics.py."""

from __future__ import annotations

import os
import time

from prometheus_client.parser import text_string_to_metric_families

from wsgistack.observe.metrics.endpoint import answer
from wsgistack.observe.metrics.families import CONNECTIONS_REFUSED, OTHER, REQUEST_DURATION
from wsgistack.observe.metrics.requests import PROCESS_FAMILIES, RequestRecorder
from wsgistack.observe.metrics.slot import MAX_SERIES, MetricSlot
from wsgistack.server.metrics import ServerMetrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def total(found: dict, name: str, **labels: str) -> float:
    return sum(value for (sample, have), value in found.items()
               if sample == name and all((k, v) in have for k, v in labels.items()))


def test_a_forked_child_writes_what_its_master_reads():
    slot = MetricSlot(PROCESS_FAMILIES)
    pid = os.fork()
    if pid == 0:  # the child counts, as a worker does, and dies without any goodbye
        recorder = RequestRecorder(slot)
        for seconds in (0.001, 0.02, 0.3, 30.0):
            recorder.started()
            recorder.finished("GET", 200, "/app", seconds, 0, 5)
        os._exit(0)
    os.waitpid(pid, 0)
    (numbers,) = [values for family, labels, values in slot.read() if family is REQUEST_DURATION]
    # one in each of the buckets le 0.005, le 0.025, le 0.5 and +Inf; then the sum
    assert numbers == [1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 30.321]
    slot.close()


def test_a_full_slot_folds_new_series_into_other():
    slot = MetricSlot(PROCESS_FAMILIES)
    recorder = RequestRecorder(slot)
    for number in range(MAX_SERIES):
        recorder.refused(f"reason-{number}")
    recorder.refused("x" * 500)
    reasons = {labels for family, labels, _ in slot.read() if family is CONNECTIONS_REFUSED}
    assert (OTHER,) in reasons
    assert len(slot.read()) < MAX_SERIES
    counted = sum(values[0] for family, _, values in slot.read() if family is CONNECTIONS_REFUSED)
    assert counted == MAX_SERIES + 1  # nothing lost, only folded
    slot.close()


def test_ten_thousand_dead_workers_cost_the_scrape_nothing_and_lose_nothing():
    metrics = ServerMetrics(lambda: [])
    statuses = (200, 404, 500)
    early = b""
    for pid in range(10_000):
        if pid == 100:  # every status seen: the series the scrape will ever have
            early = metrics.render("")[1]
        slot = metrics.new_slot()
        metrics.worker_started(pid, slot)
        recorder = RequestRecorder(slot)
        recorder.started()
        recorder.finished("GET", statuses[pid % 3], "", 0.01, 0, 13)
        metrics.worker_gone(pid, "max_requests")
    late = metrics.render("")[1]
    assert len(late) < len(early) * 1.1  # the text grows with series, not with processes (a few digits more)
    live = metrics.new_slot()
    metrics.worker_started(10_000, live)
    RequestRecorder(live).finished("POST", 201, "", 0.2, 100, 0)
    started = time.monotonic()
    _, body = metrics.render("")
    elapsed = time.monotonic() - started
    found = samples(body)
    assert elapsed < 0.05, f"a scrape took {elapsed * 1000:.1f} ms"
    assert total(found, "http_server_request_duration_seconds_count") == 10_001
    assert total(found, "http_server_request_duration_seconds_count", http_response_status_code="500") == 3333
    assert total(found, "wsgistack_server_worker_restarts_total", cause="max_requests") == 10_000
    assert total(found, "wsgistack_worker_requests_total") == 1  # the live worker's only


def test_the_endpoint_answers_metrics_and_nothing_else():
    def render(accept: str) -> tuple[str, bytes]:
        return "text/plain; version=0.0.4; charset=utf-8", b"up 1\n"

    assert answer(b"GET /metrics HTTP/1.1\r\nHost: x", render).endswith(b"\r\n\r\nup 1\n")
    assert answer(b"HEAD /metrics HTTP/1.1", render).endswith(b"\r\n\r\n")
    assert answer(b"GET /metrics?x=1 HTTP/1.0", render).startswith(b"HTTP/1.1 200 OK")
    assert answer(b"GET / HTTP/1.1", render).startswith(b"HTTP/1.1 404")
    assert answer(b"DELETE /metrics HTTP/1.1", render).startswith(b"HTTP/1.1 405")
    assert answer(b"GET /metrics", render).startswith(b"HTTP/1.1 400")
    assert answer(b"GET /metrics SPDY/3", render).startswith(b"HTTP/1.1 400")

    def broken(accept: str) -> tuple[str, bytes]:
        raise RuntimeError("a bug")

    assert answer(b"GET /metrics HTTP/1.1", broken).startswith(b"HTTP/1.1 500")
