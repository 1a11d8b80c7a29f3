"""HTTP/1.1 and WSGI behaviour of a running `wsgistack serve APP -w 2`, for every worker class.

The sync worker, like gunicorn's, answers `Connection: close` and closes after each response; the other
worker classes keep connections alive and answer pipelined requests in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys

import pytest
import requests
from servers import APPS, WORKER_CLASSES, Server
from polling import wait_for
from rawhttp import Reader, closed_by_peer, get, request

BIG = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[str, str]:
    """A 10 MiB file of pseudo-random bytes and its sha256."""
    path = tmp_path_factory.mktemp("files") / "big.bin"
    data = hashlib.sha256(b"seed").digest() * (BIG // 32)
    path.write_bytes(data)
    return str(path), hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module", params=WORKER_CLASSES)
def server(request, tmp_path_factory, big_file):
    """One server per worker class for the whole module (these tests do not disturb it)."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    srv = Server(folder, "behaviour_app:app", ["-w", "2", "-k", request.param, "--max-body-size", "1m",
                                                "--timeout", "30"],
                 env={"BEHAVIOUR_BIG_FILE": big_file[0]})
    srv.worker_class = request.param
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def keeps_alive(server: Server) -> bool:
    return server.worker_class != "sync"


def buffers_body(server: Server) -> bool:
    """Worker classes that read the whole request before calling the app."""
    return server.worker_class in ("event", "tornado")


def test_hello(server):
    response = requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=10)
    assert response.status_code == 200
    assert response.text == "hello\n"
    assert response.headers["Server"] == "wsgistack"
    assert re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", response.headers["Date"])
    assert response.headers["Content-Length"] == "6"


def test_keep_alive_or_close(server):
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(get())
        first = reader.one()
        assert first.status == 200
        if keeps_alive(server):
            assert first.header("Connection") is None
            sock.sendall(get())
            assert reader.one().body == b"hello\n"
        else:
            assert first.header("Connection") == "close"
            assert closed_by_peer(sock)


def test_http10_keep_alive_on_request(server):
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = reader.one()
        assert response.status == 200
        if keeps_alive(server):
            assert response.header("Connection").lower() == "keep-alive"
            sock.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
            assert reader.one().header("Connection") == "close"
        assert closed_by_peer(sock)


def test_pipelining_four_requests(server):
    with server.connect() as sock:
        sock.sendall(get("/hello") + get("/stream?n=2") + get("/pid") + get("/hello"))
        reader = Reader(sock)
        if keeps_alive(server):
            responses = reader.responses(4)
            assert [r.status for r in responses] == [200] * 4
            assert responses[0].body == b"hello\n"
            assert responses[1].body == b"line 0\nline 1\n"
            assert responses[2].body.isdigit()
            assert responses[3].body == b"hello\n"
        else:
            responses = reader.responses(4)
            assert len(responses) == 1 and responses[0].body == b"hello\n"
            assert reader.closed


def test_chunked_upload_300k(server):
    body = os.urandom(300 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7000]), body[i:i + 7000])
                      for i in range(0, len(body), 7000))
    with server.connect() as sock:
        response = request(sock, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + chunks + b"0\r\n\r\n")
    assert response.status == 200
    result = json.loads(response.body)
    assert result == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(), "input_terminated": True}


def test_expect_100_continue(server):
    body = b"x" * 5000
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        interim = reader.one()
        assert interim.status == 100
        sock.sendall(body)
        final = reader.one()
    assert final.status == 200
    assert json.loads(final.body)["length"] == 5000


def test_expect_100_continue_not_read_closes(server):
    with server.connect() as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        if buffers_body(server):
            # documented difference: the event worker reads every body before the app runs, so it says
            # 100 Continue at once, and the connection stays usable
            assert reader.one().status == 100
            sock.sendall(b"x" * 5000)
            assert reader.one().status == 200
            sock.sendall(get())
            assert reader.one().body == b"hello\n"
            return
        response = reader.one()
        assert response.status == 200  # no 100: the app never asked for the body
        assert response.header("Connection") == "close"
        assert closed_by_peer(sock)


def test_unread_body_is_drained_before_next_request(server):
    if not keeps_alive(server):
        pytest.skip("the sync worker closes after every response")
    with server.connect() as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nGET /boom x" + get())
        reader = Reader(sock)
        assert [r.body for r in reader.responses(2)] == [b"ignored\n", b"hello\n"]


def test_head_has_no_body(server):
    with server.connect() as sock:
        sock.sendall(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: 6" in head
        assert rest == b""
        if keeps_alive(server):
            sock.sendall(get())
            follow = sock.recv(4096)
            assert follow.startswith(b"HTTP/1.1 200"), "HEAD must not have sent a body"
        else:
            assert closed_by_peer(sock)


def test_streamed_response_is_chunked(server):
    with server.connect() as sock:
        response = request(sock, get("/stream?n=50"))
    assert response.status == 200
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.chunked
    assert response.body == b"".join(b"line %d\n" % i for i in range(50))


def test_streamed_response_http10_is_close_delimited(server):
    with server.connect() as sock:
        sock.sendall(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        reader = Reader(sock)
        response = reader.one()
    assert response.header("Transfer-Encoding") is None
    assert response.body == b"line 0\nline 1\nline 2\n"


def test_file_wrapper_10mib(server, big_file):
    response = requests.get(f"http://127.0.0.1:{server.port}/bigfile", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(BIG)
    assert hashlib.sha256(response.content).hexdigest() == big_file[1]


@pytest.mark.parametrize("case, status", [
    ("header_70k", 431),
    ("line_20k", 414),
    ("too_many_fields", 431),
    ("body_over_limit", 413),
    ("garbage", 400),
    ("smuggle_cl_te", 400),
    ("duplicate_cl", 400),
    ("obs_fold", 400),
    ("no_host", 400),
    ("bad_chunk", 400),
])
def test_bad_requests(server, case, status):
    data = {
        "header_70k": get(extra="X-Big: " + "a" * 70 * 1024 + "\r\n"),
        "line_20k": get("/" + "a" * 20 * 1024),
        "too_many_fields": get(extra="".join(f"X-F{i}: v\r\n" for i in range(150))),
        "body_over_limit": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 1000,
        "garbage": b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
        "smuggle_cl_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n0\r\n\r\nGET /boom HTTP/1.1\r\nHost: t\r\n\r\n",
        "duplicate_cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "obs_fold": b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
        "no_host": b"GET /hello HTTP/1.1\r\n\r\n",
        "bad_chunk": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    }[case]
    with server.connect() as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it read all of a huge request
        reader = Reader(sock)
        responses = reader.responses(2)
        assert [r.status for r in responses] == [status], "exactly one error response, nothing smuggled"
        assert responses[0].header("Connection") == "close"
        assert reader.closed or closed_by_peer(sock)


def test_chunked_body_over_limit_is_413(server):
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert Reader(sock).one().status == 413


def test_app_exception_is_500_then_next_request_works(server):
    response = requests.get(f"http://127.0.0.1:{server.port}/boom", timeout=10)
    assert response.status_code == 500
    assert "boom for the test" not in response.text  # no traceback to the client
    wait_for(lambda: "RuntimeError: boom for the test" in server.log(), message="the traceback in the log")
    assert requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=10).status_code == 200


def test_header_injection_from_app_is_500(server):
    with server.connect() as sock:
        response = request(sock, get("/bad-header"))
    assert response.status == 500
    assert response.header("Set-Cookie") is None


def test_full_environ(server):
    response = requests.get(f"http://127.0.0.1:{server.port}/environ?a=1&b=%20", timeout=10,
                            headers={"X-Custom": "yes", "Cookie": "k=v"})
    env = response.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert env["HTTP_COOKIE"] == "k=v"
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.multithread"] is (server.worker_class != "sync")
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.input"] == "<InputStream>"
    assert env["wsgi.errors"] == "<ErrorStream>"
    assert env["wsgi.file_wrapper"] == "<type>"
    assert env["SERVER_SOFTWARE"].startswith("wsgistack")


def test_underscore_headers_are_dropped(server):
    with server.connect() as sock:
        response = request(sock, get("/environ", extra="X_Forwarded_For: 6.6.6.6\r\n"))
    env = json.loads(response.body)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in env


# every class: the blocking ones read with MSG_DONTWAIT first and wait only when nothing came, and gevent's
# sockets get a timeout of their own (BlockingConnection.try_first); a stalled client is still cut
TIMED_CLASSES = ["sync", "thread", "event", "gevent"]


@pytest.mark.parametrize("worker_class", TIMED_CLASSES)
def test_slow_head_times_out_with_408(start_server, worker_class):
    server = start_server("behaviour_app:app", "--client-timeout", "1", "-k", worker_class)
    with server.connect() as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")  # never finishes the head
        assert Reader(sock).one().status == 408


def test_access_log_one_combined_line_per_request(server):
    marker = f"marker-{os.getpid()}-{id(server)}"
    for i in range(3):
        requests.get(f"http://127.0.0.1:{server.port}/hello?{marker}={i}", timeout=10,
                     headers={"User-Agent": "ua-test", "Referer": "http://ref/"})
    def marked():
        found = [line for line in server.access_lines() if marker in line]
        return found if len(found) >= 3 else None
    lines = wait_for(marked, message="three access log lines")
    combined = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                          r'"GET /hello\?%s=\d HTTP/1\.1" 200 6 "http://ref/" "ua-test"$' % marker)
    assert all(combined.match(line) for line in lines), lines
    assert len(lines) == 3


def test_unix_socket(start_server):
    server = start_server("behaviour_app:app", "-w", "2", unix=True)
    assert server.socket_path.exists()
    with server.connect() as sock:
        response = request(sock, get("/environ"))
    env = json.loads(response.body)
    assert response.status == 200
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert server.stop() == 0
    assert not server.socket_path.exists()


def test_fd_bind(tmp_path):
    """--bind fd://N serves on a socket handed over by a parent (systemd socket activation style)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    log = tmp_path / "fd.log"
    proc = subprocess.Popen([sys.executable, "-m", "wsgistack", "serve", "behaviour_app:app",
                             "--bind", f"fd://{listener.fileno()}", "--error-log", str(log)],
                            cwd=APPS, pass_fds=[listener.fileno()])
    listener.close()
    try:
        wait_for(lambda: log.exists() and "listening at" in log.read_text(), message="the fd server")
        assert requests.get(f"http://127.0.0.1:{port}/hello", timeout=10).text == "hello\n"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


@pytest.mark.parametrize("worker_class", TIMED_CLASSES)
def test_slow_body_times_out_with_408(start_server, worker_class):
    server = start_server("behaviour_app:app", "--client-timeout", "1", "-k", worker_class)
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")  # 90 missing
        response = Reader(sock).one()
    assert response.status == 408
    assert response.header("Connection") == "close"


def test_ipv6_bind(start_server, tmp_path):
    probe = socket.socket(socket.AF_INET6)
    try:
        probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    finally:
        probe.close()
    log = tmp_path / "v6.log"
    proc = subprocess.Popen([sys.executable, "-m", "wsgistack", "serve", "behaviour_app:app",
                             "--bind", "[::1]:0", "--error-log", str(log)], cwd=APPS)
    try:
        match = wait_for(lambda: log.exists() and re.search(r"listening at http://\[::1\]:(\d+)", log.read_text()),
                         message="the IPv6 server")
        with socket.create_connection(("::1", int(match.group(1))), timeout=10) as sock:
            response = request(sock, get("/environ", host="[::1]"))
        env = json.loads(response.body)
        assert env["REMOTE_ADDR"] == "::1"
        assert env["SERVER_NAME"] == "[::1]"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_json_access_log(start_server):
    server = start_server("behaviour_app:app", "--access-log-format", "json")
    requests.get(f"http://127.0.0.1:{server.port}/hello?x=1", timeout=10, headers={"User-Agent": "json-ua"})
    line = wait_for(lambda: server.access_lines(), message="an access log line")[0]
    record = json.loads(line)
    assert record["request_uri"] == "/hello?x=1"
    assert record["status"] == 200
    assert record["body_bytes_sent"] == 6
    assert record["http_user_agent"] == "json-ua"
    assert float(record["request_time"]) >= 0
