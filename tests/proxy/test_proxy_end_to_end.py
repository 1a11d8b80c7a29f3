"""`wsgistack proxy` end to end, black box: real upstreams, a real proxy, real sockets on 127.0.0.1.

The features a deployment leans on, one test (or two) each: balancing, failover, uploads, static files,
traversal, limit_req, the access log, X-Forwarded-For, slowloris, all upstreams down, reloads under load,
gzip. Every wait polls with a deadline; every load loop is bounded in count and in time.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import select
import signal
import socket
import threading
import time
from typing import Self

import requests
from polling import wait_for
from proxies import start_proxy, start_upstream, upstream_address  # noqa: F401 (fixtures)

SECRET = b"TOP-SECRET-do-not-serve-7f3a"
COMBINED = r'^\S+ - \S+ \[[^\]]+\] "GET {path} HTTP/1.1" 200 \d+ "[^"]*" "[^"]*"$'


# --- helpers ------------------------------------------------------------------------------------------------

def upstream_toml(*servers: str, extra: str = "", route: str = "", upstream: str = "") -> str:
    """A config with one upstream group `app` of `servers`, and the route / to it."""
    listed = ", ".join(f'"{server}"' for server in servers)
    return (f'[proxy]\nlisten = ["127.0.0.1:0"]\naccess_log = "access.log"\n{extra}\n'
            f'[proxy.upstreams.app]\nservers = [{listed}]\n{upstream}\n'
            f'[[proxy.routes]]\npath = "/"\nupstream = "app"\n{route}\n')


def raw_request(port: int, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
                method: str = "GET", timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One request over a raw socket, the target sent exactly as given; (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, rest


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoadLoop:
    """GETs of / in a thread until stopped, at most `count` requests or `seconds`; records every outcome.

    Even requests go over one keep-alive requests.Session, odd ones over a new connection each.
    """

    def __init__(self, url: str, count: int = 2000, seconds: float = 3.0):
        self.url = url
        self.count = count
        self.seconds = seconds
        self.results: list[tuple[bool, str]] = []  # (marked, upstream name) of each answered request
        self.failures: list[str] = []
        self.mark = threading.Event()  # requests begun once this is set are recorded as marked
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with requests.Session() as session:
            for number in range(self.count):
                if self.stopping.is_set() or time.monotonic() > deadline:
                    return
                marked = self.mark.is_set()
                try:
                    getter = session.get if number % 2 == 0 else requests.get
                    response = getter(self.url, timeout=5)
                except requests.RequestException as exc:
                    self.failures.append(f"request {number}: {exc!r}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"request {number}: {response.status_code} {response.text[:100]!r}")
                else:
                    self.results.append((marked, response.text))

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(self.seconds + 15)

    def names(self, marked: bool | None = None) -> list[str]:
        """The upstreams that answered (only the marked or unmarked requests, if asked)."""
        return [name for mark, name in self.results if marked is None or mark == marked]


# --- 1. balancing -------------------------------------------------------------------------------------------

def test_two_upstreams_take_turns(start_proxy, start_upstream):
    a, b = start_upstream("a"), start_upstream("b")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(a),
                              "--upstream", upstream_address(b)])

    names = [proxy.get("/").text for _ in range(8)]

    assert set(names) == {"a", "b"}
    assert names == names[:2] * 4, names


# --- 2. one upstream stops ----------------------------------------------------------------------------------

def test_a_stopped_upstream_costs_no_request(start_proxy, start_upstream):
    a, b = start_upstream("a"), start_upstream("b")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(a),
                              "--upstream", upstream_address(b)])
    assert {proxy.get("/").text for _ in range(4)} == {"a", "b"}

    b.stop()

    failures, names = [], []
    with requests.Session() as session:
        for number in range(100):
            getter = session.get if number % 2 else requests.get  # 50 keep-alive, 50 new connections
            try:
                response = getter(proxy.url("/"), timeout=5)
            except requests.RequestException as exc:
                failures.append(f"{number}: {exc!r}")
                continue
            if response.status_code != 200:
                failures.append(f"{number}: {response.status_code}")
            names.append(response.text)
    assert failures == [], proxy.log()
    assert set(names) == {"a"}


def test_stopping_an_upstream_under_load_fails_no_request(start_proxy, start_upstream):
    a, b = start_upstream("a"), start_upstream("b")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(a),
                              "--upstream", upstream_address(b)])

    with LoadLoop(proxy.url("/"), count=1500, seconds=4.0) as load:
        wait_for(lambda: {"a", "b"} <= set(load.names()), 5, message="both upstreams to answer")
        b.stop()
        load.mark.set()
        wait_for(lambda: len(load.names(marked=True)) >= 50 or not load.thread.is_alive(), 5,
                 message="50 requests after the stop")

    assert load.failures == [], proxy.log()
    assert len(load.names(marked=True)) >= 50
    assert set(load.names(marked=True)) == {"a"}


# --- 3. uploads ---------------------------------------------------------------------------------------------

def test_a_1mib_upload_arrives_intact(start_proxy, start_upstream):
    a = start_upstream("a")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(a)])  # default 1m limit
    data = os.urandom(1048576)

    response = requests.post(proxy.url("/upload"), data=data, timeout=20)

    assert response.status_code == 200, proxy.log()
    assert response.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_5mib_upload_goes_through_a_temp_file_and_one_over_the_limit_is_413(start_proxy, start_upstream):
    a = start_upstream("a")
    proxy = start_proxy(toml=upstream_toml(upstream_address(a), extra='client_max_body_size = "10m"'))
    data = os.urandom(5 * 1048576)

    response = requests.post(proxy.url("/upload"), data=data, timeout=30)

    assert response.status_code == 200, proxy.log()
    assert response.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # announced too large: refused from the head, before any body is sent
    status, _, _ = raw_request(proxy.port, "/upload", {"Content-Length": str(10 * 1048576 + 1)},
                               method="POST")
    assert status == 413
    # sent too large without a length (chunked): refused once the body passes the limit
    status = chunked_upload_status(proxy.port, 11 * 1048576)
    assert status == 413


def chunked_upload_status(port: int, size: int) -> int:
    """POST /upload a chunked body of `size` bytes; the status of the answer (the proxy may stop reading)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = os.urandom(65536)
        chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
        sent = 0
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the proxy answered and closed while we were still sending
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except OSError:
            pass
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split()[1])


# --- 4. static files ----------------------------------------------------------------------------------------

def test_static_file_etag_304_and_range(start_proxy, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    data = bytes(range(256)) * 8
    (site / "data.bin").write_bytes(data)
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--static", f"/static/={site}"])

    first = proxy.get("/static/data.bin")
    assert first.status_code == 200
    assert first.content == data
    etag = first.headers["ETag"]
    assert etag

    again = proxy.get("/static/data.bin", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""

    part = proxy.get("/static/data.bin", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.content == data[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(data)}"


# --- 5. traversal -------------------------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/./../secret.txt",
    "/static//../secret.txt",
    "/static/leak.txt",
    "/static/leakdir/secret.txt",
    "/static/.hidden",
    "/static/%2ehidden",
]


def test_traversal_never_leaks_a_file_outside_the_root(start_proxy, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.txt").write_bytes(b"fine")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (site / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (site / "leakdir").symlink_to(tmp_path)
    (site / ".hidden").write_bytes(SECRET)
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--static", f"/static/={site}"])
    assert raw_request(proxy.port, "/static/ok.txt")[::2] == (200, b"fine")  # the root itself is served

    answers = {target: raw_request(proxy.port, target) for target in TRAVERSALS}

    leaks = [target for target, (_, _, body) in answers.items() if SECRET in body]
    assert leaks == []
    statuses = {target: status for target, (status, _, _) in answers.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses


# --- 6. limit_req -------------------------------------------------------------------------------------------

def test_limit_req_refuses_the_excess_with_retry_after(start_proxy, start_upstream):
    a = start_upstream("a")
    limit = 'limit_req = { rate = "5r/s", burst = 0, nodelay = true, key = "client_ip" }'
    proxy = start_proxy(toml=upstream_toml(upstream_address(a), route=limit))

    with requests.Session() as session:
        responses = [session.get(proxy.url("/"), timeout=5) for _ in range(20)]
    refused = [response for response in responses if response.status_code == 429]
    assert len(refused) >= 15, [response.status_code for response in responses]
    assert all(response.headers.get("Retry-After") for response in refused)
    assert {response.status_code for response in responses} <= {200, 429}

    time.sleep(1.0)  # the timing is the test: a second later the bucket has room again
    assert proxy.get("/").status_code == 200


# --- 7. access log ------------------------------------------------------------------------------------------

def test_one_combined_access_log_line_per_request(start_proxy, start_upstream):
    a = start_upstream("a")
    proxy = start_proxy(toml=upstream_toml(upstream_address(a)))
    made = 0
    for _ in range(5):
        assert proxy.get("/name", headers={"Referer": "http://example.com/", "User-Agent": "done-when/1"}).ok
        made += 1
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(proxy.url("/name"), timeout=5).ok
            made += 1

    wait_for(lambda: len(proxy.access_lines()) >= made, 5, message=f"{made} access log lines")
    time.sleep(0.2)  # the timing is the test: no extra line comes later
    lines = proxy.access_lines()
    assert len(lines) == made, lines
    pattern = re.compile(COMBINED.format(path="/name"))
    assert [line for line in lines if not pattern.match(line)] == []
    assert sum('"http://example.com/" "done-when/1"' in line for line in lines) == 5


# --- 8. X-Forwarded-For -------------------------------------------------------------------------------------

def test_x_forwarded_for_is_set_replaced_or_extended(start_proxy, start_upstream):
    a = start_upstream("a")
    untrusting = start_proxy(toml=upstream_toml(upstream_address(a)))
    trusting = start_proxy(toml=upstream_toml(upstream_address(a), extra='trusted_proxies = ["127.0.0.1"]'))

    plain = untrusting.get("/echo").json()
    assert plain["headers"].get("X-Forwarded-For") == "127.0.0.1"
    assert plain["remote_addr"] == "127.0.0.1"

    spoofed = untrusting.get("/echo", headers={"X-Forwarded-For": "1.2.3.4"}).json()
    assert spoofed["headers"].get("X-Forwarded-For") == "127.0.0.1"

    relayed = trusting.get("/echo", headers={"X-Forwarded-For": "1.2.3.4"}).json()
    assert relayed["headers"].get("X-Forwarded-For") == "1.2.3.4, 127.0.0.1"


# --- 9. slowloris -------------------------------------------------------------------------------------------

def test_slowloris_connections_do_not_slow_normal_requests(start_proxy, start_upstream):
    a = start_upstream("a", "-k", "sync", "-w", "1")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(a)])
    slow: list[socket.socket] = []
    stop = threading.Event()
    send_errors: list[str] = []

    def trickle() -> None:
        while not stop.wait(1.0):  # the timing is the test: a byte a second on each connection
            for sock in slow:
                try:
                    sock.send(b"a")
                except OSError as exc:
                    send_errors.append(repr(exc))

    trickler = threading.Thread(target=trickle, daemon=True)
    try:
        for number in range(200):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            slow.append(sock)
            if number % 2:  # a head that never ends
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            else:  # a body that never ends
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nxyz")
        trickler.start()

        times = []
        for _ in range(20):
            began = time.monotonic()
            response = proxy.get("/", timeout=5)
            times.append(time.monotonic() - began)
            assert (response.status_code, response.text) == (200, "a")
            time.sleep(0.15)  # the timing is the test: spread the requests over the trickle's rounds

        assert max(times) < 0.5, [f"{t:.3f}" for t in times]
        # the slow connections were really there all along (the proxy did not just drop them)
        readable, _, _ = select.select(slow, [], [], 0)
        assert readable == [] and send_errors == [], (len(readable), send_errors[:3])
    finally:
        stop.set()
        if trickler.is_alive():
            trickler.join(5)
        for sock in slow:
            sock.close()


# --- 10. all upstreams down ---------------------------------------------------------------------------------

def test_closed_upstream_ports_answer_502_after_the_connect_retry_hold(start_proxy):
    # refused connects are retried for connect_retry_timeout (an app restarting), then the answer is 502
    proxy = start_proxy(upstream_toml(f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}",
                                      upstream='connect_retry_timeout = "1s"'))

    for _ in range(2):  # the first finds them refusing; the second finds them marked down
        began = time.monotonic()
        response = proxy.get("/", timeout=10)
        elapsed = time.monotonic() - began
        assert response.status_code == 502
        assert 0.9 < elapsed < 3.0, elapsed


def test_stopped_upstreams_answer_502_fast(start_proxy, start_upstream):
    a, b = start_upstream("a"), start_upstream("b")
    # connect_retry_timeout = 0: no hold, nginx's immediate 502
    proxy = start_proxy(upstream_toml(upstream_address(a), upstream_address(b),
                                      upstream='connect_retry_timeout = "0s"'))
    assert {proxy.get("/").text for _ in range(2)} == {"a", "b"}  # pooled connections to both

    a.stop()
    b.stop()
    began = time.monotonic()
    response = proxy.get("/", timeout=10)
    elapsed = time.monotonic() - began

    assert response.status_code == 502
    assert elapsed < 2.0, elapsed


# --- 11. reload ---------------------------------------------------------------------------------------------

def test_sighup_adds_an_upstream_under_load_and_refuses_a_broken_config(start_proxy, start_upstream):
    a, b = start_upstream("a"), start_upstream("b")
    proxy = start_proxy(toml=upstream_toml(upstream_address(a)))

    with LoadLoop(proxy.url("/"), count=2000, seconds=6.0) as load:
        wait_for(lambda: len(load.results) >= 20, 5, message="the load to start")
        proxy.config.write_text(upstream_toml(upstream_address(a), upstream_address(b)))
        proxy.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in proxy.log(), 5, message="the reload")
        load.mark.set()
        wait_for(lambda: {"a", "b"} <= set(load.names(marked=True)) and len(load.names(marked=True)) >= 50, 5,
                 message="50 requests, answered by a and b, after the reload")

    assert load.failures == [], proxy.log()
    assert set(load.names(marked=False)) >= {"a"}
    assert {"a", "b"} <= set(load.names(marked=True))

    proxy.config.write_text("[proxy\nlisten = nonsense\n")
    proxy.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in proxy.log(), 5, message="the refusal in the log")
    assert proxy.proc.poll() is None
    assert {proxy.get("/").text for _ in range(4)} == {"a", "b"}  # the old (reloaded) config still serves


# --- 12. gzip -----------------------------------------------------------------------------------------------

def test_gzip_only_when_asked(start_proxy, start_upstream):
    a = start_upstream("a")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(a)])

    plain = proxy.get("/text", headers={"Accept-Encoding": None})  # None: requests sends no such header
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert len(plain.content) == 20000

    status, headers, body = raw_request(proxy.port, "/text", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers.get("content-encoding") == "gzip"
    compressed = dechunk(body) if headers.get("transfer-encoding") == "chunked" else body
    assert len(compressed) < len(plain.content)
    assert gzip.decompress(compressed) == plain.content


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body."""
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]
