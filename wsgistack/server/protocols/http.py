"""One HTTP/1.1 connection served with blocking socket calls (the sync and thread workers).

It drives the sans-IO parser with recv(), runs the app through the WSGI runner, and decides after each
response whether the connection may carry another request (keep-alive, pipelining) or must close.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from typing import Any

from wsgistack.http.errors import ClientGone
from wsgistack.http.framing import Framing
from wsgistack.http.heads import CONTINUE, build_head, error_reply
from wsgistack.http.parser import BodyData, EndOfMessage, ParseError, RequestHead, RequestParser
from wsgistack.server.context import ServeContext, answer_health, begin_request, end_request, refusal
from wsgistack.server.protocols.connection import BlockingConnection
from wsgistack.wsgi.environ import build_environ
from wsgistack.wsgi.input import InputStream
from wsgistack.wsgi.runner import ClientError, run_app

log = logging.getLogger("wsgistack.server")

DRAIN_LIMIT = 1 << 20  # unread body we read and discard to keep a connection; past it, closing is cheaper


class HTTPConnection(BlockingConnection):
    """An accepted client connection and the parser state that survives between its requests."""

    def __init__(self, sock: socket.socket, peer: Any, ctx: ServeContext):
        super().__init__(sock, peer, ctx)
        self.parser = RequestParser(ctx.limits)
        self.body_failure: ParseError | None = None

    # -- reading ---------------------------------------------------------------------------------------

    def _receive(self, deadline: float) -> bool:
        """Read once into the parser; False on end of stream, socket.timeout once `deadline` passed.

        Waits in slices so that the sync worker's heartbeat goes on while a client is slow.
        """
        data = self.recv_once(deadline)
        if not data:
            return False
        self.parser.feed(data)
        return True

    def _wait_for_head(self) -> RequestHead | ParseError | None:
        """The next request head, an error to answer, or None when the client left quietly."""
        deadline = time.monotonic() + self.ctx.client_timeout
        started = False  # an idle connection that times out is closed quietly; a half-sent head gets 408
        while True:
            event = self.parser.next_event()
            if isinstance(event, (RequestHead, ParseError)):
                return event
            if event is not None:
                continue  # leftovers of a request we already answered
            try:
                if not self._receive(deadline):
                    return None
                started = True
            except TimeoutError:
                return ParseError(408, "Request timeout") if started else None
            except OSError:
                return None

    # -- serving ---------------------------------------------------------------------------------------

    def serve(self) -> bool:
        """Serve requests until none is buffered; True when the connection should wait for another."""
        while True:
            event = self._wait_for_head()
            if event is None:
                return False
            if isinstance(event, ParseError):
                self._answer_error(event)
                return False
            keep = self._serve_request(event)
            self.last_active = time.monotonic()
            if not keep:
                return False
            if not self.parser.events:
                return True

    def _answer_error(self, error: ParseError) -> None:
        try:
            self.send_all(refusal(self.ctx, self.info, error))
        except OSError:
            pass

    def _serve_request(self, head: RequestHead) -> bool:
        ctx = self.ctx
        if head.target == ctx.health_path:
            return self._serve_health(head)
        started, clock = time.time(), time.monotonic()
        body = _BodyReader(self, head)
        stream = InputStream(body.pull)
        environ = build_environ(head, self.info, stream, ctx.errors, ctx.trust, ctx.multithread)
        sink = SocketSink(self, head, body, head.keep_alive)
        begin_request(ctx)
        result = run_app(ctx.app, environ, sink)
        # a parse error queued behind this request is not a reason to drop its answer or the ones between:
        # serve() answers each queued request in turn, the refusal last (as the event worker does)
        keep = sink.keep_alive and result.complete and sink.framing is not None and sink.framing.complete
        if keep and not body.finish():
            keep = False
        sent = sink.framing.sent if sink.framing else sink.error_bytes
        record = end_request(ctx, environ, sink.status or result.status, sent, started, clock, result.failed)
        if record is not None:
            ctx.access_log.write(record)
        return keep

    def _serve_health(self, head: RequestHead) -> bool:
        """Answer the health endpoint (no app call); True when the connection may carry another request."""
        keep = _BodyReader(self, head).finish()  # a probe's body, if any, is read and dropped
        data, keep = answer_health(self.ctx, self.info, head, keep and head.keep_alive)
        try:
            self.send_all(data)
        except OSError:
            return False
        return keep


class _BodyReader:
    """Pulls one request's body from the connection, sending 100 Continue when the app first asks."""

    def __init__(self, conn: HTTPConnection, head: RequestHead):
        self.conn = conn
        self.expect_continue = head.expect_continue
        self.length = head.content_length
        self.done = False
        self.received = 0

    def can_finish(self) -> bool:
        """Whether what the app left unread can still be discarded cheaply (see finish())."""
        if self.done:
            return True
        if self.expect_continue:
            return False
        return self.length is None or self.length - self.received <= DRAIN_LIMIT

    def pull(self) -> bytes:
        parser = self.conn.parser
        while not self.done:
            event = parser.next_event()
            if isinstance(event, BodyData):
                self.received += len(event.data)
                return event.data
            if isinstance(event, EndOfMessage):
                self.done = True
                return b""
            if isinstance(event, ParseError):
                parser.events.appendleft(event)
                raise self._fail(event.status, event.reason)
            if event is not None:
                raise AssertionError(f"unexpected {event!r} inside a body")
            if self.expect_continue:
                self.expect_continue = False
                try:
                    self.conn.send_all(CONTINUE)
                except OSError as exc:
                    raise self._fail(400, f"cannot send 100 Continue: {exc}") from None
            try:
                received = self.conn._receive(time.monotonic() + self.conn.ctx.client_timeout)
            except TimeoutError:
                raise self._fail(408, "the client stopped sending the body") from None
            except OSError as exc:
                raise self._fail(400, f"reading the body failed: {exc}") from None
            if not received:
                raise self._fail(400, "the client closed the connection before the body ended")
        return b""

    def _fail(self, status: int, reason: str) -> ClientError:
        self.conn.body_failure = ParseError(status, reason)
        return ClientError(reason, status)

    def finish(self) -> bool:
        """Discard what the app left unread; False when the connection cannot be reused."""
        if self.done:
            return True
        if self.expect_continue:
            return False  # the client is waiting for our go-ahead: closing is the honest answer
        drained = 0
        try:
            while drained <= DRAIN_LIMIT:
                piece = self.pull()
                if not piece:
                    return True
                drained += len(piece)
        except ClientError:
            return False
        return False


class SocketSink:
    """The WSGI runner's ResponseSink, writing to the connection's socket."""

    def __init__(self, conn: HTTPConnection, head: RequestHead, body: _BodyReader, keep_alive: bool):
        self.conn = conn
        self.head = head
        self.body = body
        self.keep_alive = keep_alive
        self.framing: Framing | None = None
        self.error_bytes = 0
        self.status = 0  # what the client was really sent
        self.held = b""  # the head, sent with the first piece of body (one write, not two)

    def _send(self, data: bytes) -> None:
        if self.held:
            data, self.held = self.held + data, b""
        if not data:
            return
        try:
            self.conn.send_all(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        failure = self.conn.body_failure
        if failure is not None:
            # the app caught our body error and answered anyway (often a 500): the client deserves the 4xx
            self.send_error(failure.status, failure.reason)
            raise ClientGone("the request body was refused")
        if self.keep_alive and not self.body.can_finish():
            self.keep_alive = False  # announce the close now rather than cut the connection silently later
        # asked now, after on_request: the request that reaches --max-requests, or one answered after a
        # TERM/HUP, says `Connection: close`, so the client sends no more on a retiring worker
        self.keep_alive = self.keep_alive and self.conn.ctx.keep_alive()
        self.held, self.framing, self.keep_alive, self.status = build_head(
            status, headers, self.head.method, self.head.version, self.keep_alive, checked=True)

    def send_body(self, data: bytes) -> None:
        assert self.framing is not None
        self._send(self.framing.encode(data))

    def send_file(self, fd: int, offset: int, count: int) -> None:
        framing = self.framing
        assert framing is not None
        if framing.mode == "none":
            return
        if framing.mode == "length":
            count = min(count, framing.remaining or 0)
        if count <= 0:
            return
        self._send(b"%x\r\n" % count if framing.mode == "chunked" else b"")  # the head first, if held
        try:
            sent = _sendfile(self.conn.sock, fd, offset, count, self.conn.ctx.client_timeout)
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        framing.sent += sent
        if framing.mode == "length":
            framing.remaining = (framing.remaining or 0) - sent
        if sent < count:
            raise ClientGone("the file ended before its announced length")
        if framing.mode == "chunked":
            self._send(b"\r\n")

    def send_error(self, status: int, reason: str) -> None:
        self.keep_alive = False
        self.status = status
        data, self.error_bytes = error_reply(status, reason, self.head.method)
        self._send(data)

    def end(self) -> None:
        """Write the end of the body (the chunked terminator)."""
        if self.framing is not None:
            self._send(self.framing.finish())


def _sendfile(sock: socket.socket, fd: int, offset: int, count: int, timeout: float) -> int:
    """os.sendfile until `count` bytes went out; waits for a slow client up to `timeout` per wait.

    select() rather than socket.sendfile(): it is cooperative under gevent's monkey patching too.
    """
    sent = 0
    out = sock.fileno()
    while sent < count:
        try:
            done = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            if not select.select([], [out], [], timeout)[1]:
                raise TimeoutError("the client stopped reading") from None
            continue
        if done == 0:
            break  # the file is shorter than announced
        sent += done
    return sent
