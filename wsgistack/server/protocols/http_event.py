"""One HTTP/1.1 connection on an asyncio (uvloop) loop, for the event worker.

The loop reads a whole request — head, and body buffered in memory or spooled to a temp file past a
threshold — before the app is called, so a slow client never holds an app thread. The app then runs in the
worker's thread pool (or inline on the loop when that is faster); its response comes back to the loop in
pieces, with backpressure: an app thread waits while the client's socket buffer is full.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from wsgistack.http.errors import ClientGone
from wsgistack.http.framing import Framing
from wsgistack.http.heads import CONTINUE, build_head, error_reply
from wsgistack.http.parser import BodyData, EndOfMessage, ParseError, RequestHead, RequestParser
from wsgistack.observe.accesslog import AccessRecord
from wsgistack.server.context import (
    ServeContext,
    answer_health,
    begin_request,
    end_request,
    refusal,
)
from wsgistack.server.inline_calls import InlineCalls
from wsgistack.server.protocols.loop_connection import LoopConnection
from wsgistack.server.sockets import unread_bytes
from wsgistack.wsgi.environ import build_environ
from wsgistack.wsgi.input import InputStream
from wsgistack.wsgi.runner import run_app

log = logging.getLogger("wsgistack.server")

SPOOL_THRESHOLD = 1 << 20  # request bodies above this go to a temp file instead of memory
FILE_BLOCK = 256 * 1024
OUTBOX_LIMIT = 1 << 20  # bytes an app thread may produce ahead of the loop before it waits
JOIN_BELOW = 64 * 1024  # pieces of a write smaller than this in all are joined; bigger ones are not copied


class EventHTTPProtocol(LoopConnection):
    """Reads requests, hands complete ones to `dispatch`, writes responses back; one request at a time."""

    def __init__(self, ctx: ServeContext, loop: asyncio.AbstractEventLoop, registry: ConnectionRegistry,
                 run_in_pool: bool):
        self.ctx = ctx
        self.loop = loop
        self.registry = registry
        self.run_in_pool = run_in_pool
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(ctx.limits)
        self.head: RequestHead | None = None
        self.body: Any = None
        self.busy = False  # a request is with the app
        self.closed = False
        self.reading = True
        self.peer_done = False  # the client shut its side: answer what is buffered, then close
        self.parked = False  # in registry.idle: no byte of a request received since the last answer
        self.fd = -1
        self.deadline = 0.0  # when an idle or slow connection is closed
        self.can_write = threading.Event()
        self.can_write.set()
        self.outbox = Outbox() if run_in_pool else None  # one per connection: its requests take turns
        registry.opening += 1  # accepted, not yet in connection_made: a graceful stop waits for it too

    # -- asyncio callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._made(transport):
            return
        if not self.registry.add(self):
            transport.abort()  # every connection is in a request: refuse rather than starve the others
            return
        self.deadline = time.monotonic() + self.ctx.client_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.can_write.set()  # an app thread waiting to write must not wait forever
        self.registry.discard(self)
        self._drop_body()

    def data_received(self, data: bytes) -> None:
        if self.parked:  # request bytes arrived: no longer idle (registry.unpark, inlined: once a request)
            self.parked = False
            del self.registry.idle[self]
        self.parser.feed(data)
        if not self.busy:
            self._advance()
        else:
            self._pause_reading()  # pipelined bytes wait in the kernel, not in our memory

    def eof_received(self) -> bool | None:
        self.peer_done = True
        if not self.busy:
            self._close()
        return True  # keep the transport open for the response of a request in flight

    # -- reading requests ------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Consume parser events until a request is complete (then dispatch it) or more bytes are needed."""
        parser = self.parser
        while not self.busy and not self.closed:
            event = parser.next_event()
            if event is None:
                return
            if isinstance(event, RequestHead):
                self.head = event
                self.body = None
                self.deadline = time.monotonic() + self.ctx.client_timeout
                if event.expect_continue:
                    self.transport.write(CONTINUE)  # we read the body ourselves, so say go ahead at once
            elif isinstance(event, BodyData):
                if self.body is None:
                    self.body = tempfile.SpooledTemporaryFile(SPOOL_THRESHOLD)
                self.body.write(event.data)
                self.deadline = time.monotonic() + self.ctx.client_timeout
            elif isinstance(event, EndOfMessage):
                self._dispatch()
            elif isinstance(event, ParseError):
                self._answer_error(event)
                return

    def _answer_error(self, error: ParseError) -> None:
        self.transport.write(refusal(self.ctx, self.info, error))
        self._close()

    def _dispatch(self) -> None:
        head = self.head
        assert head is not None
        if head.target == self.ctx.health_path:
            self._answer_health(head)
            return
        self.busy = True
        body = self.body
        if body is None:
            stream = InputStream(no_body)
        else:
            body.seek(0)
            stream = InputStream(partial(body.read, 65536))
        environ = build_environ(head, self.info, stream, self.ctx.errors, self.ctx.trust, self.ctx.multithread)
        threaded, route = self.run_in_pool, None
        inline_calls = self.registry.inline_calls
        if inline_calls is not None:
            route = (head.method, environ["PATH_INFO"])
            threaded = not inline_calls.on_loop(route)
        sink = LoopSink(self, head, head.keep_alive, threaded=threaded, outbox=self.outbox)
        self.registry.request_started(self)
        if threaded:
            self.registry.pool.submit(self._run, environ, sink, route)
        else:
            self._run(environ, sink, route)

    def _answer_health(self, head: RequestHead) -> None:
        """On the loop: answer the health endpoint (no app call), then go on as after any response."""
        data, keep = answer_health(self.ctx, self.info, head, head.keep_alive)
        self.busy = True
        self.registry.request_started(self)
        self.transport.write(data)
        self._finished(keep, None)

    def _run(self, environ: dict[str, Any], sink: LoopSink, route: tuple[str, str] | None = None) -> None:
        """Runs the app (in a pool thread, or inline on the loop) and hands the outcome to the loop."""
        started, clock = time.time(), time.monotonic()
        waits = 0 if route is None or sink.threaded else InlineCalls.waits()
        begin_request(self.ctx)
        try:
            result = run_app(self.ctx.app, environ, sink)
            status, complete, failed = result.status, result.complete, result.failed
        except BaseException:  # run_app never raises for app errors; this is a bug of ours
            log.exception("error running a request")
            status, complete, failed = 500, False, True
        took = time.monotonic() - clock
        sent = sink.framing.sent if sink.framing else sink.error_bytes
        record = end_request(self.ctx, environ, sink.status or status, sent, started, clock, failed)
        keep = sink.keep_alive and complete and sink.framing is not None and sink.framing.complete
        threaded = sink.threaded
        sink.deliver_last(sink.take_pending(), lambda: self._finished(keep, record, route, took, waits, threaded))

    def _finished(self, keep: bool, record: AccessRecord | None, route: tuple[str, str] | None = None,
                  took: float = 0.0, waits: int = 0, threaded: bool = False) -> None:
        """On the loop: the response is written (or buffered in the transport)."""
        if route is not None:  # what the call's time says of its route (InlineCalls is the loop's own)
            if threaded:
                self.registry.inline_calls.threaded_call(route, took)
            else:
                self.registry.inline_calls.loop_call(route, took, waits)
        self.registry.request_finished(self)
        if record is not None:
            self.ctx.access_log.write(record)
        self._drop_body()
        self.busy = False
        self.head = None
        if not keep or self.closed or self.parser.failed and not self.parser.events:
            self._close()
            return
        self.deadline = time.monotonic() + self.ctx.keep_alive_timeout
        self._resume_reading()
        self._advance()
        if self.peer_done and not self.busy:
            self._close()
        elif not self.busy and self.head is None and not self.parser.started and not self.closed:
            self.parked = True  # registry.park, inlined: once a request
            self.registry.idle[self] = None

    # -- helpers ---------------------------------------------------------------------------------------

    def close_if_idle(self) -> bool:
        """Close the connection if no byte of a request is here or on its way in the kernel; True if closed.

        A connection with request bytes waiting is not idle: it is answered (with `Connection: close` when
        the worker is stopping), since closing it would reset a request the client already sent.
        """
        if self.busy or self.closed or self.head is not None or self.parser.started or unread_bytes(self.fd):
            return False
        self._close()
        return True

    def expire(self, now: float) -> None:
        """Close the connection if its deadline passed: 408 for a half-sent request, silence when idle."""
        if self.busy or self.closed or now < self.deadline:
            return
        if self.head is not None or self.parser.started:
            self._answer_error(ParseError(408, "Request timeout"))
        else:
            self.close_if_idle()  # bytes just arrived: data_received comes next and renews the deadline


def no_body() -> bytes:
    return b""


class Outbox:
    """Bytes an app thread produced for the loop to write, and what to do once they are written."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pieces: list[bytes] = []
        self.size = 0
        self.then: Callable[[], None] | None = None
        self.scheduled = False
        self.drained = threading.Event()


def write_pieces(transport: asyncio.Transport, pieces: list[bytes]) -> None:
    """One write: small pieces joined (a head and a short body), big ones handed over as they are (uvloop
    writes them with one writev), so a 1 MiB body is not copied only to put its head in front of it."""
    if len(pieces) == 1:
        transport.write(pieces[0])
    elif sum(map(len, pieces)) < JOIN_BELOW:
        transport.write(b"".join(pieces))
    else:
        transport.writelines(pieces)


class LoopSink:
    """The runner's ResponseSink: bytes go to the loop's transport, directly or from an app thread."""

    def __init__(self, proto: EventHTTPProtocol, head: RequestHead, keep_alive: bool, threaded: bool,
                 outbox: Outbox | None):
        self.proto = proto
        self.head = head
        self.keep_alive = keep_alive
        self.threaded = threaded
        self.framing: Framing | None = None
        self.pending: list[bytes] = []
        self.status = 0
        self.error_bytes = 0
        self.outbox = outbox

    def deliver(self, pieces: list[bytes], then: Callable[[], None] | None = None) -> None:
        """Write on the loop (the transport is not thread-safe); in a thread, wait while the client is slow.

        From a thread, pieces go to an outbox that the loop empties in one callback: a whole small response
        (its body, then its end) usually costs one cross-thread wake-up, and no piece is ever held back.
        """
        proto = self.proto
        if not self.threaded:
            if pieces and not proto.closed:
                write_pieces(proto.transport, pieces)
            if then is not None:
                then()
            return
        timeout = proto.ctx.client_timeout
        if pieces and not ((proto.can_write.is_set() or proto.can_write.wait(timeout)) and self._outbox_room(timeout)):
            proto.loop.call_soon_threadsafe(proto._close)
            raise ClientGone("the client stopped reading")
        outbox = self.outbox
        with outbox.lock:
            for piece in pieces:
                outbox.pieces.append(piece)
                outbox.size += len(piece)
            if then is not None:
                outbox.then = then
            schedule = not outbox.scheduled
            outbox.scheduled = True
        if schedule:
            proto.loop.call_soon_threadsafe(self._flush)

    def deliver_last(self, pieces: list[bytes], then: Callable[[], None]) -> None:
        """The response's last bytes, then its end on the loop. `then` gets there even when the client stopped
        reading and the bytes are given up: a request that never ended would count as in flight for good,
        and stop the worker's heartbeat once older than --timeout."""
        try:
            self.deliver(pieces, then)
        except ClientGone:  # raised before `then` was handed over
            self.proto.loop.call_soon_threadsafe(then)

    def _outbox_room(self, timeout: float) -> bool:
        outbox = self.outbox
        if outbox.size < OUTBOX_LIMIT:
            return True
        outbox.drained.clear()
        return outbox.size < OUTBOX_LIMIT or outbox.drained.wait(timeout)

    def _flush(self) -> None:
        """On the loop: write what the app thread produced, then run its completion callback."""
        outbox = self.outbox
        with outbox.lock:
            pieces, outbox.pieces = outbox.pieces, []
            outbox.size = 0
            then, outbox.then = outbox.then, None
            outbox.scheduled = False
        outbox.drained.set()
        proto = self.proto
        if pieces and not proto.closed:
            write_pieces(proto.transport, pieces)
        if then is not None:
            then()

    def take_pending(self) -> list[bytes]:
        """What was produced but not written yet: one piece, or the pieces as they are if big (not copied)."""
        pending, self.pending = self.pending, []
        if len(pending) == 1:
            return pending if pending[0] else []
        size = sum(map(len, pending))
        if size < JOIN_BELOW:
            return [b"".join(pending)] if size else []
        return pending

    def _push(self, data: bytes) -> None:
        if self.proto.closed:
            raise ClientGone("the client closed the connection")
        self.pending.append(data)
        self.deliver(self.take_pending())

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        # asked now, not at dispatch: the request that reaches --max-requests, or one answered after a
        # TERM/HUP, says `Connection: close`, so the client does not send another on a retiring worker
        keep_alive = self.keep_alive and self.proto.ctx.keep_alive()
        head_bytes, self.framing, self.keep_alive, self.status = build_head(
            status, headers, self.head.method, self.head.version, keep_alive, checked=True)
        self.pending.append(head_bytes)  # goes out with the first piece of body (one write, not two)

    def send_body(self, data: bytes) -> None:
        assert self.framing is not None
        self._push(self.framing.encode(data))

    def send_file(self, fd: int, offset: int, count: int) -> None:
        framing = self.framing
        assert framing is not None
        if framing.mode == "length":
            count = min(count, framing.remaining or 0)
        position, end = offset, offset + count
        while position < end and framing.mode != "none":
            block = os.pread(fd, min(FILE_BLOCK, end - position), position)
            if not block:
                raise ClientGone("the file ended before its announced length")
            position += len(block)
            self._push(framing.encode(block))

    def send_error(self, status: int, reason: str) -> None:
        self.keep_alive = False
        self.status = status
        data, self.error_bytes = error_reply(status, reason, self.head.method)
        self.pending = [data]

    def end(self) -> None:
        if self.framing is not None:
            self.pending.append(self.framing.finish())


class ConnectionRegistry:
    """The worker's open connections and requests in flight (for limits, timeouts and graceful stop).

    Idle connections (open with no byte of a request yet, or kept alive between requests) are also kept in
    the order they became idle, so that at --worker-connections a new client takes the place of the oldest
    idle one in O(1): idle sockets cannot lock new clients out, and a request in progress is never shed.
    """

    def __init__(self, limit: int, pool: Any, inline_calls: InlineCalls | None = None):
        self.limit = limit
        self.pool = pool
        self.inline_calls = inline_calls  # with a self-sizing pool: which routes run on the loop
        self.connections: set[EventHTTPProtocol] = set()
        # oldest first: a dict keeps insertion order (faster than an OrderedDict for the per-request moves)
        self.idle: dict[EventHTTPProtocol, None] = {}
        self.inflight: dict[EventHTTPProtocol, float] = {}
        self.opening = 0  # protocols made for accepted sockets whose connection_made has not run yet
        self.accepted = 0
        self.refused = 0
        self.shed = 0
        self.on_drained: Callable[[], None] | None = None  # set by a stopping worker: the last one closed
        self.on_closed: Callable[[], None] | None = None  # the worker publishes its load (accept shares)

    def add(self, proto: EventHTTPProtocol) -> bool:
        """Register a new connection, shedding the oldest idle one at the limit; False when none is idle."""
        if len(self.connections) >= self.limit and not self._shed_oldest_idle():
            self.refused += 1
            return False
        self.accepted += 1
        self.connections.add(proto)
        self.park(proto)
        return True

    def _shed_oldest_idle(self) -> bool:
        idle = self.idle
        while idle:
            proto = next(iter(idle))
            del idle[proto]
            proto.parked = False
            if proto.close_if_idle():
                self.connections.discard(proto)  # its slot is the new connection's from now on
                self.shed += 1
                return True
        return False

    def park(self, proto: EventHTTPProtocol) -> None:
        """The connection waits for a request: it may be shed from now on."""
        proto.parked = True
        self.idle[proto] = None

    def unpark(self, proto: EventHTTPProtocol) -> None:
        """Request bytes arrived: the connection is no longer idle."""
        proto.parked = False
        del self.idle[proto]

    def discard(self, proto: EventHTTPProtocol) -> None:
        """Forget a closed connection."""
        self.connections.discard(proto)
        if proto.parked:
            self.unpark(proto)
        if self.on_closed is not None:
            self.on_closed()
        if self.on_drained is not None and not self.connections:
            self.on_drained()

    def request_started(self, proto: EventHTTPProtocol) -> None:
        """A request went to the app."""
        self.inflight[proto] = time.monotonic()

    def request_finished(self, proto: EventHTTPProtocol) -> None:
        """Its response is written."""
        self.inflight.pop(proto, None)

    def oldest_request(self) -> float | None:
        """When the longest-running app call started (monotonic), if any."""
        return min(self.inflight.values(), default=None)
