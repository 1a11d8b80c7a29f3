"""`wsgistack serve --protocol fastcgi`: a real nginx (fastcgi_pass, Debian's fastcgi_params, fastcgi_keep_conn
with an upstream keepalive pool) in front of a real Flask app, over a unix socket and TCP, for the sync, thread,
event and gevent workers; records sent straight to the socket: keep-alive by FCGI_KEEP_CONN, the management
records, and malformed input (refused, the app never called, the worker still serving); --protocol-allow-from.
Last, the event protocol in process (a real loop, a fake transport): the orderings a real peer rarely produces.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from polling import wait_for

sys.path.insert(0, str(Path(__file__).parent.parent / "proxy"))
from nginx import nginx_fixture  # noqa: F401 - the start_nginx fixture

from wsgistack.gateway import fastcgi as f
from wsgistack.http.parser import Limits
from wsgistack.http.trust import ProxyTrust
from wsgistack.observe.accesslog import AccessLog
from wsgistack.server.context import ServeContext
from wsgistack.server.protocols.fastcgi import fastcgi_environ
from wsgistack.server.protocols.fastcgi_event import EventFastCGIProtocol
from wsgistack.server.protocols.http_event import ConnectionRegistry

BODY = os.urandom(5 << 20)
APP_CODE = '''import hashlib
import os
import time
from pathlib import Path

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.before_request
def note_the_call():
    with open(os.environ["FASTCGI_APP_CALLS"], "a") as calls:
        calls.write(request.path + "\\n")


@app.get("/hello")
def hello():
    return "hello\\n"


@app.post("/echo")
def echo():
    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest())


@app.get("/environ")
def environ():
    seen = {key: value for key, value in request.environ.items() if isinstance(value, str)}
    return jsonify({**seen, "url": request.url})


@app.get("/big")
def big():
    return b"z" * int(request.args["n"])


@app.get("/short")
def short():
    return Response([b"12345"], headers={"Content-Length": "10"})


@app.get("/boom")
def boom():
    raise RuntimeError("boom before the head")


@app.get("/late-boom")
def late_boom():
    def pieces():
        yield b"begun"
        raise RuntimeError("boom after the head")
    return Response(pieces())


@app.get("/stream")
def stream():
    gate = Path(request.args["gate"])

    def pieces():
        yield "first\\n"
        deadline = time.monotonic() + 10
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        yield "second\\n"
    return Response(pieces(), mimetype="text/plain")
'''
NGINX_SITE = """
upstream app {
    server {upstream};
    {keepalive}
}
server {
    listen 127.0.0.1:{port};
    client_max_body_size 20m;
    location / {
        include /etc/nginx/fastcgi_params;
        {keep_conn}
        fastcgi_pass app;
    }
    location /stream {
        include /etc/nginx/fastcgi_params;
        {keep_conn}
        fastcgi_buffering off;
        fastcgi_pass app;
    }
    location /app/ {
        fastcgi_split_path_info ^(/app)(/.*)$;
        include /etc/nginx/fastcgi_params;
        fastcgi_param PATH_INFO $fastcgi_path_info;
        {keep_conn}
        fastcgi_pass app;
    }
    location /bare/ {
        fastcgi_split_path_info ^(/bare)(/.*)$;
        include /etc/nginx/fastcgi_params;
        {keep_conn}
        fastcgi_pass app;
    }
}
"""
GET = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/hello", "SCRIPT_NAME": "/hello", "QUERY_STRING": "",
       "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "192.0.2.7", "SERVER_NAME": "t", "SERVER_PORT": "80"}


def serve_fastcgi(start_server, tmp_path: Path, worker: str, *args: str, unix: bool = False):
    """A FastCGI server of `worker` class and the file its app appends each request's path to."""
    (tmp_path / "fastcgi_app.py").write_text(APP_CODE)
    calls = tmp_path / f"calls-{worker}-{'unix' if unix else 'tcp'}.txt"
    calls.touch()
    server = start_server("fastcgi_app:app", "--protocol", "fastcgi", "-k", worker, "-w", "1", *args,
                          unix=unix, cwd=tmp_path, env={"FASTCGI_APP_CALLS": str(calls)})
    return server, calls


def server_side_connections(server) -> set[int]:
    """The inodes of the server's accepted, connected sockets, as the kernel lists them (black-box)."""
    if server.socket_path is not None:
        rows = Path("/proc/net/unix").read_text().splitlines()[1:]
        # Num RefCount Protocol Flags Type St Inode Path: St 03 is connected; the listener is 01
        return {int(row.split()[6]) for row in rows
                if row.endswith(f" {server.socket_path}") and row.split()[5] == "03"}
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    # sl local_address rem_address st ... inode: st 01 is ESTABLISHED, 06 TIME_WAIT (a closed connection)
    return {int(row.split()[9]) or -1 for row in rows
            if int(row.split()[1].split(":")[1], 16) == server.port and row.split()[3] in ("01", "06")}


def read_answer(sock: socket.socket, request_id: int = 1) -> list[f.Record]:
    """Records until the request's END_REQUEST (or the server's close)."""
    data = b""
    while not any(r.kind == f.END_REQUEST and r.request_id == request_id for r in f.read_records(data)):
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:  # closed with our request unread
            break
        if not piece:
            break
        data += piece
    return f.read_records(data)


def stdout_of(records: list[f.Record]) -> tuple[int, list[tuple[str, str]], bytes]:
    assert records and records[-1].kind == f.END_REQUEST, records
    return f.split_cgi_response(b"".join(r.content for r in records if r.kind == f.STDOUT))


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# -- through nginx ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("worker", "unix"), [("sync", True), ("sync", False), ("thread", True), ("thread", False),
                                              ("event", True), ("event", False), ("gevent", False)])
def test_nginx_serves_the_flask_app_over_fastcgi(start_server, start_nginx, tmp_path, worker, unix):
    server, calls = serve_fastcgi(start_server, tmp_path, worker, unix=unix)
    upstream = f"unix:{server.socket_path}" if unix else f"127.0.0.1:{server.port}"
    # the sync worker closes after each request, as it does over HTTP (it would be pinned to an idle connection
    # otherwise); nginx cannot be told so in FastCGI, and a request sent on a connection it cached as the
    # worker closed it is retried only when idempotent: behind the sync worker, no fastcgi_keep_conn and no
    # upstream keepalive (with fastcgi_buffering off, nginx 1.22 caches a connection at END_REQUEST even
    # without fastcgi_keep_conn, when the upstream has a keepalive pool)
    keep_conn = "" if worker == "sync" else "fastcgi_keep_conn on;"
    keepalive = "" if worker == "sync" else "keepalive 4;"
    nginx = start_nginx(NGINX_SITE, upstream=upstream, keep_conn=keep_conn, keepalive=keepalive)
    session = requests.Session()
    connections = []

    hello = session.get(nginx.url("/hello"), timeout=10)
    assert (hello.status_code, hello.text) == (200, "hello\n")
    connections.append(server_side_connections(server))

    echoed = session.post(nginx.url("/echo"), data=BODY, timeout=20)
    assert echoed.json() == {"length": len(BODY), "sha256": hashlib.sha256(BODY).hexdigest()}
    connections.append(server_side_connections(server))

    seen = session.get(nginx.url("/environ?x=1"), headers={"X-Test": "yes"}, timeout=10).json()
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"]) == ("", "/environ", "x=1")
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["HTTP_X_TEST"] == "yes"
    assert seen["REQUEST_URI"] == "/environ?x=1" and seen["url"] == "http://127.0.0.1/environ?x=1"
    connections.append(server_side_connections(server))

    mounted = session.get(nginx.url("/app/environ?y=2"), timeout=10).json()
    assert (mounted["SCRIPT_NAME"], mounted["PATH_INFO"]) == ("/app", "/environ")
    assert mounted["url"] == "http://127.0.0.1/app/environ?y=2"
    connections.append(server_side_connections(server))
    # the split without a PATH_INFO param: the rest of DOCUMENT_URI past SCRIPT_NAME
    bare = session.get(nginx.url("/bare/environ"), timeout=10).json()
    assert (bare["SCRIPT_NAME"], bare["PATH_INFO"]) == ("/bare", "/environ")

    big = session.get(nginx.url("/big?n=300000"), timeout=10)  # more than one record's 65,535 bytes
    assert big.content == b"z" * 300000

    gate = tmp_path / f"gate-{worker}"
    with session.get(nginx.url(f"/stream?gate={gate}"), stream=True, timeout=10) as streamed:
        # the app is still waiting for the gate: this piece can only have come before it finished
        assert streamed.raw.read(6) == b"first\n"
        gate.touch()
        assert streamed.raw.read() == b"second\n"
    connections.append(server_side_connections(server))

    health = session.get(nginx.url("/_wsgistack/health"), timeout=10)
    assert (health.status_code, health.text) == (200, "ready\n")
    assert "_wsgistack" not in calls.read_text()  # answered without the app
    connections.append(server_side_connections(server))
    assert calls.read_text().split() == ["/hello", "/echo", "/environ", "/environ", "/environ", "/big",
                                         "/stream"]

    if worker != "sync":
        # fastcgi_keep_conn + keepalive: every request came over the one connection nginx keeps (over TCP, a
        # connection closed in between would also be listed, in TIME_WAIT)
        assert len(connections[0]) == 1 and all(seen == connections[0] for seen in connections), connections
    log = wait_for(lambda: (text := server.access_log.read_text()).count("\n") >= 6 and text,
                   message="six access log lines")
    assert '"GET /hello HTTP/1.1" 200 6' in log and '"GET /_wsgistack/health HTTP/1.1" 200' in log
    assert '"POST /echo HTTP/1.1" 200' in log and '"GET /app/environ?y=2 HTTP/1.1" 200' in log
    assert "[error]" not in nginx.error_log()


# -- records straight to the socket ----------------------------------------------------------------------------


@pytest.mark.parametrize(("worker", "threads"), [("sync", "1"), ("thread", "4"), ("event", "4"), ("event", "1")])
def test_keep_conn_keeps_the_connection_and_its_absence_closes_it(start_server, tmp_path, worker, threads):
    server, _ = serve_fastcgi(start_server, tmp_path, worker, "--threads", threads, unix=True)
    with server.connect() as sock:
        for number in (1, 2):
            sock.sendall(f.request(1, GET, keep_conn=True))
            records = read_answer(sock)
            assert stdout_of(records)[::2] == (200, b"hello\n"), number
            assert records[-2:] == [f.Record(f.STDOUT, 1, b""), f.Record(f.END_REQUEST, 1, bytes(8))]
            if worker == "sync":  # one request per connection, as the sync worker does over HTTP
                assert closed_by_server(sock)
                break
    with server.connect() as sock:
        sock.sendall(f.request(1, GET, keep_conn=False))
        assert stdout_of(read_answer(sock))[0] == 200
        assert closed_by_server(sock)


@pytest.mark.parametrize("worker", ["thread", "event"])
def test_management_records_roles_and_multiplexing(start_server, tmp_path, worker):
    server, calls = serve_fastcgi(start_server, tmp_path, worker, unix=True)
    with server.connect() as sock:
        names = {"FCGI_MAX_CONNS": "", "FCGI_MAX_REQS": "", "FCGI_MPXS_CONNS": "", "OTHER": ""}
        sock.sendall(f.record(f.GET_VALUES, 0, f.encode_pairs(names)) + f.record(99, 0, b"x"))
        data = b""
        while len(f.read_records(data)) < 2:
            data += sock.recv(65536)
        answers = f.read_records(data)
        values = dict(f.decode_pairs(answers[0].content))
        assert answers[0].kind == f.GET_VALUES_RESULT and values["FCGI_MPXS_CONNS"] == "0"
        assert "OTHER" not in values
        if worker == "event":
            assert values["FCGI_MAX_CONNS"] == values["FCGI_MAX_REQS"] == "1000"  # --worker-connections
        assert answers[1] == f.Record(f.UNKNOWN_TYPE, 0, b"\x63" + bytes(7))

        sock.sendall(f.record(f.BEGIN_REQUEST, 1, struct.pack(">HB5x", f.AUTHORIZER, 1))
                     + f.record(f.PARAMS, 1) + f.record(f.STDIN, 1))
        assert read_answer(sock) == [f.Record(f.END_REQUEST, 1, struct.pack(">IB3x", 0, f.UNKNOWN_ROLE))]

        # a second request while the first is open: refused, the first still served on the same connection
        sock.sendall(f.begin_request(1, keep_conn=True) + f.stream(f.PARAMS, 1, f.encode_pairs(GET))
                     + f.request(2, GET, keep_conn=True) + f.record(f.PARAMS, 1) + f.record(f.STDIN, 1))
        records = read_answer(sock, 1)
        assert f.Record(f.END_REQUEST, 2, struct.pack(">IB3x", 0, f.CANT_MPX_CONN)) in records
        assert stdout_of([r for r in records if r.request_id == 1])[::2] == (200, b"hello\n")
    assert calls.read_text() == "/hello\n"



@pytest.mark.parametrize("worker", ["sync", "event"])
def test_an_abort_before_the_params_ended_is_answered_without_the_app(start_server, tmp_path, worker):
    server, calls = serve_fastcgi(start_server, tmp_path, worker, unix=True)
    with server.connect() as sock:
        sock.sendall(f.begin_request(1) + f.record(f.PARAMS, 1, f.encode_pairs(GET)[:30])
                     + f.record(f.ABORT_REQUEST, 1))
        assert read_answer(sock) == [f.Record(f.END_REQUEST, 1, bytes(8))]
    with server.connect() as sock:
        sock.sendall(f.request(1, GET))
        assert stdout_of(read_answer(sock))[::2] == (200, b"hello\n")
    assert calls.read_text() == "/hello\n"

MALFORMED = {
    "bad version": struct.pack(">BBHHBx", 2, f.BEGIN_REQUEST, 1, 8, 0) + struct.pack(">HB5x", 1, 0),
    "truncated": f.request(1, GET)[:20],
    "unknown request id": f.begin_request(1) + f.stream(f.PARAMS, 1, f.encode_pairs(GET)) + f.record(f.PARAMS, 1)
    + f.record(f.STDIN, 7, b"x"),
    "stdin before the params end": f.begin_request(1) + f.stream(f.PARAMS, 1, f.encode_pairs(GET))
    + f.record(f.STDIN, 1, b"x"),
    "broken name-value pairs": f.begin_request(1) + f.record(f.PARAMS, 1, b"\x7f\x01ab") + f.record(f.PARAMS, 1)
    + f.record(f.STDIN, 1),
    "short begin body": f.record(f.BEGIN_REQUEST, 1, b"\0\1"),
}


@pytest.mark.parametrize("worker", ["sync", "thread", "event"])
def test_malformed_records_never_reach_the_app_and_the_worker_goes_on(start_server, tmp_path, worker):
    server, calls = serve_fastcgi(start_server, tmp_path, worker, unix=True)
    for name, data in MALFORMED.items():
        with server.connect() as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            assert read_answer(sock) == [], name  # closed without an answer
    # params past the limits, a bad CONTENT_LENGTH: well-formed requests, refused with a status
    headers = {**GET, **{f"HTTP_X_{n}": "v" for n in range(200)}}
    for params, status in ((headers, 431), ({**GET, "CONTENT_LENGTH": "x"}, 400)):
        with server.connect() as sock:
            sock.sendall(f.request(1, params))
            assert stdout_of(read_answer(sock))[0] == status
    assert calls.read_text() == ""
    with server.connect() as sock:
        sock.sendall(f.request(1, GET))
        assert stdout_of(read_answer(sock))[::2] == (200, b"hello\n")
    log = server.error_log.read_text()
    assert "record version 2" in log and "request 7, which is not open" in log
    assert "FCGI_STDIN before the params ended" in log and "closed " in log
    assert server.proc.poll() is None and len(server.wait_workers(1)) == 1
    assert "exited" not in log and "Traceback" not in log


def test_a_body_past_max_body_size_gets_413_without_the_app(start_server, tmp_path):
    server, calls = serve_fastcgi(start_server, tmp_path, "event", "--max-body-size", "1000", unix=True)
    with server.connect() as sock:
        sock.sendall(f.request(1, {**GET, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5000"}, b"x" * 5000,
                               keep_conn=True))
        assert stdout_of(read_answer(sock))[0] == 413
        sock.sendall(f.request(1, {**GET, "REQUEST_METHOD": "POST"}, b"x" * 5000, keep_conn=True))
        assert stdout_of(read_answer(sock))[0] == 413  # no CONTENT_LENGTH: counted as it comes
        sock.sendall(f.request(1, GET, keep_conn=True))
        assert stdout_of(read_answer(sock))[::2] == (200, b"hello\n")
    assert calls.read_text() == "/hello\n"


@pytest.mark.parametrize("worker", ["thread", "event"])
def test_tcp_peers_outside_the_allow_list_are_closed_without_an_answer(start_server, tmp_path, worker):
    server, calls = serve_fastcgi(start_server, tmp_path, worker, "--protocol-allow-from", "192.0.2.1")
    with server.connect() as sock:
        sock.sendall(f.request(1, GET))
        assert read_answer(sock) == []
    wait_for(lambda: "not in --protocol-allow-from" in server.error_log.read_text(), message="the refusal logged")
    assert calls.read_text() == ""
    unix, _ = serve_fastcgi(start_server, tmp_path, worker, "--protocol-allow-from", "192.0.2.1", unix=True)
    with unix.connect() as sock:  # unix-socket peers always may
        sock.sendall(f.request(1, GET))
        assert stdout_of(read_answer(sock))[::2] == (200, b"hello\n")


def test_the_environ_follows_nginx_s_script_name_and_document_uri():
    ctx = SimpleNamespace(errors=None, multithread=False)
    cases = [  # (SCRIPT_NAME, DOCUMENT_URI, PATH_INFO if sent) -> (SCRIPT_NAME, PATH_INFO)
        (("/hello", "/hello", None), ("", "/hello")),  # stock params, no split: the app at the root
        (("/app", "/app/page", "/page"), ("/app", "/page")),  # split, PATH_INFO sent
        (("/app", "/app/page", None), ("/app", "/page")),  # split, no PATH_INFO param
        (("/app", "/application", None), ("", "/app")),  # not at a segment boundary
        (("/app", "/app/", ""), ("/app", "")),
    ]
    for (script, document, path), expected in cases:
        params = {"SCRIPT_NAME": script, "DOCUMENT_URI": document, "HTTP_PROXY": "evil:1"}
        if path is not None:
            params["PATH_INFO"] = path
        environ = fastcgi_environ(params, lambda: b"", ctx)
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == expected, params
        assert "HTTP_PROXY" not in environ


@pytest.mark.parametrize("worker", ["thread", "event"])
def test_a_response_cut_short_gets_no_end_request(start_server, tmp_path, worker):
    server, _ = serve_fastcgi(start_server, tmp_path, worker, unix=True)
    with server.connect() as sock:  # an app error before the head: a clean 500, and the connection stays
        sock.sendall(f.request(1, {**GET, "SCRIPT_NAME": "/boom", "REQUEST_URI": "/boom"}, keep_conn=True))
        assert stdout_of(read_answer(sock))[0] == 500
        sock.sendall(f.request(1, GET, keep_conn=True))
        assert stdout_of(read_answer(sock))[::2] == (200, b"hello\n")
    for path, sent in (("/short", b"12345"), ("/late-boom", b"begun")):
        with server.connect() as sock:  # the web server must not take these for whole responses
            sock.sendall(f.request(1, {**GET, "SCRIPT_NAME": path, "REQUEST_URI": path}, keep_conn=True))
            records = read_answer(sock)
            assert f.END_REQUEST not in [r.kind for r in records] and closed_by_server(sock), path
            assert b"".join(r.content for r in records).endswith(sent), path


@pytest.mark.parametrize("worker", ["sync", "thread", "event"])
def test_a_body_left_unread_is_drained_before_the_close(start_server, tmp_path, worker):
    # closing with request bytes unread would reset the connection, and the answer could be lost with it
    server, calls = serve_fastcgi(start_server, tmp_path, worker, "--max-body-size", "4m", unix=True)
    for params, status in (({**GET, "CONTENT_LENGTH": str(len(BODY) // 2)}, 200),  # the app reads none of it
                           ({**GET, "CONTENT_LENGTH": str(len(BODY))}, 413)):  # refused before the app
        with server.connect() as sock:
            sock.sendall(f.request(1, params, BODY[:int(params["CONTENT_LENGTH"])]))
            assert stdout_of(read_answer(sock))[0] == status
            assert sock.recv(1) == b""  # a clean close, not a reset
    assert calls.read_text() == "/hello\n"


# -- the event protocol in process -------------------------------------------------------------------------

GET_X = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/x", "SCRIPT_NAME": "/x", "SERVER_PROTOCOL": "HTTP/1.1"}


class FakeTransport(asyncio.Transport):
    """Keeps what is written; a unix socket pair's end stands for the connection's socket."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"socket": self.sock, "peername": ""}.get(name, default)

    def write(self, data) -> None:
        assert not self.closed, "written after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def length_app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode() + b" " + str(len(body)).encode()]


@pytest.fixture
def connection():
    loop = asyncio.new_event_loop()
    pair = socket.socketpair()
    calls = []

    def counted(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return length_app(environ, start_response)
    ctx = ServeContext(app=counted, limits=Limits(body_size=1000), client_timeout=5.0,
                       access_log=AccessLog(None, "combined"), trust=ProxyTrust(()), errors=sys.stderr,
                       multithread=False, keep_alive=lambda: True, on_request=lambda: None, beat=lambda: None,
                       protocol="fastcgi", gateway_peers=ProxyTrust(("127.0.0.1",)))
    registry = ConnectionRegistry(10, None)
    proto = EventFastCGIProtocol(ctx, loop, registry, run_in_pool=False)
    transport = FakeTransport(pair[1])
    proto.connection_made(transport)
    yield proto, transport, calls
    for end in pair:
        end.close()
    loop.close()


def answers(transport: FakeTransport) -> list[tuple[int, int, bytes]]:
    return [(r.kind, r.request_id, r.content) for r in f.read_records(bytes(transport.out))]


def body_of(transport: FakeTransport, request_id: int = 1) -> bytes:
    return f.split_cgi_response(b"".join(c for kind, rid, c in answers(transport)
                                         if kind == f.STDOUT and rid == request_id))[2]


def test_a_kept_connection_serves_request_after_request(connection):
    proto, transport, calls = connection
    proto.data_received(f.request(1, GET_X, b"abc", keep_conn=True))
    assert body_of(transport) == b"/x 3" and proto.parked  # idle between requests: sheddable
    proto.data_received(f.request(1, {**GET_X, "SCRIPT_NAME": "/y"}, keep_conn=True))
    ends = [rid for kind, rid, _ in answers(transport) if kind == f.END_REQUEST]
    assert ends == [1, 1] and calls == ["/x", "/y"] and not transport.closed


def test_an_id_reused_before_its_end_request_is_a_protocol_error(connection):
    proto, transport, calls = connection
    proto.data_received(f.request(1, GET_X, keep_conn=True) + f.request(1, GET_X, keep_conn=True))
    assert transport.closed and calls == ["/x"]  # the first was whole before the second broke the protocol


def test_a_second_request_while_one_is_open_is_refused_and_the_first_served(connection):
    proto, transport, calls = connection
    proto.data_received(f.begin_request(1, keep_conn=True) + f.stream(f.PARAMS, 1, f.encode_pairs(GET_X))
                        + f.record(f.PARAMS, 1) + f.request(2, GET_X) + f.record(f.STDIN, 1, b"xy")
                        + f.record(f.STDIN, 1))
    got = answers(transport)
    assert got[0] == (f.END_REQUEST, 2, struct_end(0, f.CANT_MPX_CONN))
    assert body_of(transport) == b"/x 2" and calls == ["/x"]


def test_an_abort_ends_the_request_without_the_app(connection):
    proto, transport, calls = connection
    proto.data_received(f.begin_request(1, keep_conn=True) + f.stream(f.PARAMS, 1, f.encode_pairs(GET_X))
                        + f.record(f.PARAMS, 1) + f.record(f.STDIN, 1, b"part") + f.record(f.ABORT_REQUEST, 1))
    assert answers(transport) == [(f.END_REQUEST, 1, struct_end(0, 0))]
    assert calls == [] and not transport.closed


def test_a_413_without_keep_conn_closes_only_once_the_stdin_ended(connection):
    proto, transport, calls = connection
    params = {**GET_X, "REQUEST_METHOD": "POST"}
    proto.data_received(f.begin_request(1) + f.stream(f.PARAMS, 1, f.encode_pairs(params)) + f.record(f.PARAMS, 1)
                        + f.record(f.STDIN, 1, b"x" * 1500))
    assert f.split_cgi_response(b"".join(c for k, _, c in answers(transport) if k == f.STDOUT))[0] == 413
    assert not transport.closed  # more stdin is on its way: closing now would reset the connection
    proto.data_received(f.record(f.STDIN, 1, b"y" * 100))
    assert not transport.closed
    proto.data_received(f.record(f.STDIN, 1))
    assert transport.closed and calls == []


def test_a_protocol_error_closes_without_an_answer(connection):
    proto, transport, calls = connection
    proto.data_received(f.begin_request(1) + f.record(f.STDIN, 1, b"x"))
    assert transport.closed and answers(transport) == [] and calls == []


def struct_end(app_status: int, protocol_status: int) -> bytes:
    return f.END_BODY.pack(app_status, protocol_status)
