"""One HTTP/1.1 connection on Tornado's IOStream, for the tornado worker.

Tornado's IOLoop and IOStream do the I/O; the request is framed by wsgistack's own parser (the one every
other class uses) and the response by `heads.build_head`, so a malformed or hostile request gets exactly the
answer the other classes give, and nothing behind it is ever acted on. Tornado's HTTP1Connection is not
used: its parser is lenient where ours is strict (bare LF, Transfer-Encoding in HTTP/1.0, Upgrade).

As in the event class, the whole request is read on the loop before the app runs in the worker's thread
pool; the app's output comes back to the loop with backpressure (an app thread waits while more than
OUTBOX_LIMIT bytes are not yet written to the socket).
"""

from __future__ import annotations

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
from wsgistack.server.context import (
    ServeContext,
    answer_health,
    begin_request,
    connection_info,
    end_request,
    refusal,
)
from wsgistack.server.sockets import unread_bytes
from wsgistack.wsgi.environ import build_environ
from wsgistack.wsgi.input import InputStream
from wsgistack.wsgi.runner import run_app

log = logging.getLogger("wsgistack.server")

RECV_SIZE = 65536
SPOOL_THRESHOLD = 1 << 20  # request bodies above this go to a temp file instead of memory
FILE_BLOCK = 256 * 1024
OUTBOX_LIMIT = 1 << 20  # bytes an app thread may produce ahead of the socket before it waits


class TornadoConnections:
    """The worker's open connections and requests in flight (for the limit, timeouts, the graceful stop)."""

    def __init__(self, submit: Callable[..., None], limit: int):
        self.submit = submit  # runs fn(*args) on an app thread
        self.limit = limit
        self.open: dict[TornadoHTTPConnection, None] = {}  # in the order they were accepted
        self.inflight: dict[TornadoHTTPConnection, float] = {}

    def admit(self, conn: TornadoHTTPConnection) -> bool:
        """Register a new connection. At --worker-connections, the oldest idle one (keep-alive, or open
        without a byte of request) is closed to make room, so idle connections cannot lock new clients
        out; False when every connection is in a request."""
        if len(self.open) >= self.limit:
            victim = next((other for other in self.open if other.close_if_idle()), None)
            if victim is None:
                return False
            del self.open[victim]
        self.open[conn] = None
        return True

    def oldest_request(self) -> float | None:
        """When the longest-running app call started (monotonic), if any."""
        return min(self.inflight.values(), default=None)


class TornadoHTTPConnection:
    """Reads requests from an IOStream with our parser; one request at a time goes to the app."""

    def __init__(self, stream: Any, address: Any, ctx: ServeContext, connections: TornadoConnections):
        from tornado.ioloop import IOLoop

        self.stream = stream
        self.ctx = ctx
        self.connections = connections
        self.loop = IOLoop.current().asyncio_loop
        self.info = connection_info(stream.socket, address)
        self.parser = RequestParser(ctx.limits)
        self.head: RequestHead | None = None
        self.body: Any = None
        self.busy = False  # a request is with the app
        self.closed = False
        self.deadline = time.monotonic() + ctx.client_timeout  # when an idle or slow connection is closed
        self.last_write: Any = None  # the future of the last write given to the stream
        self.flushing = False  # the last answer is being written, then the connection closes

    async def serve(self) -> None:
        """Serve requests until the client leaves, an answer closes the connection, or a deadline passes."""
        from tornado.iostream import StreamClosedError

        if not self.connections.admit(self):
            self.close()  # every other connection is in a request: refuse rather than starve them
            return
        try:
            while await self._next():
                pass
        except StreamClosedError:
            pass
        except Exception:
            log.exception("error serving a connection")
        finally:
            self.close()
            self.connections.open.pop(self, None)

    async def _next(self) -> bool:
        """Consume one parser event (reading bytes when none is queued); False when the connection ends."""
        if self.flushing:  # answered with a 408 while it was reading
            await self._flush()
            return False
        event = self.parser.next_event()
        if event is None:
            if self.parser.failed:
                return False  # nothing after an error is acted on
            data = await self.stream.read_bytes(RECV_SIZE, partial=True)
            self.parser.feed(data)
            return True
        if isinstance(event, RequestHead):
            self.head = event
            self.body = None
            self.deadline = time.monotonic() + self.ctx.client_timeout
            if event.expect_continue:
                self._write(CONTINUE)  # we read the body ourselves, so say go ahead at once
        elif isinstance(event, BodyData):
            if self.body is None:
                self.body = tempfile.SpooledTemporaryFile(SPOOL_THRESHOLD)
            self.body.write(event.data)
            self.deadline = time.monotonic() + self.ctx.client_timeout
        elif isinstance(event, EndOfMessage):
            keep = await self._dispatch()
            if not keep:
                await self._flush()
                return False
            self.deadline = time.monotonic() + self.ctx.keep_alive_timeout
        elif isinstance(event, ParseError):
            self._write(refusal(self.ctx, self.info, event))
            await self._flush()
            return False
        return True

    # -- one request -----------------------------------------------------------------------------------

    async def _dispatch(self) -> bool:
        """Run the app on a pool thread; True when the connection may carry another request."""
        head = self.head
        assert head is not None
        ctx = self.ctx
        if head.target == ctx.health_path:
            return self._answer_health(head)
        body = self.body
        if body is None:
            stream = InputStream(_no_body)
        else:
            body.seek(0)
            stream = InputStream(partial(body.read, 65536))
        environ = build_environ(head, self.info, stream, ctx.errors, ctx.trust, ctx.multithread)
        sink = _StreamSink(self, head, head.keep_alive)
        done = self.loop.create_future()
        self.busy = True
        self.connections.inflight[self] = time.monotonic()
        try:
            self.connections.submit(self._run, environ, sink, done)
            keep, record = await done
        finally:
            self.connections.inflight.pop(self, None)
            self.busy = False
            self.head = None
            self._drop_body()
        if record is not None:
            self.ctx.access_log.write(record)
        return keep and not self.closed

    def _answer_health(self, head: RequestHead) -> bool:
        """On the loop: answer the health endpoint (no app call); True when the connection may go on."""
        data, keep = answer_health(self.ctx, self.info, head, head.keep_alive)
        self._write(data)
        self.head = None
        self._drop_body()
        return keep and not self.closed

    def _run(self, environ: dict[str, Any], sink: _StreamSink, done: Any) -> None:
        """On an app thread: run the app; the outcome goes to the loop after the response's last bytes."""
        started, clock = time.time(), time.monotonic()
        begin_request(self.ctx)
        try:
            result = run_app(self.ctx.app, environ, sink)
            status, complete, failed = result.status, result.complete, result.failed
        except BaseException:  # run_app never raises for app errors; this is a bug of ours
            log.exception("error running a request")
            status, complete, failed = 500, False, True
        sent = sink.framing.sent if sink.framing else sink.error_bytes
        record = end_request(self.ctx, environ, sink.status or status, sent, started, clock, failed)
        keep = sink.keep_alive and complete and sink.framing is not None and sink.framing.complete
        sink.deliver(sink.take_pending(), partial(_resolve, done, (keep, record)))

    # -- writing, closing --------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """On the loop: give bytes to the stream (Tornado writes what it can at once, buffers the rest)."""
        if self.closed or not data:
            return
        try:
            self.last_write = self.stream.write(data)
        except Exception:  # StreamClosedError: the client left
            self.close()

    async def _flush(self) -> None:
        """Wait until what was written reached the socket (or the client left), before closing."""
        if self.last_write is not None and not self.closed:
            self.flushing = True
            self.deadline = time.monotonic() + self.ctx.client_timeout  # a client that stops reading expires
            try:
                await self.last_write
            except Exception:
                pass

    def close(self) -> None:
        """Close the stream (idempotent)."""
        if not self.closed:
            self.closed = True
            self.stream.close()

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close_if_idle(self) -> bool:
        """Close the connection if no byte of a request is here or on its way in the kernel; True if closed.

        A connection with request bytes waiting is not idle: closing it would reset a request the client
        already sent, so it is answered instead (with `Connection: close` when the worker is stopping).
        """
        if self.closed or self.busy or self.head is not None or self.parser.started or self.flushing:
            return False
        socket = self.stream.socket
        if socket is None or unread_bytes(socket.fileno()):
            return False
        self.close()
        return True

    def expire(self, now: float) -> None:
        """Close the connection if its deadline passed: 408 for a half-sent request, silence when idle."""
        if self.busy or self.closed or now < self.deadline:
            return
        if self.flushing:
            self.close()  # the client stopped reading its last answer
        elif self.head is not None or self.parser.started:
            self.head = None
            self._write(refusal(self.ctx, self.info, ParseError(408, "Request timeout")))
            if self.last_write is None or self.closed:
                self.close()
                return
            self.flushing = True  # nothing read after this is acted on (see _next)
            self.deadline = now + self.ctx.client_timeout  # the 408 itself may not be read
            self.last_write.add_done_callback(lambda _: self.close())
        else:
            self.close_if_idle()  # bytes just arrived: the coroutine reads them and the deadline moves


def _no_body() -> bytes:
    return b""


def _resolve(future: Any, value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _StreamSink:
    """The runner's ResponseSink: pieces go from the app thread to the loop, which writes them to the stream.

    Pieces are gathered in an outbox that the loop empties in one callback, so a small response (its head
    and body, then its end) usually costs one cross-thread wake-up.
    """

    def __init__(self, conn: TornadoHTTPConnection, head: RequestHead, keep_alive: bool):
        self.conn = conn
        self.head = head
        self.keep_alive = keep_alive
        self.framing: Framing | None = None
        self.pending: list[bytes] = []  # produced on the app thread, not yet handed to the loop
        self.status = 0
        self.error_bytes = 0
        self.lock = threading.Condition()
        self.outbox: list[bytes] = []
        self.then: Callable[[], None] | None = None
        self.scheduled = False
        self.unwritten = 0  # bytes handed to the loop and not yet written to the socket

    def deliver(self, data: bytes, then: Callable[[], None] | None = None) -> None:
        """Hand bytes to the loop; wait while too much is unwritten (a slow client), up to --client-timeout.

        With `then` (the response's last piece and what to do once it is written) it never waits or raises.
        """
        conn = self.conn
        with self.lock:
            if data:
                self.outbox.append(data)
                self.unwritten += len(data)
            if then is not None:
                self.then = then
            schedule = not self.scheduled
            self.scheduled = True
        if schedule:
            conn.loop.call_soon_threadsafe(self._flush)
        if then is not None or self.unwritten <= OUTBOX_LIMIT:
            return  # the last piece never waits: the loop flushes it before the connection goes on
        deadline = time.monotonic() + conn.ctx.client_timeout
        with self.lock:
            while self.unwritten > OUTBOX_LIMIT and not conn.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    conn.loop.call_soon_threadsafe(conn.close)
                    raise ClientGone("the client stopped reading")
                self.lock.wait(remaining)
        if conn.closed:
            raise ClientGone("the client closed the connection")

    def _flush(self) -> None:
        """On the loop: write what the app thread produced, then run its completion callback."""
        with self.lock:
            data = b"".join(self.outbox)
            self.outbox.clear()
            then, self.then = self.then, None
            self.scheduled = False
        conn = self.conn
        if data:
            conn._write(data)
            if conn.closed or conn.last_write is None:
                self._written(len(data), None)
            else:
                conn.last_write.add_done_callback(partial(self._written, len(data)))
        if then is not None:
            then()

    def _written(self, count: int, future: Any) -> None:
        if future is not None and (future.cancelled() or future.exception() is not None):
            self.conn.close()
        with self.lock:
            self.unwritten -= count
            self.lock.notify_all()

    def take_pending(self) -> bytes:
        """What was produced but not handed to the loop yet."""
        data = b"".join(self.pending)
        self.pending.clear()
        return data

    def _push(self, data: bytes) -> None:
        if self.conn.closed:
            raise ClientGone("the client closed the connection")
        self.pending.append(data)
        self.deliver(self.take_pending())

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        # asked now, not at dispatch: the request that reaches --max-requests, or one answered after a
        # TERM/HUP, says `Connection: close`, so the client sends no more on a retiring worker
        keep_alive = self.keep_alive and self.conn.ctx.keep_alive()
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
