"""Issue 10 against a real `wsgistack proxy`: what one client can do to the others, and to the upstream.

- a Range header built to make a regex backtrack is answered at once, and other clients meanwhile too;
- a request head that keeps arriving is refused at `client_max_header_size` (431), not held up to ~800 KiB;
- one address may hold `max_connections_per_ip` connections; at `max_connections` an idle connection makes
  room for a new client; with only 1024 file descriptors the proxy keeps answering;
- what the proxy adds (X-Forwarded-*, X-Request-ID) never makes the upstream refuse the request: the proxy
  answers 431 itself.
"""

from __future__ import annotations

import functools
import resource
import socket
import subprocess
import time
from contextlib import ExitStack

import httptools
import pytest
from polling import wait_for
from proxies import start_proxy, start_upstream, upstream_address  # noqa: F401


class Reply:
    """One response read from a raw socket."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def read_reply(sock: socket.socket) -> Reply:
    """Read one whole response (the socket's timeout is the deadline)."""
    reply = Reply()
    parser = httptools.HttpResponseParser(reply)
    while not reply.complete:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the proxy closed the connection without a whole response")
        parser.feed_data(data)
        reply.status = parser.get_status_code()
    return reply


def ask(port: int, data: bytes, timeout: float = 5.0, source: str = "127.0.0.1") -> Reply:
    """Send raw bytes on a new connection from `source` and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(data)
        return read_reply(sock)


def closed(sock: socket.socket) -> bool:
    """True once the proxy closed the connection (EOF or reset within the socket's timeout)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


GET = b"GET /f.txt HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def static_proxy(start_proxy):
    """A proxy serving a static folder, with the given lines added to [proxy]."""

    def start(proxy: str = ""):
        toml = (f'[proxy]\nlisten = ["127.0.0.1:0"]\n{proxy}\n'
                '[[proxy.routes]]\npath = "/"\nstatic = "{folder}"\n')
        started = start_proxy(toml=toml, ready=False)
        (started.folder / "f.txt").write_bytes(b"hello\n")
        return started.wait_ready()

    return start


# --- item 1: Range ---------------------------------------------------------------------------------------

def test_a_backtracking_range_is_answered_at_once_and_others_are_served(static_proxy):
    proxy = static_proxy()
    spaces = " " * 4000  # 8 KB: under the 8190-byte field limit; minutes of backtracking with the old regex
    bad = f"GET /f.txt HTTP/1.1\r\nHost: x\r\nRange: bytes={spaces}-{spaces}!\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as attacker:
        attacker.sendall(bad)
        started = time.monotonic()
        other = ask(proxy.port, GET, timeout=5)  # another client, right behind it
        assert (other.status, other.body) == (200, b"hello\n")
        answer = read_reply(attacker)
    assert time.monotonic() - started < 2.0
    # not a valid range: ignored, the whole file (RFC 9110 14.2)
    assert (answer.status, answer.body) == (200, b"hello\n")


# --- item 6: memory and connections ------------------------------------------------------------------------

def test_a_head_that_keeps_arriving_is_refused_past_client_max_header_size(static_proxy):
    proxy = static_proxy()
    field = b"X-Filler: " + b"f" * 1000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /f.txt HTTP/1.1\r\nHost: x\r\n" + field * 20)  # 20 KB: within the 32 KiB default
        sock.sendall(field * 20)  # 40 KB in all, no end of head: refused, not held up to ~800 KiB
        reply = read_reply(sock)
        assert reply.status == 431
        assert closed(sock)
    # a 40 KB head sent whole in one write (one read on the proxy's side): the same bound
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /f.txt HTTP/1.1\r\nHost: x\r\n" + field * 40 + b"\r\n")
        assert read_reply(sock).status == 431
    # a head under the cap that arrives in pieces is fine
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /f.txt HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            sock.sendall(field * 9)
        sock.sendall(b"\r\n")
        assert read_reply(sock).status == 200


def test_one_address_is_capped_others_and_unix_clients_are_not(static_proxy):
    proxy = static_proxy("max_connections_per_ip = 4")
    with ExitStack() as stack:
        mine = [stack.enter_context(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
                for _ in range(4)]
        mine[0].sendall(GET)
        assert read_reply(mine[0]).status == 200  # the four are in (accepted in order, before this answer)
        refused = ask(proxy.port, GET)
        assert refused.status == 503
        assert (ask(proxy.port, GET, source="127.0.0.2").status) == 200  # another address is served
    # closed ones no longer count
    wait_for(lambda: ask(proxy.port, GET).status == 200, timeout=5, message="the address's count to drop")


def test_a_trusted_proxy_in_front_is_not_capped_per_address(static_proxy):
    proxy = static_proxy('max_connections_per_ip = 2\ntrusted_proxies = ["127.0.0.1/32"]')
    with ExitStack() as stack:
        for _ in range(4):  # a load balancer's connections all come from its own address
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
            sock.sendall(GET)
            assert read_reply(sock).status == 200


def test_unix_socket_clients_are_not_capped_per_address(start_proxy, tmp_path):
    path = tmp_path / "proxy.sock"
    toml = (f'[proxy]\nlisten = ["127.0.0.1:0", "unix:{path}"]\nmax_connections_per_ip = 2\n'
            f'[[proxy.routes]]\npath = "/"\nstatic = "{{folder}}"\n')
    proxy = start_proxy(toml=toml, ready=False)
    (proxy.folder / "f.txt").write_bytes(b"hello\n")
    proxy.wait_ready()
    with ExitStack() as stack:
        for _ in range(5):
            sock = stack.enter_context(socket.socket(socket.AF_UNIX))
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(GET)
            assert read_reply(sock).status == 200


def test_at_max_connections_the_oldest_idle_connection_makes_room(static_proxy):
    proxy = static_proxy("max_connections = 2\nmax_connections_per_ip = 0")
    with ExitStack() as stack:
        def connect():
            return stack.enter_context(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
        silent = connect()  # open, no byte of a request: idle
        kept = connect()
        kept.sendall(GET)
        assert read_reply(kept).status == 200  # kept alive: idle again, newer than `silent`
        newcomer = connect()
        newcomer.sendall(GET)
        assert read_reply(newcomer).status == 200  # served, not 503
        assert closed(silent)  # the oldest idle one made room
        third = connect()
        third.sendall(GET)
        assert read_reply(third).status == 200
        assert closed(kept)  # then the next oldest
        newcomer.sendall(GET)  # still open: it was newer
        assert read_reply(newcomer).status == 200


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_with_1024_file_descriptors_idle_crowds_do_not_lock_clients_out(static_proxy, monkeypatch):
    # the proxy inherits a limit of 1024 open files (as under systemd's default soft limit)
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=_low_fd_limit))
    proxy = static_proxy("max_connections_per_ip = 0")
    monkeypatch.undo()
    assert "file descriptors, the limit is 1024" in proxy.log()
    crowd: list[socket.socket] = []
    try:
        for _ in range(1100):  # more than the proxy has descriptors, none of them sends a byte
            crowd.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))

        def served() -> bool:
            try:
                return ask(proxy.port, GET, timeout=2).status == 200
            except OSError:  # closed or reset: dropped while descriptors were short; the deadline decides
                return False

        wait_for(served, timeout=10, interval=0.1, message="a request to be answered")
    finally:
        for sock in crowd:
            sock.close()
    assert proxy.proc.poll() is None


# --- item 7: what the proxy adds fits in the upstream's limits -------------------------------------------

@pytest.fixture
def proxied(start_proxy, start_upstream):
    upstream = start_upstream("a")
    toml = (f'[proxy]\nlisten = ["127.0.0.1:0"]\ntrusted_proxies = ["127.0.0.1/32"]\n'
            f'[proxy.upstreams.app]\nservers = ["{upstream_address(upstream)}"]\n'
            f'[[proxy.routes]]\npath = "/"\nupstream = "app"\n')
    return start_proxy(toml=toml)


def test_a_request_near_the_field_limit_is_passed_or_refused_by_the_proxy_itself(proxied):
    for fields in range(94, 101):  # the parser of either takes 100
        extra = "".join(f"X-Field-{number}: {number}\r\n" for number in range(fields - 1))  # plus Host
        reply = ask(proxied.port, f"GET /name HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        # Host is kept and 5 fields are added (X-Forwarded-For/-Proto/-Host/-Port, X-Request-ID): 95 + 5 = 100
        if fields <= 95:
            assert (reply.status, reply.body) == (200, b"a"), fields
        else:
            assert reply.status == 431, fields
            assert "x-request-id" not in reply.headers  # the proxy's own answer, not the upstream's relayed


def test_a_long_x_forwarded_for_from_a_trusted_peer_is_refused_by_the_proxy(proxied):
    chain = ", ".join(["10.0.0.1"] * 817)
    # within the 8190-byte field limit as it arrives, past it with ", 127.0.0.1" appended
    name = len("X-Forwarded-For")
    assert name + len(chain) <= 8190 < name + len(chain) + len(", 127.0.0.1")
    reply = ask(proxied.port, f"GET /name HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {chain}\r\n\r\n".encode())
    assert reply.status == 431
    assert "x-request-id" not in reply.headers
    short = ask(proxied.port, b"GET /name HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
    assert (short.status, short.body) == (200, b"a")


# --- the settings --------------------------------------------------------------------------------------

def test_the_new_limits_have_defaults_and_read_from_the_file(tmp_path):
    from wsgistack.config.errors import ConfigError
    from wsgistack.proxy.config import load_proxy_settings

    defaults = load_proxy_settings(None, {"upstream": ["127.0.0.1:9000"]})
    assert (defaults.max_connections_per_ip, defaults.client_max_header_size) == (512, 32 * 1024)
    config = tmp_path / "wsgistack.toml"
    config.write_text('[proxy]\nmax_connections_per_ip = 0\nclient_max_header_size = "64k"\n'
                      '[[proxy.routes]]\npath = "/"\nstatic = "."\n')
    settings = load_proxy_settings(str(config), {})
    assert (settings.max_connections_per_ip, settings.client_max_header_size) == (0, 64 * 1024)
    config.write_text('[proxy]\nmax_connections_per_ip = -1\n[[proxy.routes]]\npath = "/"\nstatic = "."\n')
    with pytest.raises(ConfigError, match="max_connections_per_ip"):
        load_proxy_settings(str(config), {})
