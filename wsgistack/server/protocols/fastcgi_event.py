"""One FastCGI connection on the event worker's asyncio loop.

As over HTTP (http_event.py), the loop reads a whole request (params, then stdin buffered in memory or
spooled to a temporary file) before the app runs in the worker's thread pool (or inline on the loop); the
response comes back in STDOUT records as the app yields, through http_event's outbox and backpressure (a
LoopSink whose pieces are records), then END_REQUEST. The ConnectionRegistry is the HTTP protocol's: this
protocol has the same face (close_if_idle, expire, parked, busy, ...). What the blocking FastCGI connection
also does (environ, CGI output, health, refusals, management answers) is imported from fastcgi.py.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from functools import partial
from typing import Any

from wsgistack.gateway import fastcgi as fcgi
from wsgistack.http.errors import ClientGone
from wsgistack.observe.accesslog import AccessRecord
from wsgistack.server.context import ServeContext, begin_request, end_request, peer_allowed
from wsgistack.server.protocols.loop_connection import LoopConnection
from wsgistack.server.protocols.fastcgi import (
    CGIOutput,
    fastcgi_environ,
    file_pieces,
    health_answer,
    is_health,
    management_answer,
    param_limits,
    refusal_answer,
    request_problem,
)
from wsgistack.server.protocols.http_event import (
    SPOOL_THRESHOLD,
    ConnectionRegistry,
    LoopSink,
    Outbox,
    no_body,
)
from wsgistack.server.sockets import unread_bytes
from wsgistack.wsgi.cgi_environ import body_length
from wsgistack.wsgi.runner import run_app

log = logging.getLogger("wsgistack.server")


class EventFastCGIProtocol(LoopConnection):
    """Reads FastCGI requests, hands complete ones to the app, writes their records back; one at a time."""

    def __init__(self, ctx: ServeContext, loop: asyncio.AbstractEventLoop, registry: ConnectionRegistry,
                 run_in_pool: bool):
        self.ctx = ctx
        self.loop = loop
        self.registry = registry
        self.run_in_pool = run_in_pool
        self.transport: asyncio.Transport | None = None
        self.parser = fcgi.FastCGIParser(param_limits(ctx.limits))
        self.begin: fcgi.BeginRequest | None = None  # the request being read or served
        self.params: dict[str, str] | None = None  # its params, once complete (None: ignore its stdin)
        self.declared: int | None = None  # its CONTENT_LENGTH
        self.received = 0
        self.body: Any = None
        self.busy = False  # a request is with the app
        self.closed = False
        self.reading = True
        self.peer_done = False
        self.parked = False
        self.close_when_drained = False  # answered early, no keep-alive: close once its stdin has ended
        self.fd = -1
        self.deadline = 0.0
        self.can_write = threading.Event()
        self.can_write.set()
        self.outbox = Outbox() if run_in_pool else None
        registry.opening += 1

    # -- asyncio callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._made(transport):
            return
        if not peer_allowed(self.ctx, self.info):
            log.warning("FastCGI connection from %s refused: not in --protocol-allow-from", self.info.remote_addr)
            self.closed = True
            transport.abort()
            return
        if not self.registry.add(self):
            transport.abort()
            return
        self.deadline = time.monotonic() + self.ctx.client_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.can_write.set()
        self.registry.discard(self)
        self._drop_body()

    def data_received(self, data: bytes) -> None:
        if self.parked:
            self.parked = False
            del self.registry.idle[self]
        self.parser.feed(data)
        if not self.busy:
            self._advance()
        else:
            self._pause_reading()

    def eof_received(self) -> bool | None:
        self.peer_done = True
        if not self.busy:
            if self.parser.started and not self.closed:
                log.warning("FastCGI peer %s closed in the middle of a record or request", self.info.remote_addr)
            self._close()
        return True

    # -- reading requests ------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Consume parser events until a request is complete (then dispatch it) or more bytes are needed."""
        parser = self.parser
        while not self.busy and not self.closed:
            event = parser.next_event()
            if event is None:
                break
            if isinstance(event, fcgi.BeginRequest):
                self.begin, self.params, self.received = event, None, 0
                self.deadline = time.monotonic() + self.ctx.client_timeout
            elif isinstance(event, fcgi.Params):
                self._take_params(event.params)
            elif isinstance(event, fcgi.StdinData):
                self._take_stdin(event.data)
            elif isinstance(event, fcgi.StdinEnd):
                if self.params is not None:
                    self._stdin_ended()
            elif isinstance(event, fcgi.AbortRequest):
                if self.begin is not None and self.begin.request_id == event.request_id:
                    self._answer_now(fcgi.end_request(event.request_id))  # the spec's answer to an abort
            elif isinstance(event, fcgi.TooLarge):
                self._answer_now(self._records(refusal_answer(self.ctx, self.info, event.status, event.reason)))
            elif isinstance(event, fcgi.ProtocolError):
                log.warning("FastCGI protocol error from %s: %s", self.info.remote_addr, event.reason)
                self._close()
            else:
                self.transport.write(management_answer(event, self.registry.limit))
        if self.close_when_drained and not parser.draining:
            self._close()

    def _take_params(self, params: dict[str, str]) -> None:
        ctx = self.ctx
        if is_health(params, ctx):
            self._answer_now(self._records(health_answer(ctx, self.info, params)), keep=not ctx.draining)
            return
        problem = request_problem(params, ctx.limits)
        if problem is not None:
            self._answer_now(self._records(refusal_answer(ctx, self.info, *problem)))
            return
        self.params = params
        self.declared = body_length(params) if params.get("CONTENT_LENGTH", "").strip() else None

    def _take_stdin(self, data: bytes) -> None:
        if self.params is None:
            return  # a request answered already (its leftovers)
        if self.declared is not None:
            data = data[:self.declared - self.received]  # a CGI body is CONTENT_LENGTH bytes, never more
        self.received += len(data)
        limit = self.ctx.limits.body_size
        if limit and self.received > limit:
            self._answer_now(self._records(refusal_answer(self.ctx, self.info, 413, "request body too large")))
            return
        if data:
            if self.body is None:
                self.body = tempfile.SpooledTemporaryFile(SPOOL_THRESHOLD)  # noqa: SIM115 - closed in _drop_body
            self.body.write(data)
        self.deadline = time.monotonic() + self.ctx.client_timeout

    def _stdin_ended(self) -> None:
        if self.declared is not None and self.received < self.declared:
            self._answer_now(self._records(refusal_answer(self.ctx, self.info, 400,
                                                          "the body ended before CONTENT_LENGTH")))
            return
        self._dispatch()

    def _records(self, cgi_response: bytes) -> bytes:
        request_id = self.begin.request_id if self.begin is not None else 0
        return fcgi.stream(fcgi.STDOUT, request_id, cgi_response) + fcgi.end_response(request_id)

    def _answer_now(self, data: bytes, keep: bool = True) -> None:
        """On the loop: a whole answer of ours (no app call); the rest of the request's stdin is dropped."""
        self.transport.write(data)
        keep = keep and self.begin is not None and self.begin.keep_conn and self.ctx.keep_alive()
        self.begin, self.params = None, None
        self._drop_body()
        self.parser.request_done()
        if not keep:
            # closing with stdin unread would reset the connection, and the answer with it
            self.close_when_drained = True
        self._idle()

    def _dispatch(self) -> None:
        begin, params = self.begin, self.params
        assert begin is not None and params is not None
        self.busy = True
        body = self.body
        if body is None:
            pull = no_body
        else:
            body.seek(0)
            pull = partial(body.read, 65536)
        environ = fastcgi_environ(params, pull, self.ctx)
        out = CGIOutput(begin.request_id, environ["REQUEST_METHOD"])
        sink = _RecordLoopSink(self, out, threaded=self.run_in_pool, outbox=self.outbox)
        self.registry.request_started(self)
        if self.run_in_pool:
            self.registry.pool.submit(self._run, environ, sink)
        else:
            self._run(environ, sink)

    def _run(self, environ: dict[str, Any], sink: _RecordLoopSink) -> None:
        """Runs the app (in a pool thread, or inline on the loop) and hands the outcome to the loop."""
        started, clock = time.time(), time.monotonic()
        begin_request(self.ctx)
        try:
            result = run_app(self.ctx.app, environ, sink)
            status, failed = result.status, result.failed
        except BaseException:  # run_app never raises for app errors; this is a bug of ours
            log.exception("error running a request")
            status, failed = 500, True
        out = sink.out
        record = end_request(self.ctx, environ, out.status or status, out.sent, started, clock, failed)
        whole = sink.ended or out.own_error
        keep = whole and self.begin is not None and self.begin.keep_conn and self.ctx.keep_alive()
        sink.deliver_last(sink.take_pending(), lambda: self._finished(whole, keep, record))

    def _finished(self, whole: bool, keep: bool, record: AccessRecord | None) -> None:
        """On the loop: the response is written (or buffered in the transport)."""
        self.registry.request_finished(self)
        if record is not None:
            self.ctx.access_log.write(record)
        self._drop_body()
        self.busy = False
        self.begin, self.params = None, None
        self.parser.request_done()
        if not whole:
            self._close()  # cut short: no END_REQUEST (see fastcgi.py)
            return
        if not keep:
            self.close_when_drained = True
        self._resume_reading()
        self._advance()
        self._idle()

    def _idle(self) -> None:
        """After an answer: wait for the next request (parked: sheddable), or close."""
        if self.closed or self.busy:
            return
        self.deadline = time.monotonic() + self.ctx.keep_alive_timeout
        if self.close_when_drained and not self.parser.draining or self.peer_done:
            self._close()
        elif self.begin is None and not self.parser.started and not self.parked:
            self.parked = True
            self.registry.idle[self] = None

    # -- helpers ---------------------------------------------------------------------------------------

    def close_if_idle(self) -> bool:
        """Close the connection if no byte of a request is here or on its way; True if closed."""
        if self.busy or self.closed or self.begin is not None or self.parser.started or unread_bytes(self.fd):
            return False
        self._close()
        return True

    def expire(self, now: float) -> None:
        """Close the connection if its deadline passed (FastCGI has no 408: a half-sent request is logged)."""
        if self.busy or self.closed or now < self.deadline:
            return
        if self.begin is not None or self.parser.started:
            log.info("FastCGI peer %s stopped sending in the middle of a request", self.info.remote_addr)
            self._close()
        else:
            self.close_if_idle()



class _RecordLoopSink(LoopSink):
    """http_event's loop sink (outbox, backpressure, one write per flush) with FastCGI records for pieces."""

    def __init__(self, proto: EventFastCGIProtocol, out: CGIOutput, threaded: bool, outbox: Outbox | None):
        super().__init__(proto, None, False, threaded, outbox)  # type: ignore[arg-type]
        self.out = out
        self.ended = False

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.pending.append(self.out.head(status, headers))  # goes out with the first piece of body

    def send_body(self, data: bytes) -> None:
        records = self.out.body(data)
        if self.out.remaining == 0:
            self.pending.append(records)  # goes out with END_REQUEST, in one write (see fastcgi._RecordSink)
            return
        self._push(records)

    def send_file(self, fd: int, offset: int, count: int) -> None:
        for block in file_pieces(fd, offset, count):
            self.send_body(block)
            if self.out.remaining == 0:
                return

    def send_error(self, status: int, reason: str) -> None:
        self.pending = [self.out.error(status, reason)]

    def end(self) -> None:
        if not self.out.complete:
            raise ClientGone("the body was shorter than its Content-Length")
        self.pending.append(self.out.end())
        self.ended = True
