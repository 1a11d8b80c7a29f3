"""Pipelined requests, sent in one write, are answered in order by every worker class.

The rule (issue 16): answer each request in turn, up to and including the first one that closes the
connection (`Connection: close`, HTTP/1.0 without keep-alive) or is refused (4xx from the parser); nothing
after it runs. The sync worker answers `Connection: close` to every request, so for it the first answer is
also the last. Interim 1xx answers are left out of the comparison: a server may skip `100 Continue` when the
body is already there (RFC 9110 §10.1.1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
from servers import WORKER_CLASSES, Server

H = "Host: t\r\n"


@pytest.fixture(scope="module", params=WORKER_CLASSES)
def server(request, tmp_path_factory):
    """One single-worker server per class for the whole module (every case uses its own connection)."""
    folder = tmp_path_factory.mktemp(f"pipelining-{request.param}")
    srv = Server(folder, "behaviour_app:app", ["-w", "1", "-k", request.param, "--timeout", "30"])
    srv.worker_class = request.param
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def _parse(buffer: bytes, methods: list[str], eof: bool) -> list[Answer]:
    """Split what the server sent into responses, knowing which answer HEAD (no body follows)."""
    answers: list[Answer] = []
    position = 0
    while len(answers) < len(methods):
        end = buffer.find(b"\r\n\r\n", position)
        if end < 0:
            break
        lines = buffer[position:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        position = end + 4
        if 100 <= status < 200:
            continue  # interim
        if methods[len(answers)] == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if len(buffer) - position < length:
                break
            body, position = buffer[position:position + length], position + length
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            pieces = []
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return answers
                size = int(buffer[position:line_end].split(b";")[0], 16)
                if len(buffer) < line_end + 2 + size + 2:
                    return answers
                pieces.append(buffer[line_end + 2:line_end + 2 + size])
                position = line_end + 2 + size + 2
                if size == 0:
                    break
            body = b"".join(pieces)
        else:
            if not eof:
                break  # close-delimited: complete only at the end of the stream
            body, position = buffer[position:], len(buffer)
        answers.append(Answer(status, headers, body))
    return answers


def exchange(server: Server, data: bytes, methods: list[str], until_closed: bool,
             timeout: float = 10.0) -> tuple[list[Answer], bool]:
    """Send `data` in one write; read until the server closes (`until_closed`) or every request is answered.

    Returns the answers and whether the server closed the connection.
    """
    with server.connect(timeout) as sock:
        sock.sendall(data)
        buffer, eof = b"", False
        deadline = time.monotonic() + timeout
        while not eof:
            answers = _parse(buffer, methods, eof)
            if not until_closed and len(answers) == len(methods):
                break  # all answered and the connection stays open
            if time.monotonic() > deadline:
                raise AssertionError(f"no end after {timeout}s; got {buffer[:2000]!r}")
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                piece = b""
            except TimeoutError:
                raise AssertionError(f"the server went quiet; got {buffer[:2000]!r}") from None
            if piece:
                buffer += piece
            else:
                eof = True
        return _parse(buffer, methods, eof), eof


def expected_for(server: Server, statuses: list[int]) -> list[int]:
    """What a class answers: the sync worker closes after its first answer, the others answer them all."""
    return statuses[:1] if server.worker_class == "sync" else statuses


def req(method: str, path: str, extra: str = "", version: str = "1.1", body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/{version}\r\n{extra}\r\n".encode("latin-1") + body


def check(server: Server, requests: list[tuple[str, bytes]], statuses: list[int], closes: bool = True):
    """Send the pipeline; the answers' statuses must be `statuses` (cut after the first close), in order."""
    methods = [method for method, _ in requests]
    closes = closes or server.worker_class == "sync"
    answers, eof = exchange(server, b"".join(data for _, data in requests), methods, until_closed=closes)
    want = expected_for(server, statuses)
    assert [a.status for a in answers] == want, [(a.status, a.headers, a.body[:80]) for a in answers]
    assert eof == closes, "closed after the last answer" if closes else "kept open after the last answer"
    return answers


def test_good_then_missing_host(server):
    """The first answer, then the 400, then the close."""
    answers = check(server, [("HEAD", req("HEAD", "/hello", H)), ("HEAD", req("HEAD", "/hello"))], [200, 400])
    assert answers[0].body == b""


def test_good_then_close_then_more(server):
    """#1 and #2 are answered in order; #3 comes after a close and never runs."""
    answers = check(server, [("GET", req("GET", "/stream?n=1", H)),
                             ("GET", req("GET", "/stream?n=2", H + "Connection: close\r\n")),
                             ("DELETE", req("DELETE", f"/echo?never-{server.worker_class}", H))], [200, 200])
    assert [a.body for a in answers] == [b"line 0\n", b"line 0\nline 1\n"][:len(answers)]
    assert answers[-1].closes
    assert not any(f"never-{server.worker_class}" in line for line in server.access_lines())


def test_three_good_in_order(server):
    answers = check(server, [("GET", req("GET", f"/stream?n={n}", H)) for n in (1, 2, 3)], [200, 200, 200],
                    closes=False)
    assert [a.body.count(b"\n") for a in answers] == [1, 2, 3][:len(answers)]


def test_http10_keep_alive_pipeline(server):
    """HTTP/1.0 keeps alive only when asked; the first request without it is the last answered."""
    keep = "Connection: keep-alive\r\n"
    answers = check(server, [("GET", req("GET", "/hello", keep, "1.0")),
                             ("GET", req("GET", "/pid", keep, "1.0")),
                             ("GET", req("GET", "/hello", "", "1.0")), ("GET", req("GET", "/hello", H))],
                    [200, 200, 200])
    if server.worker_class != "sync":
        assert answers[1].body.isdigit()
        assert answers[0].headers["connection"].lower() == "keep-alive"


def test_bad_request_in_the_middle(server):
    """A malformed request is refused after the good ones before it; the one behind it never runs."""
    check(server, [("GET", req("GET", "/stream?n=1", H)), ("GET", req("GET", "/hello", H)),
                   ("GET", req("GET", "/hello", H + "Bad Name: x\r\n")), ("GET", req("GET", "/boom", H))],
          [200, 200, 400])


def test_oversized_target_behind_a_good_request(server):
    check(server, [("GET", req("GET", "/hello", H)), ("GET", req("GET", "/" + "a" * 20000, H)),
                   ("GET", req("GET", "/hello", H))], [200, 414])


def test_oversized_field_behind_a_good_request(server):
    big = H + "X-Big: " + "b" * 9000 + "\r\n"
    check(server, [("GET", req("GET", "/hello", H)), ("GET", req("GET", "/hello", big)),
                   ("GET", req("GET", "/hello", H))], [200, 431])


def test_bodies_pipelined(server):
    """Requests with a body (length and chunked) between ones without."""
    chunked = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    answers = check(server, [
        ("POST", req("POST", "/echo", H + "Content-Length: 11\r\n", body=b"hello world")),
        ("GET", req("GET", "/stream?n=2", H)),
        ("POST", req("POST", "/echo", H + "Transfer-Encoding: chunked\r\n", body=chunked)),
        ("GET", req("GET", "/hello", H + "Connection: close\r\n")),
    ], [200, 200, 200, 200])
    lengths = [json.loads(a.body)["length"] for a in answers if a.body.startswith(b"{")]
    assert lengths == [11, 8][:len(lengths)]


def test_expect_continue_with_the_body_already_sent(server):
    answers = check(server, [
        ("POST", req("POST", "/echo", H + "Content-Length: 4\r\nExpect: 100-continue\r\n", body=b"abcd")),
        ("GET", req("GET", "/hello", H + "Connection: close\r\n")),
    ], [200, 200])
    assert json.loads(answers[0].body)["length"] == 4


def test_refused_body_behind_a_good_request(server):
    """A request whose framing is refused (Transfer-Encoding in HTTP/1.0) after a good one."""
    check(server, [("GET", req("GET", "/hello", H)),
                   ("POST", req("POST", "/echo", "Transfer-Encoding: chunked\r\n", "1.0", b"0\r\n\r\n")),
                   ("GET", req("GET", "/hello", H))], [200, 400])


def test_no_request_runs_after_a_refusal(server):
    """The request behind a refused one never reaches the app (its access log line would say so)."""
    marker = f"/hello?after-refusal-{server.worker_class}"
    check(server, [("GET", req("GET", "/hello", H)), ("GET", req("GET", "/hello")),
                   ("GET", req("GET", marker, H))], [200, 400])
    assert not any(marker in line for line in server.access_lines())
