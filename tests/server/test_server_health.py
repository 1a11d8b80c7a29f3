"""The health endpoint (`--health-path`, /_wsgistack/health by default), answered by the server without the app:
black box against a real `wsgistack serve` of every worker class, and in process for the draining answer."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import pytest
from polling import wait_for
from rawhttp import Reader, closed_by_peer, get, request
from servers import WORKER_CLASSES

from wsgistack.http.parser import Limits, RequestHead
from wsgistack.http.trust import ProxyTrust
from wsgistack.observe.accesslog import AccessLog
from wsgistack.server.context import ServeContext, answer_health
from wsgistack.server.protocols.http import HTTPConnection
from wsgistack.wsgi.environ import ConnectionInfo

HEALTH = "/_wsgistack/health"


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_get_head_and_other_methods_in_every_worker_class(start_server, worker_class):
    # target_app answers every path with JSON of what it saw: a health answer from the app would show
    server = start_server("target_app:app", "-k", worker_class, "-w", "1")
    with server.connect() as sock:
        response = request(sock, get(HEALTH, extra="Connection: close\r\n"))
    assert (response.status, response.body) == (200, b"ready\n")
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("Content-Length") == "6"
    assert response.header("Cache-Control") == "no-store"

    with server.connect() as sock:
        head = request(sock, f"HEAD {HEALTH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        assert closed_by_peer(sock)
    assert (head.status, head.body, head.header("Content-Length")) == (200, b"", "6")

    with server.connect() as sock:
        post = request(sock, f"POST {HEALTH} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                             f"Connection: close\r\n\r\nabc".encode())
    assert (post.status, post.header("Allow")) == (405, "GET, HEAD")
    assert post.body == b"method not allowed: GET or HEAD\n"

    lines = server.access_lines()
    assert [line.split('"')[1:3] for line in lines[-3:]] == [
        [f"GET {HEALTH} HTTP/1.1", " 200 6 "], [f"HEAD {HEALTH} HTTP/1.1", " 200 0 "],
        [f"POST {HEALTH} HTTP/1.1", " 405 32 "]]


@pytest.mark.parametrize("worker_class", ["thread", "event", "gevent", "tornado"])
def test_the_connection_is_kept_alive_across_health_and_app_requests(start_server, worker_class):
    server = start_server("target_app:app", "-k", worker_class, "-w", "1")
    with server.connect() as sock:
        reader = Reader(sock)
        # pipelined: health checks between app requests, each answered in turn
        sock.sendall(get("/first") + get(HEALTH) + get(HEALTH) + get("/last"))
        first, health, again, last = reader.responses(4)
        assert b'"PATH_INFO": "/first"' in first.body
        assert (health.status, health.body, health.header("Connection")) == (200, b"ready\n", None)
        assert again.body == b"ready\n"
        assert b'"PATH_INFO": "/last"' in last.body
        assert request(sock, get(HEALTH)).body == b"ready\n"  # and after the app, on the same connection


@pytest.mark.parametrize("worker_class", ["sync", "event"])
def test_a_health_probe_with_a_body_is_answered_and_the_body_dropped(start_server, worker_class):
    server = start_server("target_app:app", "-k", worker_class, "-w", "1")
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(f"GET {HEALTH} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     f"5\r\nhello\r\n0\r\n\r\n".encode() + get("/next", extra="Connection: close\r\n"))
        responses = reader.responses(2)
    assert responses[0].body == b"ready\n"
    if worker_class != "sync":  # the sync worker closes after every response
        assert b'"PATH_INFO": "/next"' in responses[1].body


def test_only_the_exact_target_is_the_endpoint(start_server):
    server = start_server("target_app:app", "-w", "1")
    for target in (f"{HEALTH}?verbose=1", f"{HEALTH}/", "/_wsgistack/Health", "/_wsgistack/%68ealth"):
        with server.connect() as sock:
            response = request(sock, get(target, extra="Connection: close\r\n"))
        assert response.status == 200 and response.body.startswith(b"{"), target  # the app's JSON


def test_the_path_can_be_moved_or_turned_off(start_server):
    moved = start_server("target_app:app", "-w", "1", "--health-path", "/up")
    with moved.connect() as sock:
        assert request(sock, get("/up", extra="Connection: close\r\n")).body == b"ready\n"
    with moved.connect() as sock:
        assert request(sock, get(HEALTH, extra="Connection: close\r\n")).body.startswith(b"{")
    off = start_server("target_app:app", "-w", "1", "--health-path", "")
    with off.connect() as sock:
        assert request(sock, get(HEALTH, extra="Connection: close\r\n")).body.startswith(b"{")


def test_the_endpoint_comes_before_mounts(start_server):
    server = start_server("", "--mount", "/admin=admin_app:app", "-w", "1")
    with server.connect() as sock:
        assert request(sock, get(HEALTH, extra="Connection: close\r\n")).body == b"ready\n"


def test_http_1_0_gets_its_answer_and_the_close(start_server):
    server = start_server("target_app:app", "-w", "1")
    with server.connect() as sock:
        response = request(sock, get(HEALTH, version="1.0"))
        assert closed_by_peer(sock)
    assert (response.status, response.body) == (200, b"ready\n")


@pytest.mark.parametrize("worker_class", ["thread", "event", "gevent", "tornado"])
def test_a_stopping_server_says_draining_on_a_kept_alive_connection(start_server, worker_class):
    server = start_server("target_app:app", "-k", worker_class, "-w", "1", "--threads", "2")
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(get(HEALTH))
        assert reader.one().body == b"ready\n"
        server.signal(signal.SIGTERM)

        def answer():
            sock.sendall(get(HEALTH))  # every 20 ms: never idle long enough for the stopping worker to close it
            response = reader.one()
            return response if response.status != 200 else None

        response = wait_for(answer, timeout=10, message="the draining answer")
        assert (response.status, response.body, response.header("Connection")) == (503, b"draining\n", "close")
        assert closed_by_peer(sock)


# --- in process: the draining answer ---------------------------------------------------------------------------

def context(tmp_path: Path, draining: bool, calls: list) -> ServeContext:
    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Length", "3")])
        return [b"app"]

    return ServeContext(app=app, limits=Limits(), client_timeout=5.0,
                        access_log=AccessLog(str(tmp_path / "access.log"), "combined"), trust=ProxyTrust(("127.0.0.1",)),
                        errors=None, multithread=False, keep_alive=lambda: True, on_request=lambda: None,
                        beat=lambda: None, draining=draining)


def head(method: str = "GET", version: str = "1.1") -> RequestHead:
    return RequestHead(method, HEALTH, version, [("Host", "t"), ("User-Agent", "probe")], keep_alive=True,
                       chunked=False, content_length=None, expect_continue=False)


INFO = ConnectionInfo("127.0.0.1", "8000", "10.1.2.3", "5555")


def test_a_draining_worker_answers_503_and_closes(tmp_path):
    ctx = context(tmp_path, draining=True, calls=[])
    data, keep = answer_health(ctx, INFO, head(), keep_alive=True)
    assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nConnection: close\r\n" in data and data.endswith(b"\r\n\r\ndraining\n")
    assert keep is False
    assert '10.1.2.3 - - [' in (tmp_path / "access.log").read_text()
    assert f'"GET {HEALTH} HTTP/1.1" 503 9 "-" "probe"' in (tmp_path / "access.log").read_text()


def test_a_serving_worker_answers_200_and_keeps_the_connection(tmp_path):
    ctx = context(tmp_path, draining=False, calls=[])
    data, keep = answer_health(ctx, INFO, head(version="1.0"), keep_alive=True)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nready\n")
    assert b"\r\nConnection: keep-alive\r\n" in data  # said to an HTTP/1.0 client that asked for it
    assert keep is True
    data, keep = answer_health(ctx, INFO, head("HEAD"), keep_alive=True)
    assert data.endswith(b"\r\n\r\n") and b"Content-Length: 6\r\n" in data


def test_the_flag_flips_the_answer_on_a_live_connection(tmp_path):
    # a real connection of the blocking protocol over a socket pair: 200, then the worker starts draining, 503
    calls: list[str] = []
    ctx = context(tmp_path, draining=False, calls=calls)
    server_side, client = socket.socketpair()
    client.settimeout(5)
    connection = HTTPConnection(server_side, None, ctx)
    served = []
    worker = threading.Thread(target=lambda: served.append(connection.serve()))
    worker.start()
    reader = Reader(client)
    client.sendall(get("/app") + get(HEALTH))
    app_answer, ready = reader.responses(2)
    worker.join(5)
    assert (app_answer.body, ready.body, served) == (b"app", b"ready\n", [True])

    ctx.draining = True
    worker = threading.Thread(target=lambda: served.append(connection.serve()))
    worker.start()
    client.sendall(get(HEALTH))
    draining = reader.one()
    worker.join(5)
    assert (draining.status, draining.body, draining.header("Connection")) == (503, b"draining\n", "close")
    assert served == [True, False]  # the connection closes after the 503
    assert calls == ["/app"]
    connection.close()
    client.close()
