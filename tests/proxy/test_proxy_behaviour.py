"""`wsgistack proxy` black box, past the "Done when" list: retries, timeouts, passive and active health,
backups, limits, host routes, request ids, hop-by-hop headers, HTTP framing, TLS, log reopening and rotation,
graceful stop and the connection limit.

Real upstreams (tests/apps/upstream_app.py under `wsgistack serve`), a real proxy, and where an upstream must
misbehave, a raw-socket one written here. Raw client sockets wherever the exact bytes matter.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import ssl
import struct
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from polling import wait_for
from proxies import start_proxy, start_upstream, upstream_address

HEX32 = re.compile(r"[0-9a-f]{32}")


# --- helpers ------------------------------------------------------------------------------------------------

def proxy_toml(*servers: str, proxy: str = "", upstream: str = "", route: str = "", routes: str = "") -> str:
    """[proxy] with an access log, the group `app` of `servers`, and the route / to it (or `routes`)."""
    listed = ", ".join(f'"{server}"' for server in servers)
    routes = routes or f'[[proxy.routes]]\npath = "/"\nupstream = "app"\n{route}\n'
    return (f'[proxy]\nlisten = ["127.0.0.1:0"]\naccess_log = "{{folder}}/access.log"\n{proxy}\n'
            f'[proxy.upstreams.app]\nservers = [{listed}]\n{upstream}\n{routes}')


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pattern(size: int) -> bytes:
    """The app's /big and /stream bytes: bytes(range(256)) over and over."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def names(proxy, count: int, path: str = "/") -> list[str]:
    """Which upstream answered each of `count` GETs (each on a new connection)."""
    answers = []
    for _ in range(count):
        response = proxy.get(path)
        assert response.status_code == 200, (response.status_code, response.text)
        answers.append(response.text)
    return answers


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class Response:
    """One response as read off a raw socket."""

    def __init__(self, version: str, status: int, headers: list[tuple[str, str]], body: bytes):
        self.version = version
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class RawClient:
    """A raw HTTP/1.x client connection that reads responses exactly as framed on the wire."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_eof(self) -> bytes:
        while True:
            try:
                self._fill()
            except EOFError:
                data, self.buffer = self.buffer, b""
                return data

    def closed(self) -> bool:
        """True when the peer has closed (EOF or reset) and sent nothing more."""
        try:
            return self.read_to_eof() == b""
        except ConnectionResetError:
            return True

    def response(self, method: str = "GET") -> Response:
        head = self._until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, status = status_line.split(" ", 2)[:2]
        headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
        response = Response(version, int(status), headers, b"")
        if method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200:
            return response
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n"):  # trailers, up to the empty line
                        pass
                    break
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n"
            response.body = body
        elif response.header("content-length") is not None:
            response.body = self._exactly(int(response.header("content-length")))
        else:
            response.body = self.read_to_eof()
        return response

    def close(self) -> None:
        self.sock.close()


class FakeUpstream:
    """A raw-socket upstream that reads each whole request, then misbehaves.

    "close": closes without a word; "hang": never answers; "partial": sends a head for 100 bytes and 10 of them.
    """

    def __init__(self, mode: str):
        assert mode in ("close", "hang", "partial")
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []  # each request's head and body, as received
        self.connections: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def methods(self) -> list[str]:
        return [request.split(b" ", 1)[0].decode() for request in self.requests]

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        connection.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                piece = connection.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            while match and len(body) < int(match.group(1)):
                piece = connection.recv(65536)
                if not piece:
                    return
                body += piece
            self.requests.append(head + b"\r\n\r\n" + body)
            if self.mode == "close":
                connection.close()
            elif self.mode == "partial":
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            # otherwise the connection stays open until the test ends
        except OSError:
            return

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def fake_upstream() -> Iterator[Callable[[str], FakeUpstream]]:
    """`fake_upstream("close")` or `fake_upstream("hang")`; every one is stopped at the end of the test."""
    fakes: list[FakeUpstream] = []

    def start(mode: str) -> FakeUpstream:
        fakes.append(FakeUpstream(mode))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.stop()


def in_thread(function: Callable[[], object]) -> tuple[threading.Thread, list]:
    """Run `function` in a thread; its result (or exception) lands in the returned list."""
    result: list = []

    def run() -> None:
        began = time.monotonic()
        try:
            value = function()
        except Exception as exc:  # noqa: BLE001 - handed to the test to assert on
            value = exc
        result.append((value, time.monotonic() - began))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


# --- retries: what may be sent twice ------------------------------------------------------------------------

@pytest.mark.parametrize("method, retried", [("POST", False), ("PATCH", False), ("GET", True), ("PUT", True),
                                             ("DELETE", True)])
def test_a_request_the_upstream_received_is_retried_only_if_idempotent(start_proxy, start_upstream,
                                                                        fake_upstream, method, retried):
    fake = fake_upstream("close")  # reads the whole request, then closes without a word
    b = start_upstream("b", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(fake.address, upstream_address(b),
                                        proxy="access_log_format = '$upstream_addr|$upstream_status|$status'"))
    response = requests.request(method, proxy.url("/echo"), data=b"x=1", timeout=10)
    assert fake.methods() == [method]  # equal weights: the first server is the first pick
    line = wait_for(lambda: proxy.access_lines(), message="the proxy's access line")[0]
    if retried:
        assert response.status_code == 200
        assert response.json()["method"] == method and response.json()["body_length"] == 3
        assert line == f"{fake.address}, {upstream_address(b)}|502, 200|200"
    else:
        assert response.status_code == 502
        assert line == f"{fake.address}|502|502"
        # b answers a marker request, so its log is written up to here: the POST never reached it
        assert requests.get(f"http://{upstream_address(b)}/name?marker", timeout=5).text == "b"
        lines = wait_for(lambda: [x for x in b.access_lines() if "marker" in x] and b.access_lines(),
                         message="b's access line")
        assert not [x for x in lines if f'"{method} ' in x], lines


def test_a_post_whose_connect_failed_goes_to_the_next_server(start_proxy, start_upstream):
    dead = f"127.0.0.1:{closed_port()}"
    b = start_upstream("b", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(dead, upstream_address(b),
                                        proxy="access_log_format = '$upstream_addr|$status'"))
    response = requests.post(proxy.url("/upload"), data=b"hello", timeout=10)
    assert response.status_code == 200
    assert response.json()["length"] == 5
    assert wait_for(proxy.access_lines, message="the access line") == [f"{dead}, {upstream_address(b)}|200"]


def test_an_upstream_that_never_answers_gives_504_after_read_timeout(start_proxy, fake_upstream):
    fake = fake_upstream("hang")
    proxy = start_proxy(toml=proxy_toml(fake.address, upstream='read_timeout = "1s"'))
    began = time.monotonic()
    response = proxy.get("/slow")
    elapsed = time.monotonic() - began
    assert response.status_code == 504
    assert 0.9 <= elapsed < 3.0, elapsed
    assert fake.methods() == ["GET"]


def test_an_upstream_that_stalls_mid_body_cuts_the_client_off_after_read_timeout(start_proxy, fake_upstream):
    fake = fake_upstream("partial")
    proxy = start_proxy(toml=proxy_toml(fake.address, upstream='read_timeout = "1s"',
                                        proxy="access_log_format = '$status $body_bytes_sent $upstream_status'"))
    client = RawClient(proxy.port)
    client.send(b"GET /stalls HTTP/1.1\r\nHost: x\r\n\r\n")
    began = time.monotonic()
    head = client._until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    rest = client.read_to_eof()  # the client learns of the broken response from the cut connection
    assert rest == b"x" * 10
    assert 0.9 <= time.monotonic() - began < 3.0
    client.close()
    # the response the client got was a 200 cut short: logged as such, and not as a bug in the proxy
    assert wait_for(proxy.access_lines, message="the access line") == ["200 10 200"]
    assert "Traceback" not in proxy.log(), proxy.log()


def test_a_client_that_leaves_mid_response_is_not_logged_as_a_proxy_error(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a),
                                        proxy="access_log_format = '$status $upstream_status'"))
    client = RawClient(proxy.port)
    client.send(b"GET /big?size=30000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client._until(b"\r\n\r\n").startswith(b"HTTP/1.1 200 OK")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, with most of the 30 MB unsent
    # nginx logs what was sent (200), or 499 for a client that closed; never a 500 nobody sent
    line = wait_for(proxy.access_lines, message="the access line")[0]
    assert line in ("200 200", "499 200"), line
    assert "Traceback" not in proxy.log()
    assert proxy.get("/name").text == "a"


def test_a_retried_upload_from_a_temporary_file_arrives_whole(start_proxy, start_upstream, fake_upstream):
    fake = fake_upstream("close")
    b = start_upstream("b", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(fake.address, upstream_address(b),
                                        proxy='client_body_buffer_size = "64k"\nclient_max_body_size = "2m"'))
    body = pattern(700_000)
    response = requests.put(proxy.url("/upload"), data=body, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert len(fake.requests) == 1 and fake.requests[0].endswith(body)  # the first attempt had it all too


def test_a_slow_upstream_within_read_timeout_is_fine(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), upstream='read_timeout = "1s"'))
    assert proxy.get("/slow?ms=500").text == "slow"
    assert proxy.get("/slow?ms=1500").status_code == 504


# --- passive and active health, backups ---------------------------------------------------------------------

def test_a_failed_server_gets_no_request_for_fail_timeout(start_proxy, start_upstream):
    dead = f"127.0.0.1:{closed_port()}"
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(dead, upstream_address(a), upstream='max_fails = 1\nfail_timeout = "4s"',
                                        proxy="access_log_format = '$upstream_addr $status'"))
    assert proxy.get("/").text == "a"
    failed = time.monotonic()
    # the proxy logs a request once its answer is sent: the line may come a moment after the client has it
    first = wait_for(lambda: proxy.access_lines(), message="the first access log line")
    assert first == [f"{dead}, {upstream_address(a)} 200"]
    count = 1
    # for 1 s of the 4: a request still in flight when they are over would rightly try the dead server again,
    # and on a loaded machine (the suite's other tests) one may take well over a second
    while time.monotonic() < failed + 1.0:
        assert proxy.get("/").text == "a"
        count += 1
        time.sleep(0.05)
    lines = wait_for(lambda: len(proxy.access_lines()) == count and proxy.access_lines(), message="the lines")
    assert lines[1:] == [f"{upstream_address(a)} 200"] * (count - 1)  # the dead one was not tried
    time.sleep(max(0.0, failed + 4.3 - time.monotonic()))
    assert names(proxy, 3) == ["a"] * 3
    later = wait_for(lambda: len(proxy.access_lines()) == count + 3 and proxy.access_lines()[count:],
                     message="the lines after fail_timeout")
    assert f"{dead}, {upstream_address(a)} 200" in later  # back in rotation: tried (and failed) again
    assert "upstream server " + dead + " is down for 4s" in proxy.log()


def test_active_health_check_takes_a_server_out_and_back(start_proxy, start_upstream, tmp_path):
    health_file = tmp_path / "b-unhealthy"
    a = start_upstream("a", "-k", "sync")
    b = start_upstream("b", "-k", "sync", env={"UPSTREAM_HEALTH_FILE": str(health_file)})
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), upstream_address(b),
                                        upstream='health_check = { path = "/healthz", interval = "0.3s" }'))
    assert sorted(names(proxy, 4)) == ["a", "a", "b", "b"]
    health_file.touch()
    wait_for(lambda: names(proxy, 4) == ["a"] * 4, timeout=5, interval=0.1, message="b out of rotation")
    assert names(proxy, 6) == ["a"] * 6
    assert f"upstream server {upstream_address(b)} failed its health check (status 503)" in proxy.log()
    health_file.unlink()
    wait_for(lambda: "b" in names(proxy, 4), timeout=5, interval=0.1, message="b back in rotation")
    assert sorted(names(proxy, 4)) == ["a", "a", "b", "b"]
    assert f"upstream server {upstream_address(b)} passed its health check" in proxy.log()
    assert any("GET /healthz" in line for line in b.access_lines())


def test_a_backup_gets_requests_only_while_the_primary_is_down(start_proxy, start_upstream, tmp_path):
    health_file = tmp_path / "a-unhealthy"
    a = start_upstream("a", "-k", "sync", env={"UPSTREAM_HEALTH_FILE": str(health_file)})
    b = start_upstream("b", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), f"{upstream_address(b)} backup",
                                        upstream='health_check = { path = "/healthz", interval = "0.3s" }'))
    assert names(proxy, 10) == ["a"] * 10
    health_file.touch()
    wait_for(lambda: names(proxy, 3) == ["b"] * 3, timeout=5, interval=0.1, message="the backup to take over")
    health_file.unlink()
    wait_for(lambda: names(proxy, 3) == ["a"] * 3, timeout=5, interval=0.1, message="the primary to come back")
    def requests_to_b() -> list[str]:
        return [line for line in b.access_lines() if "/healthz" not in line]

    answered_by_b = wait_for(requests_to_b, message="b's lines")
    assert names(proxy, 10) == ["a"] * 10
    time.sleep(0.2)
    assert requests_to_b() == answered_by_b  # nothing more went to the backup
    a.stop()
    assert names(proxy, 3) == ["b"] * 3  # a connect failure: the backup takes the retry


# --- limits -------------------------------------------------------------------------------------------------

def test_limit_conn_refuses_a_second_request_in_flight(start_proxy, start_upstream, tmp_path):
    a = start_upstream("a", "-k", "thread")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), route="limit_conn = { max = 1 }"))
    mark = tmp_path / "in-app"
    first, first_result = in_thread(lambda: proxy.get(f"/slow?ms=800&mark={mark}"))
    wait_for(mark.exists, message="the first request in the app")
    second = proxy.get("/slow?ms=800")
    first.join(5)
    assert first_result[0][0].status_code == 200
    assert second.status_code == 503
    assert proxy.get("/slow?ms=10").status_code == 200  # the slot is free again


def test_limit_req_without_nodelay_delays_the_burst(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "thread")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), route='limit_req = { rate = "2r/s", burst = 2 }'))
    barrier = threading.Barrier(3)

    def one():
        barrier.wait(5)
        return proxy.get("/")

    runs = [in_thread(one) for _ in range(3)]
    for thread, _ in runs:
        thread.join(10)
    outcomes = [result[0] for _, result in runs]
    assert [response.status_code for response, _ in outcomes] == [200, 200, 200]
    elapsed = sorted(seconds for _, seconds in outcomes)
    # at 2r/s the bucket drains one request every 0.5 s: the burst is spaced, not refused
    assert elapsed[0] < 0.4 and 0.4 <= elapsed[1] < 1.5 and 0.85 <= elapsed[2] < 2.0, elapsed


# --- routing, request ids, headers --------------------------------------------------------------------------

def test_the_host_header_picks_the_route(start_proxy, start_upstream, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "name").write_text("static")
    a = start_upstream("a", "-k", "sync")
    b = start_upstream("b", "-k", "sync")
    routes = f"""
[proxy.upstreams.b]
servers = ["{upstream_address(b)}"]

[[proxy.routes]]
path = "/"
static = "{site}"

[[proxy.routes]]
path = "/"
host = ["a.test", "*.a.test"]
upstream = "app"

[[proxy.routes]]
path = "/"
host = "b.test"
upstream = "b"
"""
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), routes=routes))
    for host, expected in [("a.test", "a"), ("A.Test:8080", "a"), ("www.a.test", "a"), ("b.test", "b"),
                           ("b.test:80", "b"), ("c.test", "static"), ("127.0.0.1", "static"), ("xa.test", "static")]:
        response = proxy.get("/name", headers={"Host": host})
        assert (host, response.status_code, response.text) == (host, 200, expected)


def test_a_request_id_is_made_when_absent_and_kept_when_sent(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), proxy="access_log_format = '$request_id'"))
    response = proxy.get("/echo")
    made = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(made), made
    assert lower_keys(response.json()["headers"])["x-request-id"] == made
    assert proxy.get("/echo").headers["X-Request-ID"] != made  # one per request
    sent = proxy.get("/echo", headers={"X-Request-ID": "trace-42.a:b_c"})
    assert sent.headers["X-Request-ID"] == "trace-42.a:b_c"
    assert lower_keys(sent.json()["headers"])["x-request-id"] == "trace-42.a:b_c"
    for bad in ("has space", "x" * 129, "semi;colon"):
        replaced = proxy.get("/echo", headers={"X-Request-ID": bad})
        assert HEX32.fullmatch(replaced.headers["X-Request-ID"]), bad
        assert lower_keys(replaced.json()["headers"])["x-request-id"] == replaced.headers["X-Request-ID"]
    lines = wait_for(lambda: len(proxy.access_lines()) == 6 and proxy.access_lines(), message="6 access lines")
    assert lines[0] == made and lines[2] == "trace-42.a:b_c"


def test_hop_by_hop_headers_stay_at_the_proxy(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    client = RawClient(proxy.port)
    client.send(b"GET /echo HTTP/1.1\r\nHost: example.test:8080\r\nConnection: X-Foo, close\r\nX-Foo: 1\r\n"
                b"Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n"
                b"Proxy-Authorization: Basic eDp5\r\nTrailer: X-Sum\r\nX-Bar: 2\r\nUser-Agent: raw\r\n\r\n")
    response = client.response()
    client.close()
    assert response.status == 200
    seen = lower_keys(json.loads(response.body)["headers"])
    for name in ("connection", "x-foo", "keep-alive", "te", "upgrade", "proxy-connection", "proxy-authorization",
                 "trailer"):
        assert name not in seen, (name, seen)
    assert seen["host"] == "example.test:8080"
    assert (seen["x-bar"], seen["user-agent"]) == ("2", "raw")
    assert seen["x-forwarded-host"] == "example.test:8080"
    assert seen["x-forwarded-proto"] == "http"


def test_hop_by_hop_headers_of_the_response_stay_at_the_proxy(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    response = proxy.get("/headers-out")
    assert response.headers["X-Custom"] == "1"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert "Keep-Alive" not in response.headers


# --- HTTP framing -------------------------------------------------------------------------------------------

def test_a_chunked_response_reaches_an_http_1_1_client_intact(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    client = RawClient(proxy.port)
    client.send(b"GET /stream?size=300000 HTTP/1.1\r\nHost: x\r\n\r\n")
    response = client.response()
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-length") is None
    assert response.body == pattern(300000)
    client.send(b"GET /name HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection is still good
    assert client.response().body == b"a"
    client.close()


def test_a_chunked_response_reaches_an_http_1_0_client_intact(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    client = RawClient(proxy.port)
    client.send(b"GET /stream?size=200000 HTTP/1.0\r\nHost: x\r\n\r\n")
    response = client.response()
    assert response.status == 200
    assert response.header("transfer-encoding") is None  # HTTP/1.0 has no chunks: the close ends the body
    assert response.body == pattern(200000)
    assert client.closed()
    client.close()


def test_head_gets_the_headers_without_a_body(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    client = RawClient(proxy.port)
    client.send(b"HEAD /big?size=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
    response = client.response("HEAD")
    assert (response.status, response.header("content-length")) == (200, "5000")
    client.send(b"HEAD /stream?size=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.response("HEAD").status == 200
    client.send(b"GET /name HTTP/1.1\r\nHost: x\r\n\r\n")  # no stray body bytes came before this answer
    assert client.response().body == b"a"
    client.close()


def test_pipelined_requests_get_their_answers_in_order(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "thread")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    client = RawClient(proxy.port)
    client.send(b"GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /name HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert client.response().body == b"slow"
    assert json.loads(client.response().body)["length"] == 5
    assert client.response().body == b"a"
    assert client.closed()
    client.close()


def test_expect_100_continue_gets_100_then_the_answer(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    client = RawClient(proxy.port)
    client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    interim = client.response()
    assert (interim.version, interim.status) == ("HTTP/1.1", 100)
    client.send(b"hello world")
    final = client.response()
    assert final.status == 200
    assert json.loads(final.body)["length"] == 11
    client.close()


# --- client timeouts ----------------------------------------------------------------------------------------

def test_half_a_head_gets_408_after_client_header_timeout(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), proxy='client_header_timeout = "1s"'))
    client = RawClient(proxy.port)
    began = time.monotonic()
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
    data = client.read_to_eof()
    elapsed = time.monotonic() - began
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert 0.8 <= elapsed < 2.5, elapsed
    client.close()


def test_a_silent_connection_is_closed_after_client_header_timeout(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), proxy='client_header_timeout = "1s"'))
    client = RawClient(proxy.port)
    began = time.monotonic()
    assert client.closed()
    assert 0.8 <= time.monotonic() - began < 2.5
    client.close()


# --- TLS ----------------------------------------------------------------------------------------------------

def tls_proxy(start_proxy, start_upstream, folder: Path):
    """A proxy with one TLS listener (a fresh self-signed certificate) in front of upstream a."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out",
                    "c.pem", "-days", "1", "-subj", "/CN=localhost"], cwd=folder, check=True,
                   capture_output=True, timeout=30)
    a = start_upstream("a", "-k", "sync")
    toml = proxy_toml(upstream_address(a), proxy=f'certfile = "{folder}/c.pem"\nkeyfile = "{folder}/k.pem"')
    return start_proxy(toml=toml.replace('"127.0.0.1:0"', '"127.0.0.1:0 ssl"'))


def tls_client(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_listener(start_proxy, start_upstream, tmp_path):
    proxy = tls_proxy(start_proxy, start_upstream, tmp_path)
    assert "listening at https://127.0.0.1:" in proxy.log()
    response = requests.get(proxy.url("/echo", scheme="https"), verify=False, timeout=10)
    assert response.status_code == 200
    seen = lower_keys(response.json()["headers"])
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == str(proxy.port)
    with requests.Session() as session:  # keep-alive over TLS
        assert [session.get(proxy.url("/name", scheme="https"), verify=False, timeout=10).text
                for _ in range(3)] == ["a"] * 3
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as plain:
        plain.sendall(b"GET /name HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = plain.recv(100)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer  # plain HTTP on a TLS port is not answered as HTTP
    # a failed handshake is the client's matter: no traceback (a connection adopted from the listen queue
    # whose handshake fails is one debug line, server.py _adopted)
    assert requests.get(proxy.url("/name", scheme="https"), verify=False, timeout=10).text == "a"
    proxy.signal(signal.SIGTERM)
    _, stderr = proxy.proc.communicate(timeout=15)
    assert b"Traceback" not in stderr and "Traceback" not in proxy.log(), stderr.decode(errors="replace")


def test_sigterm_does_not_wait_for_an_idle_tls_client(start_proxy, start_upstream, tmp_path):
    # an idle keep-alive connection is closed at once on a graceful stop, over TLS as over plain TCP, even when
    # the client does not answer the TLS close_notify (nginx does not wait for it either)
    proxy = tls_proxy(start_proxy, start_upstream, tmp_path)
    client = tls_client(proxy.port)
    try:
        client.sendall(b"GET /name HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\na"):
            answer += client.recv(1000)  # answered, and the connection is kept open, idle
        began = time.monotonic()
        proxy.signal(signal.SIGTERM)
        try:
            code = proxy.proc.wait(3)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"still running {time.monotonic() - began:.1f}s after SIGTERM"
    finally:
        client.close()


# --- access log: reopen and rotation ------------------------------------------------------------------------

def test_sigusr1_reopens_the_access_log(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), proxy="access_log_format = '$request_uri'"))
    proxy.get("/name?1")
    moved = proxy.access_log.with_name("access.log.old")
    proxy.access_log.rename(moved)
    proxy.get("/name?2")  # still the old file, as logrotate expects until it signals
    proxy.signal(signal.SIGUSR1)
    wait_for(lambda: "logs reopened" in proxy.log(), timeout=5, message="the reopen")
    proxy.get("/name?3")
    assert wait_for(proxy.access_lines, timeout=5, message="the new file") == ["/name?3"]
    assert moved.read_text().splitlines() == ["/name?1", "/name?2"]


def test_built_in_rotation_loses_and_splits_no_line(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "thread", "--threads", "8")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a),
                                        proxy="access_log_format = '$request_uri $status $upstream_addr'\n"
                                              'access_log_rotate = { size = "2k", keep = 50 }'))
    total, workers = 300, 6
    failures: list[str] = []

    def load(offset: int) -> None:
        with requests.Session() as session:
            for number in range(offset, total, workers):
                response = session.get(proxy.url(f"/name?n={number}"), timeout=10)
                if response.status_code != 200:
                    failures.append(f"{number}: {response.status_code}")

    threads = [threading.Thread(target=load, args=(offset,)) for offset in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures

    def all_lines() -> list[str]:
        files = [proxy.access_log, *sorted(proxy.folder.glob("access.log.*"))]
        return [line for path in files for line in path.read_text().splitlines()]

    lines = wait_for(lambda: len(all_lines()) >= total and all_lines(), timeout=5, message="every line")
    rotated = sorted(proxy.folder.glob("access.log.*"))
    assert len(rotated) >= 3  # 300 lines of 30-odd bytes in 2 KiB files
    assert all(path.stat().st_size <= 2048 for path in rotated)
    line_shape = re.compile(rf"/name\?n=(\d+) 200 {re.escape(upstream_address(a))}")
    numbers = []
    for line in lines:
        match = line_shape.fullmatch(line)
        assert match, f"split or mangled line: {line!r}"
        numbers.append(int(match.group(1)))
    assert sorted(numbers) == list(range(total))


# --- reloads ------------------------------------------------------------------------------------------------

def test_a_reload_with_a_bad_file_keeps_the_old_config(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync")
    b = start_upstream("b", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    assert proxy.get("/").text == "a"
    good = proxy.config.read_text()
    proxy.config.write_text(good.replace('upstream = "app"', 'upstream = "ap"'))
    proxy.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in proxy.log(), timeout=5, message="the refusal")
    refusal = next(line for line in proxy.log().splitlines() if "reload refused" in line)
    assert f"{proxy.config}:10: proxy.routes[0].upstream: no upstream named 'ap' (known: app)" in refusal
    assert "Traceback" not in proxy.log()
    assert names(proxy, 3) == ["a"] * 3
    proxy.config.write_text(good.replace(upstream_address(a), upstream_address(b)))
    proxy.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in proxy.log(), timeout=5, message="the reload")
    assert names(proxy, 3) == ["b"] * 3


# --- stopping and the connection limit ----------------------------------------------------------------------

def test_sigterm_lets_a_request_in_flight_finish(start_proxy, start_upstream, tmp_path):
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a)))
    mark = tmp_path / "in-app"
    thread, result = in_thread(lambda: proxy.get(f"/slow?ms=1000&mark={mark}"))
    wait_for(mark.exists, message="the request in the app")
    proxy.signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in proxy.log(), timeout=5, message="the stop to begin")
    with pytest.raises(requests.ConnectionError):
        requests.get(proxy.url("/name"), timeout=2)  # no new connections once stopping
    thread.join(5)
    response, _ = result[0]
    assert isinstance(response, requests.Response), response
    assert (response.status_code, response.text) == (200, "slow")
    assert proxy.proc.wait(5) == 0
    assert "stopped" in proxy.log()


def test_max_connections_refuses_the_connection_past_the_limit(start_proxy, start_upstream):
    # none of the five is idle (each has begun a request), so the sixth cannot take an idle one's place
    # (test_proxy_hardening.py covers that case)
    a = start_upstream("a", "-k", "sync")
    proxy = start_proxy(toml=proxy_toml(upstream_address(a), proxy="max_connections = 5"))
    clients = []
    for _ in range(5):
        client = RawClient(proxy.port)
        client.send(b"GET /name HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.response().body == b"a"  # answered, and kept open
        client.send(b"GET /name HTTP/1.1\r\n")  # the next request has begun
        clients.append(client)
    sixth = RawClient(proxy.port)
    refused = sixth.response()
    assert refused.status == 503
    assert sixth.closed()
    sixth.close()
    clients.pop().close()
    wait_for(lambda: proxy.get("/name").status_code == 200, timeout=5, message="room for a new connection")
    for client in clients:
        client.send(b"Host: x\r\n\r\n")
        assert client.response().body == b"a"
        client.close()


def test_a_connect_that_hangs_gives_504_after_connect_timeout(start_proxy):
    # a listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # enough to fill the queue whatever the kernel adds to a backlog of 0
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        proxy = start_proxy(textwrap.dedent(f"""\
            [proxy]
            listen = ["127.0.0.1:0"]
            [proxy.upstreams.app]
            servers = ["127.0.0.1:{port}"]
            connect_timeout = "0.5s"
            [[proxy.routes]]
            path = "/"
            upstream = "app"
            """))
        began = time.monotonic()
        response = proxy.get("/", timeout=10)
        took = time.monotonic() - began
        assert response.status_code == 504
        assert 0.4 < took < 3.0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
