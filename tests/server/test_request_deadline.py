"""The gevent class's per-request deadline, in process: greenlets, gevent's hub, the runner, a fake sink."""

from __future__ import annotations

import logging

import pytest

gevent = pytest.importorskip("gevent")

from wsgistack.server.request_deadline import with_deadline  # noqa: E402
from wsgistack.wsgi.runner import run_app  # noqa: E402

DEADLINE = 0.1


class Sink:
    """Records what the runner sends."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def send_head(self, status, headers):
        self.calls.append(("head", status))

    def send_body(self, data):
        self.calls.append(("body", data))

    def send_file(self, fd, offset, count):
        self.calls.append(("file", count))

    def send_error(self, status, reason):
        self.calls.append(("error", status))

    def end(self):
        self.calls.append(("end",))


def serve(app) -> tuple[object, Sink]:
    """Run one request in a greenlet, as the gevent worker does."""
    sink = Sink()
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/t"}
    result = gevent.spawn(run_app, with_deadline(app, DEADLINE), environ, sink).get(timeout=10)
    return result, sink


def waits_in_call(environ, start_response):
    gevent.sleep(30)
    start_response("200 OK", [])
    return [b"late"]


def waits_in_iteration(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    gevent.sleep(30)
    yield b"never"


def test_wait_in_the_call_is_cut_with_a_500_and_the_stack_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="wsgistack.server"):
        result, sink = serve(waits_in_call)
    assert sink.calls == [("error", 500)]
    assert result.status == 500 and not result.complete
    stack = next(r.getMessage() for r in caplog.records if "ran past --timeout" in r.getMessage())
    assert "GET /t ran past --timeout (0.1s)" in stack
    assert 'line' in stack and " in waits_in_call" in stack


def test_wait_in_the_iteration_after_the_head_breaks_the_response_off():
    result, sink = serve(waits_in_iteration)
    assert sink.calls == [("head", "200 OK"), ("body", b"first")]
    assert not result.complete  # the connection is then closed by the protocol


def test_a_quick_request_is_not_cut_later():
    def quick(environ, start_response):
        start_response("200 OK", [])
        return iter([b"ok"])

    def request_then_wait():
        outcome = run_app(with_deadline(quick, DEADLINE), {"REQUEST_METHOD": "GET", "RAW_URI": "/q"}, sink)
        gevent.sleep(DEADLINE * 3)  # past the deadline: a timer left armed would throw here
        return outcome

    sink = Sink()
    result = gevent.spawn(request_then_wait).get(timeout=10)
    assert result.complete and sink.calls[-1] == ("end",)


def test_someone_elses_timeout_goes_through_unchanged():
    def own_timeout(environ, start_response):
        with gevent.Timeout(0.01):
            gevent.sleep(1)
        return [b"x"]

    with pytest.raises(gevent.Timeout):
        gevent.spawn(with_deadline(own_timeout, DEADLINE), {}, lambda *a: None).get(timeout=10)
