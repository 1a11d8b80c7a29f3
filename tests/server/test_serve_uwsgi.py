"""`wsgistack serve --protocol uwsgi`: a real nginx (uwsgi_pass, Debian's uwsgi_params) in front of a real Flask
app, over a unix socket and TCP, for the sync, thread, event and gevent workers; malformed packets sent straight
to the socket (refused, the app never called, the worker still serving); the --protocol-allow-from list.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
import time
from pathlib import Path

import pytest
import requests
from polling import wait_for

sys.path.insert(0, str(Path(__file__).parent.parent / "proxy"))
from nginx import nginx_fixture  # noqa: F401 - the start_nginx fixture

from wsgistack.gateway.uwsgi import encode_packet

APP = "uwsgi_app:app"
BODY = os.urandom(5 << 20)
NGINX_SITE = """
server {
    listen 127.0.0.1:{port};
    client_max_body_size 20m;
    location / {
        include /etc/nginx/uwsgi_params;
        uwsgi_pass {upstream};
    }
    location /stream {
        include /etc/nginx/uwsgi_params;
        uwsgi_buffering off;
        uwsgi_pass {upstream};
    }
    location = /renamed {
        include /etc/nginx/uwsgi_params;
        uwsgi_param PATH_INFO /environ;
        uwsgi_pass {upstream};
    }
    location /app/ {
        include /etc/nginx/uwsgi_params;
        uwsgi_param SCRIPT_NAME /app;
        uwsgi_modifier1 30;
        uwsgi_pass {upstream};
    }
}
"""
GET = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/hello", "PATH_INFO": "/hello", "QUERY_STRING": "",
       "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "192.0.2.7", "SERVER_NAME": "t", "SERVER_PORT": "80"}


def serve_uwsgi(start_server, tmp_path: Path, worker: str, *args: str, unix: bool = False):
    """A uwsgi server of `worker` class and the file its app appends a line to on every call."""
    calls = tmp_path / f"calls-{worker}-{'unix' if unix else 'tcp'}.txt"
    calls.touch()
    server = start_server(APP, "--protocol", "uwsgi", "-k", worker, "-w", "1", *args, unix=unix,
                          env={"UWSGI_APP_CALLS": str(calls)})
    return server, calls


def exchange(server, data: bytes, shut: bool = False) -> bytes:
    """Send raw bytes to the uwsgi socket; everything that comes back until the server closes."""
    with server.connect() as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while piece := sock.recv(65536):
                chunks.append(piece)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


# -- through nginx ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("worker", "unix"), [("sync", True), ("sync", False), ("thread", True), ("thread", False),
                                              ("event", True), ("event", False), ("gevent", False)])
def test_nginx_serves_the_flask_app_over_uwsgi(start_server, start_nginx, tmp_path, worker, unix):
    server, calls = serve_uwsgi(start_server, tmp_path, worker, unix=unix)
    upstream = f"unix:{server.socket_path}" if unix else f"127.0.0.1:{server.port}"
    nginx = start_nginx(NGINX_SITE, upstream=upstream)

    hello = requests.get(nginx.url("/hello"), timeout=10)
    assert (hello.status_code, hello.text) == (200, "hello\n")
    assert "chunked" not in hello.headers.get("Transfer-Encoding", "")

    echoed = requests.post(nginx.url("/echo"), data=BODY, timeout=20)
    assert echoed.json() == {"length": len(BODY), "sha256": hashlib.sha256(BODY).hexdigest()}

    seen = requests.get(nginx.url("/environ?x=1"), headers={"X-Test": "yes"}, timeout=10).json()
    assert seen["SCRIPT_NAME"] == "" and seen["PATH_INFO"] == "/environ" and seen["QUERY_STRING"] == "x=1"
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["HTTP_X_TEST"] == "yes"
    assert seen["url"] == "http://127.0.0.1/environ?x=1"

    mounted = requests.get(nginx.url("/app/environ?y=2"), timeout=10).json()
    assert (mounted["SCRIPT_NAME"], mounted["PATH_INFO"], mounted["REQUEST_URI"]) == ("/app", "/environ",
                                                                                     "/app/environ?y=2")
    assert mounted["url"] == "http://127.0.0.1/app/environ?y=2"

    # nginx sends both PATH_INFO vars (the included one first): the later one wins, as in uWSGI
    assert requests.get(nginx.url("/renamed"), timeout=10).json()["PATH_INFO"] == "/environ"
    head = requests.head(nginx.url("/hello"), timeout=10)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "6", b"")

    gate = tmp_path / f"gate-{worker}"
    with requests.get(nginx.url(f"/stream?gate={gate}"), stream=True, timeout=10) as streamed:
        # the app is still waiting for the gate: this piece can only have come before it finished
        assert streamed.raw.read(6) == b"first\n"
        gate.touch()
        assert streamed.raw.read() == b"second\n"

    health = requests.get(nginx.url("/_wsgistack/health"), timeout=10)
    assert (health.status_code, health.text) == (200, "ready\n")
    assert "_wsgistack" not in calls.read_text()  # answered without the app
    log = wait_for(lambda: (text := server.access_log.read_text()).count("\n") >= 8 and text,
                   message="eight access log lines")
    assert '"GET /hello HTTP/1.1" 200 6' in log and '"GET /_wsgistack/health HTTP/1.1" 200' in log
    assert log.startswith("127.0.0.1 ")
    assert "[error]" not in nginx.error_log()  # no reset, no premature close, no bad header seen by nginx


@pytest.mark.parametrize("worker", ["sync", "event"])
def test_a_body_over_max_body_size_is_refused_with_413_through_nginx(start_server, start_nginx, tmp_path, worker):
    # refused before the body is read: it is read and dropped after the answer (no reset, which nginx would
    # report as a 502)
    server, calls = serve_uwsgi(start_server, tmp_path, worker, "--max-body-size", "1m")
    nginx = start_nginx(NGINX_SITE, upstream=f"127.0.0.1:{server.port}")
    refused = requests.post(nginx.url("/echo"), data=BODY, timeout=20)
    assert refused.status_code == 413
    assert calls.read_text() == ""
    # an app that answers without reading the body: the rest is dropped after the answer, which arrives whole
    unread = requests.post(nginx.url("/hello"), data=BODY[:900_000], timeout=20)
    assert unread.status_code == 405 and "Method Not Allowed" in unread.text
    assert requests.get(nginx.url("/hello"), timeout=10).text == "hello\n"
    assert "[error]" not in nginx.error_log()


# -- malformed packets straight to the socket --------------------------------------------------------------


def pair(key: bytes, value: bytes) -> bytes:
    return struct.pack("<H", len(key)) + key + struct.pack("<H", len(value)) + value


def raw_packet(block: bytes, modifier1: int = 0) -> bytes:
    return struct.pack("<BHB", modifier1, len(block), 0) + block


MALFORMED = {  # name -> (bytes, shut our side after sending, the status expected (0: closed without one))
    "modifier1 5": (encode_packet(GET, modifier1=5), False, 400),
    "empty var block": (raw_packet(b""), False, 400),
    "key past the block": (raw_packet(pair(b"REQUEST_METHOD", b"GET") + struct.pack("<H", 40) + b"X"), False, 400),
    "value past the block": (raw_packet(pair(b"REQUEST_METHOD", b"GET") + b"\x04\x00PATH\x50\x00/"), False, 400),
    "no REQUEST_METHOD": (encode_packet({"PATH_INFO": "/hello"}), False, 400),
    "non-ASCII key": (raw_packet(pair(b"REQUEST_METHOD", b"GET") + pair(b"K\xe9Y", b"v")), False, 400),
    "bad CONTENT_LENGTH": (encode_packet({**GET, "CONTENT_LENGTH": "-5"}), False, 400),
    "var over the field size": (encode_packet({**GET, "HTTP_X": "v" * 3000}), False, 431),
    "var block over the head limit": (struct.pack("<BHB", 0, 20000, 0) + b"\0" * 100, False, 431),
    "body over max-body-size": (encode_packet({**GET, "CONTENT_LENGTH": str(2 << 20)}) + b"x" * 1000, False, 413),
    "truncated vars": (encode_packet(GET)[:-5], True, 400),
    "header only": (b"\x00\x10", True, 400),
}


@pytest.mark.parametrize("worker", ["sync", "thread", "event", "gevent"])
def test_malformed_packets_are_refused_without_the_app_and_the_worker_serves_on(start_server, tmp_path, worker):
    # the var block may take 1000 + 10 * (1000 + 4) + 4 bytes: what a head within these limits may take
    server, calls = serve_uwsgi(start_server, tmp_path, worker, "--limit-request-field-size", "1000",
                                "--limit-request-fields", "10", "--limit-request-line", "1000",
                                "--max-body-size", "1m")
    workers = server.wait_workers(1)
    for name, (data, shut, status) in MALFORMED.items():
        answer = exchange(server, data, shut)
        assert status_of(answer) == status, (name, answer[:80])
    assert calls.read_text() == ""  # no refused packet reached the app
    assert server.log().count("uwsgi: refused a packet") == len(MALFORMED)

    answer = exchange(server, encode_packet(GET))
    assert status_of(answer) == 200 and answer.endswith(b"\r\n\r\nhello\n")
    assert calls.read_text() == "GET /hello\n"
    assert server.wait_workers(1) == workers  # the same worker, alive
    # the client's address is the one the web server gave in REMOTE_ADDR
    assert wait_for(lambda: '192.0.2.7 - - ' in server.access_log.read_text(), message="the access log line")


@pytest.mark.parametrize("worker", ["sync", "thread", "event", "gevent"])
def test_a_peer_that_stalls_inside_its_packet_gets_408_at_the_client_timeout(start_server, tmp_path, worker):
    # gevent's sockets ignored MSG_DONTWAIT and waited for good: a stalled peer held its greenlet forever
    server, calls = serve_uwsgi(start_server, tmp_path, worker, "--client-timeout", "1")
    started = time.monotonic()
    answer = exchange(server, struct.pack("<BHB", 0, 64, 0))  # a header promising 64 bytes of vars, no more
    assert status_of(answer) == 408
    assert time.monotonic() - started < 5
    assert calls.read_text() == ""


def test_an_idle_connection_that_sends_nothing_is_closed_quietly(start_server, tmp_path):
    server, calls = serve_uwsgi(start_server, tmp_path, "sync")
    assert exchange(server, b"", shut=True) == b""
    assert "refused" not in server.log() and calls.read_text() == ""


def test_a_streamed_response_goes_out_unbuffered_and_close_delimited(start_server, tmp_path):
    server, _ = serve_uwsgi(start_server, tmp_path, "event")
    gate = tmp_path / "gate"
    with server.connect() as sock:
        sock.sendall(encode_packet({**GET, "REQUEST_URI": f"/stream?gate={gate}", "PATH_INFO": "/stream",
                                    "QUERY_STRING": f"gate={gate}"}))
        received = b""
        while not received.endswith(b"first\n"):
            piece = sock.recv(65536)
            assert piece, received
            received += piece
        head = received.partition(b"\r\n\r\n")[0].lower()
        assert b"transfer-encoding" not in head and b"content-length" not in head
        assert b"connection: close" in head
        gate.touch()
        rest = b"".join(iter(lambda: sock.recv(65536), b""))
    assert rest == b"second\n"


# -- the allow-list ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("worker", ["sync", "event"])
def test_a_tcp_peer_not_allowed_is_closed_without_an_answer(start_server, tmp_path, worker):
    server, calls = serve_uwsgi(start_server, tmp_path, worker, "--protocol-allow-from", "10.0.0.1")
    assert exchange(server, encode_packet(GET)) == b""
    wait_for(lambda: "connection from 127.0.0.1 refused: not in --protocol-allow-from" in server.log(),
             message="the refusal in the log")
    assert calls.read_text() == ""


def test_a_unix_socket_peer_is_always_allowed(start_server, tmp_path):
    server, calls = serve_uwsgi(start_server, tmp_path, "sync", "--protocol-allow-from", "10.0.0.1", unix=True)
    assert status_of(exchange(server, encode_packet(GET))) == 200
    assert calls.read_text() == "GET /hello\n"


def test_an_allowed_tcp_peer_is_served(start_server, tmp_path):
    server, _ = serve_uwsgi(start_server, tmp_path, "thread", "--protocol-allow-from", "127.0.0.1")
    assert status_of(exchange(server, encode_packet(GET))) == 200
