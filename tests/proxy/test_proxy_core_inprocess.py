"""The proxy's core in process: ClientConnection, Exchange and UpstreamConnection on a real event loop, with
fake transports that record what is written, and no socket anywhere.

The test plays both peers: it feeds the client connection a request (`data_received`), answers as the
upstream by feeding the upstream connection its bytes, and runs timeouts by calling the ticker's
`check_deadline` with a `now` of its choosing. Every phase change of every exchange is checked against
forward.TRANSITIONS here (CHECK_PHASES, off in production for speed).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polling import wait_for

from wsgistack.config.addresses import Address
from wsgistack.proxy import forward
from wsgistack.proxy.connection import ClientConnection
from wsgistack.proxy.forward import Phase
from wsgistack.proxy.pool import UpstreamConnection, UpstreamError
from wsgistack.proxy.routing import ProxyState
from wsgistack.proxy.settings import ProxySettings, RouteSettings, ServerSettings, UpstreamSettings
from wsgistack.proxy.upstream import UpstreamServer

GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"


@pytest.fixture(autouse=True)
def checked_phases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forward, "CHECK_PHASES", True)


class FakeTransport:
    """The parts of an asyncio transport the proxy uses; writes are recorded, a close is reported to the
    protocol on the loop's next turn, as a real transport does."""

    def __init__(self, protocol: Any, loop: asyncio.AbstractEventLoop, peer: Any = None):
        self.protocol = protocol
        self.loop = loop
        self.peer = peer
        self.data = bytearray()
        self.reading = True
        self.closing = False
        self.aborted = False
        self.eof_written = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        if not self.closing:  # asyncio drops writes to a closing transport
            self.data += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()


class AccessLog:
    """Records what the client connection logs (the access log's interface)."""

    enabled = True

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write_request(self, client_ip: str, head: Any, fields: dict[str, Any], status: int, sent: int,
                      started: float, duration: float) -> None:
        self.lines.append({"status": status, "sent": sent, "addr": fields.get("wsgistack.upstream_addr"),
                           "upstream_status": fields.get("wsgistack.upstream_status")})


class Host:
    """A ConnectionHost: what a client connection needs of the proxy server, without listeners."""

    stopping = False
    static = None  # no static routes here

    def __init__(self, state: ProxyState):
        self.state = state
        self.access_log = AccessLog()
        self.idle: dict[Any, None] = {}

    def admit(self, connection: ClientConnection) -> str | None:
        self.idle[connection] = None
        connection.idle = True
        return None

    def forget(self, connection: ClientConnection) -> None:
        self.idle.pop(connection, None)

    def keeps_connection(self) -> bool:
        return True  # one process: no sibling to hand connections to


class Proxy:
    """One ProxyState on a real loop; the upstream servers' connects are made (or refused) by the test."""

    def __init__(self, servers: tuple[str, ...] = ("a",), buffering: bool = True, response_buffer_size: int = 1024,
                 read_timeout: float = 60.0, connect_retry_timeout: float = 5.0):
        group = UpstreamSettings(name="app", servers=tuple(ServerSettings(Address("unix", path=name))
                                                           for name in servers),
                                 read_timeout=read_timeout, connect_retry_timeout=connect_retry_timeout)
        settings = ProxySettings(upstreams={"app": group}, routes=(RouteSettings(path="/", upstream="app"),),
                                 buffering=buffering, response_buffer_size=response_buffer_size,
                                 max_temp_file_size=1 << 20)
        self.state = ProxyState(settings)
        self.host = Host(self.state)
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, UpstreamServer] = {}
        self.refusals: dict[str, int] = {}  # server name -> connects still to refuse
        self.opened: list[tuple[str, UpstreamConnection]] = []
        for server in self.state.upstreams["app"].servers:
            name = server.name.removeprefix("unix:")
            self.servers[name] = server
            server.pool.open = functools.partial(self._open, name)  # type: ignore[method-assign]

    async def _open(self, name: str) -> UpstreamConnection:
        if self.refusals.get(name):
            self.refusals[name] -= 1
            raise UpstreamError("connect failed: Connection refused")
        connection = UpstreamConnection()
        connection.connection_made(FakeTransport(connection, self.loop))  # type: ignore[arg-type]
        self.opened.append((name, connection))
        return connection

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a callback as the loop would: inside it (protocols ask for the running loop)."""
        async def inside() -> Any:
            return function(*args)
        return self.loop.run_until_complete(inside())

    def turn(self) -> None:
        """Let the loop run what is ready (tasks, call_soon callbacks)."""
        self.loop.run_until_complete(asyncio.sleep(0))

    def wait(self, condition: Callable[[], object], message: str) -> Any:
        return wait_for(lambda: self.turn() or condition(), timeout=5.0, interval=0.001, message=message)

    def client(self) -> ClientConnection:
        connection = ClientConnection(self.host, "http", "80")  # type: ignore[arg-type]
        self.call(connection.connection_made, FakeTransport(connection, self.loop, ("10.0.0.7", 40000)))
        return connection

    def upstream(self, index: int) -> UpstreamConnection:
        """The index-th connection opened to an upstream, once it carries a whole request."""
        self.wait(lambda: len(self.opened) > index and sent(self.opened[index][1]).endswith(b"\r\n\r\n"),
                  f"upstream connection {index}")
        return self.opened[index][1]

    @property
    def log(self) -> list[dict[str, Any]]:
        return self.host.access_log.lines

    def close(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def sent(protocol: Any) -> bytes:
    return bytes(protocol.transport.data)


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., Proxy]]:
    proxies: list[Proxy] = []

    def make(**kwargs: Any) -> Proxy:
        proxies.append(Proxy(**kwargs))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


# -- the everyday path ----------------------------------------------------------------------------------------

def test_a_plain_get_goes_upstream_and_its_response_to_the_client(make_proxy):
    proxy = make_proxy()
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    assert sent(upstream).startswith(b"GET /x HTTP/1.1\r\n")
    assert b"X-Forwarded-For: 10.0.0.7\r\n" in sent(upstream)
    assert client.exchange.phase is Phase.AWAITING
    assert proxy.servers["a"].active == 1
    proxy.call(upstream.data_received, OK_HEAD % 5 + b"hello")
    answer = sent(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nhello")
    assert proxy.log == [{"status": 200, "sent": 5, "addr": "unix:a", "upstream_status": "200"}]
    assert client.exchange is None and not client.busy and not client.transport.closing
    assert proxy.servers["a"].active == 0
    assert list(proxy.servers["a"].pool.idle_connections) == [upstream]  # pooled for the next request


def test_keep_alive_reuses_the_client_and_the_upstream_connection(make_proxy):
    proxy = make_proxy()
    client = proxy.client()
    for number in (1, 2):
        proxy.call(client.data_received, GET)
        upstream = proxy.upstream(0)
        proxy.wait(lambda up=upstream, n=number: sent(up).count(b"GET /x") == n, f"request {number} upstream")
        proxy.call(upstream.data_received, OK_HEAD % 3 + b"%03d" % number)
    assert sent(client).count(b"HTTP/1.1 200 OK") == 2 and sent(client).endswith(b"002")
    assert len(proxy.opened) == 1 and upstream.requests == 2
    assert [line["status"] for line in proxy.log] == [200, 200]
    assert not client.transport.closing


# -- failures before the response -----------------------------------------------------------------------------

def test_a_refused_connect_is_retried_on_the_next_server(make_proxy):
    proxy = make_proxy(servers=("a", "b"))
    proxy.refusals["a"] = 1
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    assert proxy.opened[0][0] == "b"
    proxy.call(upstream.data_received, OK_HEAD % 2 + b"ok")
    assert sent(client).startswith(b"HTTP/1.1 200 OK")
    assert proxy.log[0]["addr"] == "unix:a, unix:b" and proxy.log[0]["upstream_status"] == "502, 200"
    assert proxy.servers["a"].active == proxy.servers["b"].active == 0


def test_a_refused_connect_to_the_only_server_is_held_and_retried(make_proxy):
    proxy = make_proxy()
    proxy.refusals["a"] = 2
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)  # after two refusals and two held waits (25 ms, then 50 ms)
    proxy.call(upstream.data_received, OK_HEAD % 2 + b"ok")
    assert sent(client).startswith(b"HTTP/1.1 200 OK")
    assert proxy.log[0]["upstream_status"] == "502, 502, 200"
    assert proxy.servers["a"].active == 0


def test_an_upstream_that_closes_mid_head_is_a_502(make_proxy):
    proxy = make_proxy()
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    proxy.call(upstream.data_received, b"HTTP/1.1 200 OK\r\nContent-Le")
    proxy.call(upstream.eof_received)
    assert sent(client).startswith(b"HTTP/1.1 502 ")
    assert proxy.log[0]["status"] == 502 and proxy.log[0]["upstream_status"] == "502"
    assert upstream.transport.aborted and not proxy.servers["a"].pool.idle_connections
    assert proxy.servers["a"].active == 0
    assert not client.transport.closing  # a 502 of the proxy's own keeps the client's connection


def test_a_read_timeout_is_a_504(make_proxy):
    proxy = make_proxy(read_timeout=30.0)
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    proxy.call(client.check_deadline, time.monotonic() + 29.0)  # the ticker, before the deadline
    assert sent(client) == b""
    proxy.call(client.check_deadline, time.monotonic() + 31.0)
    assert sent(client).startswith(b"HTTP/1.1 504 ")
    assert proxy.log[0]["status"] == 504 and proxy.log[0]["upstream_status"] == "504"
    assert upstream.transport.aborted
    assert proxy.servers["a"].active == 0 and len(proxy.opened) == 1  # a timeout is not held and retried


# -- slow clients and clients that leave ----------------------------------------------------------------------

def test_a_slow_client_with_buffering_frees_the_upstream_at_once(make_proxy):
    proxy = make_proxy(buffering=True)
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    proxy.call(client.pause_writing)  # the client's socket buffer is full
    body = b"x" * 5000
    proxy.call(upstream.data_received, OK_HEAD % len(body) + body)
    exchange = client.exchange
    assert exchange.phase is Phase.DRAINING and exchange.spool.pending > len(body)  # head and body wait
    assert sent(client) == b""
    assert proxy.servers["a"].active == 0 and list(proxy.servers["a"].pool.idle_connections) == [upstream]
    proxy.call(client.resume_writing)
    assert sent(client).endswith(body) and client.exchange is None
    assert proxy.log[0]["status"] == 200 and proxy.log[0]["sent"] == len(body)


def test_a_slow_client_without_buffering_holds_the_upstream_with_backpressure(make_proxy):
    proxy = make_proxy(buffering=False)
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    proxy.call(upstream.data_received, OK_HEAD % 8 + b"1234")
    assert sent(client).endswith(b"1234")
    proxy.call(client.pause_writing)
    proxy.call(upstream.data_received, b"5678")
    assert not upstream.transport.reading and not sent(client).endswith(b"5678")
    assert client.exchange.phase is Phase.RELAYING and proxy.servers["a"].active == 1
    proxy.call(client.resume_writing)
    assert upstream.transport.reading and sent(client).endswith(b"12345678")
    assert client.exchange is None and proxy.servers["a"].active == 0
    assert proxy.log[0]["sent"] == 8


def test_a_client_that_leaves_mid_response_drops_the_upstream_connection(make_proxy):
    proxy = make_proxy()
    client = proxy.client()
    proxy.call(client.data_received, GET)
    upstream = proxy.upstream(0)
    proxy.call(upstream.data_received, OK_HEAD % 10 + b"1234")
    exchange = client.exchange
    proxy.call(client.connection_lost, ConnectionResetError())
    assert exchange.phase is Phase.DONE and client.exchange is None
    assert upstream.transport.aborted and not proxy.servers["a"].pool.idle_connections  # not reusable
    assert proxy.servers["a"].active == 0
    assert proxy.log == [{"status": 200, "sent": 4, "addr": "unix:a", "upstream_status": "200"}]
    proxy.call(upstream.data_received, b"567890")  # what still arrives goes nowhere
    assert proxy.log[-1]["sent"] == 4 and len(proxy.log) == 1


# -- the table ------------------------------------------------------------------------------------------------

def test_every_phase_has_its_row_and_done_is_final():
    assert set(forward.TRANSITIONS) == set(Phase)
    assert forward.TRANSITIONS[Phase.DONE] == frozenset()
    reachable, frontier = {Phase.NEW}, [Phase.NEW]
    while frontier:
        for after in forward.TRANSITIONS[frontier.pop()] - reachable:
            reachable.add(after)
            frontier.append(after)
    assert reachable == set(Phase)
