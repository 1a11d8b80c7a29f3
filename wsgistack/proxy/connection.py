"""One client connection to the proxy: parse, read the whole request, apply the route, answer, keep alive.

The head and body are parsed by the same sans-IO `RequestParser` as the server's. Nothing goes upstream
before the request is complete (see buffering.py). Then the limits are applied and the route's handler
answers: an `Exchange` (forward.py) driven by the upstream's callbacks, a static reply written at once, or
a task when something must wait (a limit_req delay, a large file sent with backpressure). Reading from the
client is paused meanwhile, so pipelined requests wait their turn in the kernel, not in our memory.

The connection knows the server that accepted it only as a `ConnectionHost` (and the static replies through
it), and the Exchange knows the connection only as its `ClientSide`: no module of the proxy imports the one
that calls it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_to_bytes

from wsgistack.http.errors import ClientGone, HTTPError
from wsgistack.http.heads import CONTINUE, UpstreamHeadTooLarge, error_reply, error_response
from wsgistack.http.parser import BodyData, EndOfMessage, ParseError, RequestHead, RequestParser
from wsgistack.http.target import encode_path, normalize_path, split_target
from wsgistack.proxy.buffering import RequestBody
from wsgistack.proxy.forward import Exchange
from wsgistack.proxy.limits import LimitConn, key_of

if TYPE_CHECKING:
    from wsgistack.proxy.accesslog import BatchedAccessLog
    from wsgistack.proxy.routing import ProxyState, Route

log = logging.getLogger("wsgistack.proxy")


LINGER = 2.0  # seconds a refused request's remaining bytes are read and dropped before the close


class StaticAnswer(Protocol):
    """What a static reply wrote so far (static_reply.Answer)."""

    status: int
    sent: int
    keep_alive: bool
    rest: Any  # a big file still to send by `finish`, or None


class StaticReplies(Protocol):
    """Static files' replies (static_reply.py, which names ClientConnection: the server hands it over)."""

    def start(self, client: Any, route: Route, head: RequestHead, keep_alive: bool) -> StaticAnswer:
        """Write the reply, or its head and a first part; `rest` says what `finish` must still send."""

    async def finish(self, client: Any, answer: Any) -> StaticAnswer:
        """Send the rest of a big file with backpressure."""


class ConnectionHost(Protocol):
    """What a client connection needs of the server that accepted it (ProxyServer in server.py)."""

    state: ProxyState  # the current config; a request keeps the one it started with
    stopping: bool
    access_log: BatchedAccessLog
    idle: dict[Any, None]  # connections waiting for a request, oldest first
    static: StaticReplies

    def admit(self, connection: Any) -> str | None:
        """Count a new connection in; why it is refused, or None."""

    def keeps_connection(self) -> bool:
        """Whether a response may keep its connection (not one being handed to a sibling process)."""

    def forget(self, connection: Any) -> None:
        """The connection is closed: it counts no more."""


class ClientConnection(asyncio.Protocol):
    """The proxy's side of one client connection."""

    def __init__(self, server: ConnectionHost, scheme: str, server_port: str):
        self.server = server
        self.scheme = scheme
        self.server_port = server_port
        self.transport: asyncio.Transport | None = None
        self.client_ip = "-"
        self.client_port = ""
        self.state: ProxyState = server.state
        self.parser = RequestParser(self.state.limits)
        self.head: RequestHead | None = None
        self.route: Route | None = None
        self.body: RequestBody | None = None
        self.busy = False
        self.closed = False
        self.lingering = False
        self.client_eof = False  # the client half-closed: no request can follow the one in progress
        self.requests = 0
        self.deadline = 0.0  # monotonic time of the current read timeout; 0 = none
        self._waiting_head = False
        self._drain: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.exchange: Exchange | None = None
        # monotonic time the request's answer began (its wall time is worked out when it is logged: one
        # attribute less keeps this class within the 30 that CPython 3.11 shares between instances' dicts;
        # past them every attribute access of every connection takes the slow path)
        self.begun = 0.0
        self._held: tuple[LimitConn, str | None] | None = None  # the limit_conn slot this request occupies
        self.idle = False  # in server.idle: no byte of a request pending (new, or kept alive between requests)
        self.counted_address = False  # counted in server.per_address (max_connections_per_ip)
        self._head_bytes = 0  # bytes of the request head still arriving (client_max_header_size)
        self._read_size = 0  # bytes of the last read: only a read past the cap can hold a head past it

    # -- asyncio callbacks ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # kept: asyncio.get_running_loop() costs a getpid() syscall per call on Python 3.11
        self.loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):  # TCP_NODELAY is set by the loop on every TCP transport
            self.client_ip, self.client_port = peer[0], str(peer[1])
        else:
            self.client_ip = "unix"
        refusal = self.server.admit(self)
        if refusal is not None:
            data = error_response(503, refusal)
            self.transport.write(data)
            self.count_sent(len(data))
            self.transport.close()
            return
        self._arm(self.state.settings.client_header_timeout, head=True)

    def data_received(self, data: bytes) -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.values[metrics.received_at] += len(data)
        if self.lingering:
            return  # the rest of a refused request: read and dropped until the client stops or time is up
        if self.idle:  # server.leave_idle, inlined: once a request
            self.idle = False
            del self.server.idle[self]
        if self.head is None and not self._waiting_head:
            self._arm(self.state.settings.client_header_timeout, head=True)  # a new request began
        parser = self.parser
        self._read_size = len(data)
        parser.feed(data)
        if not parser.events and parser.started:
            # a head still arriving holds memory: bound it (the parser's own bound is fields x field size)
            self._head_bytes += len(data)
            cap = self.state.settings.client_max_header_size
            if cap and self._head_bytes > cap:
                self._refuse(431, "Request header fields too large")
                return
        else:
            self._head_bytes = 0
        self._process()

    def eof_received(self) -> bool | None:
        if not self.busy or self.lingering:
            self.transport.close()  # type: ignore[union-attr]
            return None
        # keep our side open until the answer in progress is written (TLS cannot half-close: it closes)
        self.client_eof = True
        return self.scheme != "https"

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)
        self._cancel_timer()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ClientGone())
            self._drain.exception()  # retrieved: nobody may be waiting on it
        if self.exchange is not None:
            self.exchange.on_client_gone()
        if self.body is not None and not self.busy:
            self.body.close()

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.exchange is not None:
            self.exchange.resume()

    # -- reading requests -------------------------------------------------------------------------------

    def _process(self) -> None:
        """Act on parsed events until a request is complete (then answer it) or more bytes are needed."""
        parser = self.parser
        while not self.busy and not self.closed:
            event = parser.next_event()
            if event is None:
                return
            if isinstance(event, RequestHead):
                self._on_head(event)
            elif isinstance(event, BodyData):
                self.body.add(event.data)  # type: ignore[union-attr]
                if self.route is not None and self.route.body_limit and self.body.size > self.route.body_limit:
                    self._refuse(413, "Request body too large")
                    return
                self._arm(self.state.settings.client_body_timeout)
            elif isinstance(event, EndOfMessage):
                self._cancel_timer()
                self.busy = True
                self.transport.pause_reading()  # type: ignore[union-attr]
                self._respond()
            elif isinstance(event, ParseError):
                self._refuse(event.status, event.reason)
                return

    def _on_head(self, head: RequestHead) -> None:
        self.head = head
        self._waiting_head = False
        self.requests += 1
        self.state = self.server.state  # a request sees the config current when its head arrived
        cap = self.state.settings.client_max_header_size
        if cap and self._read_size > cap and head_size(head) > cap:
            # a head that came whole in one large read is held to the same bound as one still arriving
            self.route = None
            self._refuse(431, "Request header fields too large")
            return
        # Routes match the normalised path, as nginx's locations do, so no spelling of a path (%61, %2F,
        # //, /x/..) reaches a route other than the one its plain form reaches; what cannot be normalised
        # (a bad escape, a NUL, a climb above the root) is refused before anything goes upstream.
        raw = head.target
        if raw[:1] == "/" and "%" not in raw and "//" not in raw and "/." not in raw and "?" not in raw \
                and "#" not in raw:
            # the everyday target is its own normal form: nothing to split, decode or resolve
            self.route = self.state.route_for(head.header("host"), raw)
        else:
            try:
                target = split_target(raw, head.method)
                path = "/" if target.form == "asterisk" else normalize_path(target.path)
            except HTTPError as error:
                self.route = None
                self._refuse(error.status, error.reason)
                return
            self.route = self.state.route_for(head.header("host"), path)
            self._send_normalised(head, target, path)
        self.body = RequestBody(self.state.settings.client_body_buffer_size)
        limit = self.route.body_limit if self.route is not None else 0
        if limit and head.content_length is not None and head.content_length > limit:
            self._refuse(413, "Request body too large")
            return
        if head.expect_continue and self.route is not None:
            self.transport.write(CONTINUE)  # type: ignore[union-attr]
            self.count_sent(len(CONTINUE))
        self._arm(self.state.settings.client_body_timeout)

    def _send_normalised(self, head: RequestHead, target, path: str) -> None:
        """Rewrite the target sent upstream when the upstream would read another path than the routed one."""
        if target.form == "absolute" or (target.form == "origin" and path is not target.path):
            static = self.route is not None and self.route.static is not None
            decoded = unquote_to_bytes(target.path).decode("latin-1")
            if target.form == "absolute" or static or decoded != path:
                # sent on in origin-form; when the upstream would decode the raw path to another one (dot
                # segments, repeated slashes), with the path the route matched: PATH_INFO is what was routed
                sent = target.path if decoded == path and not static else encode_path(path)
                head.target = sent + ("?" + target.query if target.query else "")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer an unreadable or oversized request and close, after a lingering read of what follows.

        Closing at once with the client's body still arriving would make the kernel reset the connection,
        and the reset can destroy the answer before the client reads it; like nginx's lingering_close, the
        proxy stops sending, drops what still arrives for a short while, then closes.
        """
        self.busy = True
        started = time.time()
        data, length = error_reply(status, reason)
        self.transport.write(data)  # type: ignore[union-attr]
        metrics = self.state.metrics
        if metrics is not None:
            head, route = self.head, self.route
            metrics.values[metrics.sent_at] += len(data)
            metrics.refused(head.method if head is not None else "_OTHER", status,
                            route.label if route is not None else "", self.body.size if self.body else 0, length)
        self._log(status, length, started, 0.0, {})
        if self.body is not None:
            self.body.close()
        self.lingering = True
        if self.transport.can_write_eof():  # type: ignore[union-attr]
            self.transport.write_eof()  # type: ignore[union-attr]
            self.deadline = time.monotonic() + LINGER
        else:
            self.transport.close()  # type: ignore[union-attr]

    # Timeouts are deadlines the server's ticker checks a few times a second: a loop timer per request
    # phase cost more than a tenth of the proxy's time in profiles.

    def _arm(self, seconds: float, head: bool = False) -> None:
        self._waiting_head = head
        self.deadline = time.monotonic() + seconds if seconds > 0 else 0.0

    def _cancel_timer(self) -> None:
        self.deadline = 0.0

    def check_deadline(self, now: float) -> None:
        """Called by the server's ticker: act on an expired header, body or keep-alive timeout."""
        if self.deadline and now >= self.deadline:
            self.deadline = 0.0
            self._timed_out()
        elif self.exchange is not None:
            self.exchange.check_deadline(now)

    def _timed_out(self) -> None:
        if self.lingering:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.busy or self.closed:
            return
        if self.parser.started or self.head is not None:
            data = error_response(408, "Request timed out")
            self.transport.write(data)  # type: ignore[union-attr]
            self.count_sent(len(data))
        self.transport.close()  # type: ignore[union-attr]

    # -- writing ----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the client."""
        if self.closed:
            raise ClientGone()
        self.transport.write(data)  # type: ignore[union-attr]
        metrics = self.state.metrics
        if metrics is not None:
            metrics.values[metrics.sent_at] += len(data)

    def count_sent(self, size: int) -> None:
        """Bytes written to the client outside `write` (answers given before a request is whole, and big
        static files the kernel sends: sendfile.py)."""
        metrics = self.state.metrics
        if metrics is not None:
            metrics.values[metrics.sent_at] += size

    @property
    def paused(self) -> bool:
        """True while the client's socket buffer is full."""
        return self._drain is not None and not self._drain.done()

    async def drain(self) -> None:
        """Wait for the client to take what was written, at most send_timeout."""
        if self.closed:
            raise ClientGone()
        if self._drain is None or self._drain.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), self.state.settings.send_timeout or None)
        except asyncio.TimeoutError:
            self.abort()
            raise ClientGone() from None

    async def writable(self, fd: int) -> None:
        """Wait until `fd`, a duplicate of this connection's socket (sendfile.py), takes bytes again: at most
        send_timeout, like `drain`, and ClientGone when the connection is lost meanwhile."""
        if self.closed:
            raise ClientGone()
        self._drain = waiter = self.loop.create_future()
        self.loop.add_writer(fd, _wake, waiter)
        try:
            await self.drain()
        finally:
            self.loop.remove_writer(fd)

    def abort(self) -> None:
        """Drop the connection (a response cannot be finished)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- answering --------------------------------------------------------------------------------------

    def _respond(self) -> None:
        """Answer the complete request: limits, then the route's handler (an Exchange, or a task)."""
        head, route = self.head, self.route
        assert head is not None
        self.begun = time.monotonic()
        keep_alive = head.keep_alive and not self.server.stopping and self.server.keeps_connection()
        metrics = self.state.metrics
        if metrics is not None:
            metrics.started()  # request_done counts it answered, whichever way it ends
        try:
            if route is None:
                self.request_done(*self.send_error(404, "No route for this request", head, keep_alive))
                return
            delay = 0.0
            if route.limit_conn is not None:
                key = key_of(route.limit_conn.settings.key, self.client_ip, head.headers)
                if not route.limit_conn.acquire(key):
                    if metrics is not None:
                        metrics.rejected("limit_conn", route.label)
                    self.request_done(*self.send_error(route.limit_conn.settings.status, "Too many connections",
                                                       head, keep_alive))
                    return
                self._held = (route.limit_conn, key)
            if route.limit_req is not None:
                verdict = route.limit_req.check(key_of(route.limit_req.settings.key, self.client_ip, head.headers))
                if not verdict.allowed:
                    if metrics is not None:
                        metrics.rejected("limit_req", route.label)
                    extra = [("Retry-After", str(verdict.retry_after))]
                    self.request_done(*self.send_error(route.limit_req.settings.status, "Too many requests", head,
                                                       keep_alive, extra))
                    return
                delay = verdict.delay
            if route.static is not None and delay == 0:
                answer = self.server.static.start(self, route, head, keep_alive)
                if answer.rest is None:
                    self.request_done(answer.status, answer.sent, answer.keep_alive)
                else:
                    self.task = self.loop.create_task(self._respond_later(route, head, keep_alive, 0, answer))
                return
            if delay > 0:
                self.task = self.loop.create_task(self._respond_later(route, head, keep_alive, delay))
                return
            try:  # _start_exchange, inlined here: the path of every proxied request
                self.exchange = Exchange(self, route, head, self.body, keep_alive)  # type: ignore[arg-type]
            except UpstreamHeadTooLarge as refusal:
                self.request_done(*self.send_error(431, str(refusal), head, keep_alive))
                return
            self.exchange.start()
        except ClientGone:
            self.request_done(499, 0, False)
        except Exception:  # a bug: logged, and the client is not left hanging
            log.exception("error while answering %s %s", head.method, head.target)
            self.exchange = None
            self.abort()
            self.request_done(500, 0, False)

    async def _respond_later(self, route: Route, head: RequestHead, keep_alive: bool, delay: float,
                             answer: StaticAnswer | None = None) -> None:
        """What waits: a limit_req delay, or a big static file (written with backpressure)."""
        status, sent = 500, 0
        try:
            if delay > 0:
                await asyncio.sleep(delay)
                if self.closed:
                    raise ClientGone()
            if route.static is None:
                self.task = None
                self._start_exchange(route, head, keep_alive)
                return
            if answer is None:
                answer = self.server.static.start(self, route, head, keep_alive)
            status, sent, keep_alive = answer.status, answer.sent, answer.keep_alive
            if answer.rest is not None:
                answer = await self.server.static.finish(self, answer)
                status, sent, keep_alive = answer.status, answer.sent, answer.keep_alive
        except ClientGone:
            status, keep_alive = (499 if sent == 0 else status), False
        except Exception:
            log.exception("error while answering %s %s", head.method, head.target)
            keep_alive = False
            self.abort()
        self.task = None
        self.request_done(status, sent, keep_alive)

    def _start_exchange(self, route: Route, head: RequestHead, keep_alive: bool) -> None:
        """Send the request upstream; 431 here when the head with the proxy's fields would not fit there."""
        try:
            exchange = Exchange(self, route, head, self.body, keep_alive)  # type: ignore[arg-type]
        except UpstreamHeadTooLarge as refusal:
            self.request_done(*self.send_error(431, str(refusal), head, keep_alive))
            return
        self.exchange = exchange
        exchange.start()

    def exchange_done(self, exchange: Exchange, status: int, sent: int, keep_alive: bool,
                      fields: dict) -> None:
        """Called by the Exchange when its response is written (or cannot be)."""
        if exchange is self.exchange:
            self.exchange = None
            self.request_done(status, sent, keep_alive, fields)

    def request_done(self, status: int, sent: int, keep_alive: bool, fields: dict | None = None) -> None:
        """The request is answered: free its limit slot and body, log it, then wait for the next one."""
        if self._held is not None:
            limiter, key = self._held
            self._held = None
            limiter.release(key)
        if self.body is not None:
            self.body.close()
        duration = time.monotonic() - self.begun
        metrics = self.state.metrics
        if metrics is not None:
            head, route, body = self.head, self.route, self.body
            metrics.finished(head.method if head is not None else "_OTHER", status,
                             route.label if route is not None else "", duration, body.size if body is not None else 0,
                             sent)
            if route is not None and route.static is not None:
                metrics.static_answered(status)
        self._log(status, sent, time.time() - duration, duration, fields or {})
        self._finish(keep_alive)

    def send_error(self, status: int, reason: str, head: RequestHead, keep_alive: bool,
                   extra: list[tuple[str, str]] | None = None) -> tuple[int, int, bool]:
        """Write a short error response; returns (status, body bytes, keep-alive)."""
        data, length = error_reply(status, reason, head.method, keep_alive, head.version, extra or ())
        self.write(data)
        return status, 0 if head.method == "HEAD" else length, keep_alive

    def _finish(self, keep_alive: bool) -> None:
        self.task = None
        self.head = self.route = self.body = None
        if self.closed:
            return
        if not keep_alive or (self.client_eof and not self.parser.events):  # pipelined ones are answered
            self.transport.close()  # type: ignore[union-attr]
            return
        # a parse error queued behind this request is answered by _process (400, then close)
        self.busy = False
        self.transport.resume_reading()  # type: ignore[union-attr]
        self._arm(self.state.settings.keepalive_timeout)
        self._process()  # a pipelined request may already be parsed
        if not self.busy and not self.closed and self.head is None and not self.parser.started:
            self.idle = True  # server.enter_idle, inlined: once a request
            self.server.idle[self] = None

    def _log(self, status: int, sent: int, started: float, duration: float, fields: dict) -> None:
        access_log = self.server.access_log
        if access_log.enabled:
            fields["REMOTE_PORT"] = self.client_port
            fields["wsgi.url_scheme"] = self.scheme
            access_log.write_request(self.client_ip, self.head, fields, status, sent, started, duration)

    def shed(self) -> None:
        """Close this idle connection to make room for a new one (the server's cap is reached)."""
        self.server.forget(self)
        self.closed = True
        if self.scheme == "https":
            self.transport.abort()  # type: ignore[union-attr]  # no close_notify wait: the room is needed now
        else:
            self.transport.close()  # type: ignore[union-attr]

    def close_if_idle(self) -> None:
        """Close a keep-alive connection that waits for its next request (graceful stop)."""
        if not self.busy and not self.parser.started and self.head is None:
            if self.scheme == "https":
                self.abort()  # a TLS close waits for the peer's close_notify, which an idle client may never send
            else:
                self.transport.close()  # type: ignore[union-attr]


def _wake(waiter: asyncio.Future[None]) -> None:
    """The loop's writer callback of `ClientConnection.writable`: it may fire again before it is removed."""
    if not waiter.done():
        waiter.set_result(None)


def head_size(head: RequestHead) -> int:
    """The bytes a request head took on the wire, near enough: request line, fields, CRLFs."""
    return len(head.method) + len(head.target) + 12 + sum(len(name) + len(value) + 4 for name, value in head.headers)
