"""Connections to one upstream server: opened on demand, kept alive while idle, reused newest first.

An `UpstreamConnection` is an asyncio protocol that feeds the upstream's bytes to the sans-IO
`ResponseParser` of the exchange in progress and hands out its events; the exchange pauses reading when
the client cannot keep up and the response is not buffered (or its buffer is full: see forward.py).
The connection knows the exchange only as a `ResponseListener`, so this module imports nothing of the
proxy: forward.py uses it, never the other way round.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

from wsgistack.config.addresses import Address
from wsgistack.http.parser import ParseError
from wsgistack.http.response_parser import ResponseHead, ResponseParser


class UpstreamError(Exception):
    """The exchange with an upstream failed; `timeout` tells a 504 from a 502, `sent` whether the request
    had gone out (then only an idempotent one may be sent again)."""

    def __init__(self, reason: str, timeout: bool = False, sent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout
        self.sent = sent


class ResponseListener(Protocol):
    """What an upstream connection tells the exchange it serves (Exchange in forward.py)."""

    def on_upstream(self) -> None:
        """Bytes arrived, the response ended or the connection closed: see pop_event() and `closed`."""


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream server, used by one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0
        self.keep_alive = False  # what the last response head said
        self.listener: ResponseListener | None = None  # the exchange served now, told of every byte
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._lost: Exception | None = None

    # -- asyncio callbacks ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()  # kept: each call costs a getpid() syscall on Python 3.11
        # no TCP_NODELAY here: uvloop sets it on every TCP transport (asyncio's own loop too, since 3.6)

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            self.closed = True  # bytes nobody asked for: the connection cannot be trusted any more
            self.transport.close()  # type: ignore[union-attr]
            return
        self.parser.feed(data)
        if self.listener is not None:
            self.listener.on_upstream()
        else:
            self._wake()

    def eof_received(self) -> bool:
        if self.parser is not None:
            self.parser.feed_eof()
        self.closed = True
        if self.listener is not None:
            self.listener.on_upstream()
        else:
            self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost = exc
        if self.parser is not None and not self.parser.complete and not self.parser.failed:
            self.parser.feed_eof()
        if self.listener is not None:
            self.listener.on_upstream()
        else:
            self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(UpstreamError("upstream closed the connection while we sent the request"))

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- what an exchange uses --------------------------------------------------------------------------

    def begin(self, method: str) -> ResponseParser:
        """Start an exchange: a fresh parser for the response to a `method` request."""
        if self.parser is not None:
            self.parser.close()
        self.parser = ResponseParser(method)
        self.keep_alive = False
        self.requests += 1
        return self.parser

    def write(self, data: bytes) -> None:
        """Send request bytes."""
        self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self) -> None:
        """Wait until the upstream has taken what was written (large request bodies)."""
        if self._drain is not None and not self._drain.done():
            await self._drain

    def pop_event(self):
        """The next response event if one is already parsed, else None (never waits)."""
        parser = self.parser
        if parser is None or not parser.events:
            return None
        event = parser.events.popleft()
        if isinstance(event, ResponseHead):
            self.keep_alive = event.keep_alive
        return event

    async def next_event(self, timeout: float):
        """The next response event; UpstreamError(timeout=True) when none comes within `timeout`."""
        parser = self.parser
        assert parser is not None
        while not parser.events:
            if self.closed:
                return ParseError(502, "upstream closed the connection")
            loop = self.loop
            self._waiter = waiter = loop.create_future()
            # a plain timer, not asyncio.wait_for: on 3.11 that wraps every wait in a new task
            timer = loop.call_later(timeout, _expire, waiter) if timeout else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        event = parser.events.popleft()
        if isinstance(event, ResponseHead):
            self.keep_alive = event.keep_alive
        return event

    def pause_reading(self) -> None:
        """Stop reading the upstream while the client catches up."""
        if not self.closed:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        """Read again."""
        if not self.closed:
            self.transport.resume_reading()  # type: ignore[union-attr]

    @property
    def reusable(self) -> bool:
        """True when the last response ended cleanly on a keep-alive connection."""
        parser = self.parser
        return (not self.closed and parser is not None and parser.complete and not parser.extra_bytes
                and self.keep_alive)

    def close(self) -> None:
        """Close now (abort: nothing more of this connection is wanted)."""
        self.closed = True
        if self.parser is not None:
            self.parser.close()
        if self.transport is not None:
            self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamError("upstream timed out", timeout=True))


class ConnectionPool:
    """Idle keep-alive connections of one server, newest last; at most `size`, each idle at most `idle`.

    UpstreamServer.begin_request takes the newest fresh one for a request; release() gives it back.
    """

    def __init__(self, address: Address, size: int, idle: float, connect_timeout: float):
        self.address = address
        self.size = size
        self.idle = idle
        self.connect_timeout = connect_timeout
        self.idle_connections: deque[UpstreamConnection] = deque()

    async def connect(self) -> UpstreamConnection:
        """A new connection within connect_timeout."""
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for runs the connect in one more task
            async with asyncio.timeout(self.connect_timeout or None):
                return await self.open()
        except TimeoutError:
            raise UpstreamError("connect timed out", timeout=True) from None

    async def open(self) -> UpstreamConnection:
        """A new connection, with no timeout of its own (the caller keeps the deadline)."""
        loop = asyncio.get_running_loop()
        address = self.address
        try:
            if address.kind == "unix":
                _, protocol = await loop.create_unix_connection(UpstreamConnection, address.path)
            else:
                _, protocol = await loop.create_connection(UpstreamConnection, address.host, address.port)
        except OSError as exc:
            raise UpstreamError(f"connect failed: {exc.strerror or exc}") from None
        return protocol  # type: ignore[return-value]

    def release(self, connection: UpstreamConnection) -> None:
        """Keep a finished connection for reuse when it can be, else close it."""
        if connection.reusable and len(self.idle_connections) < self.size:
            connection.parser.close()  # type: ignore[union-attr]
            connection.parser = None
            connection.idle_since = time.monotonic()
            self.idle_connections.append(connection)
        else:
            connection.close()

    def sweep(self) -> None:
        """Close connections idle longer than `idle` (called once a second)."""
        now = time.monotonic()
        while self.idle_connections and now - self.idle_connections[0].idle_since >= self.idle:
            self.idle_connections.popleft().close()

    def close(self) -> None:
        """Close every idle connection."""
        while self.idle_connections:
            self.idle_connections.popleft().close()
