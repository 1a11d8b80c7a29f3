"""The tornado class parses with wsgistack's own strict parser: for malformed and hostile requests it answers
byte for byte what the event class answers (same status, same body, `Connection: close`), then closes.

Both servers are started once for the module; each case sends the same bytes to both and compares.
"""

from __future__ import annotations

import socket

import pytest
from servers import Server
from rawhttp import Reader, closed_by_peer, get


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> dict[str, Server]:
    """One tornado and one event server with the same settings."""
    started: dict[str, Server] = {}
    try:
        for worker_class in ("tornado", "event"):
            folder = tmp_path_factory.mktemp(f"strict-{worker_class}")
            started[worker_class] = Server(folder, "behaviour_app:app",
                                           ["-w", "1", "-k", worker_class, "--max-body-size", "1m"])
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


def exchange(server: Server, data: bytes) -> tuple[list[tuple[int, str | None, bytes]], bool]:
    """Send `data` at once; every response until the server closes (status, Connection, body), and whether
    it closed within the socket timeout."""
    with server.connect(timeout=5) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before it read everything
        reader = Reader(sock)
        closed = True
        try:
            reader.responses(10)
        except ConnectionResetError:
            pass  # closed with our unread bytes in its buffer; what arrived before the reset was parsed
        except TimeoutError:
            closed = False
        responses = [(r.status, r.header("Connection"), r.body) for r in reader.collector.done]
        if closed and not reader.closed:
            try:
                closed = closed_by_peer(sock)
            except TimeoutError:
                closed = False
    return responses, closed


def same_answer(servers: dict[str, Server], data: bytes) -> tuple[list[tuple[int, str | None, bytes]], bool]:
    tornado = exchange(servers["tornado"], data)
    event = exchange(servers["event"], data)
    assert tornado == event, "tornado must answer exactly as the event class does"
    return tornado


CHUNKED_POST = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"

# the four leniencies of issue 10 (item 11), then the usual smuggling vectors, each followed by a request
# that must never be served
SMUGGLED = get("/boom")
HOSTILE = {
    "te_in_http10": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    + SMUGGLED,
    "bare_lf": b"GET /hello HTTP/1.1\nHost: t\n\n" + SMUGGLED,
    "bare_lf_after_header": b"GET /hello HTTP/1.1\r\nHost: t\n\r\n" + SMUGGLED,
    "pipelined_after_414": get("/" + "a" * 20 * 1024) + SMUGGLED,
    "pipelined_after_431_field": get(extra="X-Big: " + "a" * 10000 + "\r\n") + SMUGGLED,
    "pipelined_after_431_count": get(extra="".join(f"X-F{i}: v\r\n" for i in range(150))) + SMUGGLED,
    "cl_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"0\r\n\r\n" + SMUGGLED,
    "te_cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
             b"0\r\n\r\n" + SMUGGLED,
    "duplicate_cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                    + SMUGGLED,
    "cl_list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\nab" + SMUGGLED,
    "cl_plus": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\nab" + SMUGGLED,
    "bad_chunk_size": CHUNKED_POST + b"zz\r\nabc\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_size_overflow": CHUNKED_POST + b"1" * 20 + b"\r\nabc\r\n0\r\n\r\n" + SMUGGLED,
    "chunk_without_crlf": CHUNKED_POST + b"3\r\nabcX0\r\n\r\n" + SMUGGLED,
    "te_not_last": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                   b"0\r\n\r\n" + SMUGGLED,
    "te_gzip_chunked": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                       b"0\r\n\r\n" + SMUGGLED,
    "te_space_before_colon": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n"
                             b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "obs_fold": b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n" + SMUGGLED,
    "obs_fold_te": b"POST /echo HTTP/1.1\r\nHost: t\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n"
                   b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "bare_cr": b"GET /hello HTTP/1.1\r\nHost: t\rX-B: b\r\n\r\n" + SMUGGLED,
    "nul_in_value": b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n" + SMUGGLED,
    "no_host": b"GET /hello HTTP/1.1\r\n\r\n" + SMUGGLED,
    "two_hosts": b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SMUGGLED,
    "host_list": b"GET /hello HTTP/1.1\r\nHost: a, b\r\n\r\n" + SMUGGLED,
    "host_userinfo": b"GET /hello HTTP/1.1\r\nHost: user@a\r\n\r\n" + SMUGGLED,
    "host_bad_port": b"GET /hello HTTP/1.1\r\nHost: a:b\r\n\r\n" + SMUGGLED,
    "http_2_0": b"GET /hello HTTP/2.0\r\nHost: t\r\n\r\n" + SMUGGLED,
    "http_0_9_like": b"GET /hello\r\n\r\n" + SMUGGLED,
    "expect_unknown": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: magic\r\n\r\nab"
                      + SMUGGLED,
    "body_over_limit": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 1000,
    "connect": b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n" + SMUGGLED,
    "garbage": b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_request_answered_as_the_event_class_does(servers, case):
    responses, closed = same_answer(servers, HOSTILE[case])
    assert closed, "the connection closes after the answer"
    assert all(status != 500 for status, _, _ in responses), "the request behind it was never served"
    if responses and responses[-1][0] >= 400:
        assert responses[-1][1] == "close", "an error response says Connection: close"


REFUSED = ["te_in_http10", "bare_lf", "pipelined_after_414", "pipelined_after_431_field", "cl_te",
           "duplicate_cl", "bad_chunk_size", "obs_fold", "bare_cr", "no_host"]


@pytest.mark.parametrize("case", REFUSED)
def test_refused_with_one_error_and_close(servers, case):
    responses, closed = exchange(servers["tornado"], HOSTILE[case])
    assert [status for status, _, _ in responses] in ([400], [414], [431]), responses
    assert responses[0][1] == "close"
    assert closed


def test_upgrade_is_answered_then_closed(servers):
    data = (b"GET /hello HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    responses, closed = same_answer(servers, data)
    assert len(responses) == 1  # Flask's own 400 for a websocket request to a plain route
    assert closed, "a WSGI app cannot take the connection over: the server closes it after the answer"


def test_upgrade_with_pipelined_request_is_closed(servers):
    responses, closed = same_answer(servers, b"GET /hello HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
                                             b"Connection: Upgrade\r\n\r\n" + SMUGGLED)
    assert [status for status, _, _ in responses] == [200]
    assert closed


def test_good_pipeline_is_served_alike(servers):
    """The control: valid requests, pipelined, keep-alive, HTTP/1.0, a chunked upload, all answered alike."""
    data = (get("/hello") + b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            + CHUNKED_POST + b"5\r\nhello\r\n0\r\n\r\n" + get("/stream?n=3")
            + get("/hello", extra="Connection: close\r\n"))
    responses, closed = same_answer(servers, data)
    assert [status for status, _, _ in responses] == [200] * 5
    assert closed


def test_http10_without_keep_alive_closes(servers):
    responses, closed = same_answer(servers, b"GET /hello HTTP/1.0\r\n\r\n" + get("/hello"))
    assert [status for status, _, _ in responses] == [200]
    assert closed


def test_idle_keep_alive_connection_stays_open(servers):
    with servers["tornado"].connect(timeout=5) as sock:
        reader = Reader(sock)
        for _ in range(3):
            sock.sendall(get())
            response = reader.one()
            assert response.status == 200 and response.header("Connection") is None
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sock.recv(1)  # not closed after a good response

