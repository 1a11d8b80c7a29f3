"""One uwsgi connection on the event worker's loop: the packet and the whole body first, then the app.

It is the HTTP protocol (http_event.py) with the packet reader (gateway/uwsgi.py) in place of the HTTP parser:
the registry, the app thread hand-off, the sink and its backpressure are HTTP's. One request per connection;
the response is an HTTP/1.x head and a body that ends with the close, never chunked.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from functools import partial
from typing import Any

from wsgistack.gateway.uwsgi import PacketReader, UwsgiRequest
from wsgistack.http.parser import ParseError
from wsgistack.server.context import ServeContext, answer_health, peer_allowed, refusal
from wsgistack.server.protocols.http_event import (
    SPOOL_THRESHOLD,
    ConnectionRegistry,
    EventHTTPProtocol,
    LoopSink,
    no_body,
)
from wsgistack.server.protocols.uwsgi import LINGER_SECONDS, request_info
from wsgistack.wsgi.cgi_environ import cgi_environ

log = logging.getLogger("wsgistack.server")


class EventUwsgiProtocol(EventHTTPProtocol):
    """Reads one request packet and its body, hands it to the app, writes the response, closes."""

    def __init__(self, ctx: ServeContext, loop: asyncio.AbstractEventLoop, registry: ConnectionRegistry,
                 run_in_pool: bool):
        super().__init__(ctx, loop, registry, run_in_pool)
        self.parser = PacketReader(ctx.limits)  # type: ignore[assignment]  # `started` is what the base reads
        self.request: UwsgiRequest | None = None
        self.body_left = 0
        self.lingering = False  # answered early: our side is shut, the peer's last bytes are dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not transport.is_closing() and not peer_allowed(self.ctx, self.info):
            log.warning("uwsgi: connection from %s refused: not in --protocol-allow-from", self.info.remote_addr)
            self._close()

    def data_received(self, data: bytes) -> None:
        if self.parked:
            self.registry.unpark(self)
        if self.lingering or self.busy or self.closed:
            return  # dropped: past the body, or after our answer
        if self.request is None:
            outcome = self.parser.feed(data)
            if outcome is None:
                return
            if isinstance(outcome, ParseError):
                self._answer_error(outcome)
                return
            self.request, self.head = outcome, outcome.head()
            self.body_left = outcome.content_length
            data = outcome.leftover
        if data and self.body_left:
            piece = data[:self.body_left]
            if self.body is None:
                self.body = tempfile.SpooledTemporaryFile(SPOOL_THRESHOLD)  # noqa: SIM115 - closed in _drop_body
            self.body.write(piece)
            self.body_left -= len(piece)
        self.deadline = time.monotonic() + self.ctx.client_timeout
        if not self.body_left:
            self._dispatch()

    def eof_received(self) -> bool | None:
        if not self.busy and not self.lingering and not self.closed and self.parser.started:
            request = self.request
            self._answer_error(self.parser.truncated() if request is None else
                               ParseError(400, f"the connection closed {self.body_left} bytes before the body ended"))
        return super().eof_received()

    def _answer_error(self, error: ParseError) -> None:
        """Refuse the packet: our error, our side shut, and the peer's remaining bytes dropped until it closes
        (a moment at most), so that the close sends no reset over the answer."""
        log.warning("uwsgi: refused a packet from %s: %s", self.info.remote_addr, error.reason)
        self.transport.write(refusal(self.ctx, self.info, error))
        if self.peer_done or not self.transport.can_write_eof():
            self._close()
            return
        self.transport.write_eof()
        self.lingering = True
        self.deadline = time.monotonic() + min(LINGER_SECONDS, self.ctx.client_timeout)

    def _dispatch(self) -> None:
        request, head = self.request, self.head
        assert request is not None and head is not None
        if request.target == self.ctx.health_path:
            self._answer_health(request)
            return
        self.busy = True
        body = self.body
        if body is None:
            pull: Any = no_body
        else:
            body.seek(0)
            pull = partial(body.read, 65536)
        ctx = self.ctx
        environ = cgi_environ(request.vars, pull, ctx.errors, multithread=ctx.multithread,
                              strip_script_name=request.strip_script_name)
        sink = LoopSink(self, head, False, threaded=self.run_in_pool, outbox=self.outbox)
        self.registry.request_started(self)
        if self.run_in_pool:
            self.registry.pool.submit(self._run, environ, sink)
        else:
            self._run(environ, sink)

    def _answer_health(self, request: UwsgiRequest) -> None:  # type: ignore[override]
        data, _ = answer_health(self.ctx, request_info(request, self.info), request.head(request.version),
                                False)
        self.busy = True
        self.registry.request_started(self)
        self.transport.write(data)
        self._finished(False, None)

    def expire(self, now: float) -> None:
        """Close a lingering connection at its deadline; otherwise as HTTP (408 for a half-sent request)."""
        if self.lingering:
            if now >= self.deadline:
                self._close()
            return
        super().expire(now)
