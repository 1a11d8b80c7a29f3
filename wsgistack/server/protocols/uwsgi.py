"""One uwsgi connection served with blocking socket calls (the sync, thread and gevent workers).

A web server (nginx's uwsgi_pass) sends one request packet (gateway/uwsgi.py) and its body; the app's
response goes back as an HTTP/1.x head and a body that ends when we close: never chunked, each piece written
as the app yields it. The sink is HTTP's (SocketSink) with a head that asks for exactly that framing.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from wsgistack.gateway.uwsgi import PacketReader, UwsgiRequest
from wsgistack.http.parser import ParseError
from wsgistack.server.context import (
    ServeContext,
    answer_health,
    begin_request,
    end_request,
    peer_allowed,
    refusal,
)
from wsgistack.server.protocols.connection import BlockingConnection
from wsgistack.server.protocols.http import SocketSink
from wsgistack.wsgi.cgi_environ import cgi_environ
from wsgistack.wsgi.environ import ConnectionInfo
from wsgistack.wsgi.runner import ClientError, run_app

log = logging.getLogger("wsgistack.server")

# After an answer given before the body was read whole (a 413, an app that ignored its input), the rest is
# read and dropped for a moment before closing: closing with unread bytes makes the kernel send a reset,
# and the web server may then lose our answer and report a failure instead (a lingering close, as nginx's).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 << 20


class UwsgiConnection(BlockingConnection):
    """An accepted uwsgi connection: one request, then the close (uwsgi has no keep-alive)."""

    def __init__(self, sock: socket.socket, peer: Any, ctx: ServeContext):
        super().__init__(sock, peer, ctx)
        self.parser = PacketReader(ctx.limits)
        self.body_failure: ParseError | None = None  # read by SocketSink
        self.body_left = 0  # announced body bytes not read yet
        self.leftover = b""  # body bytes that came with the vars
        self.peer_done = False  # the peer ended its side: nothing more to read
        self.extra = False

    def serve(self) -> bool:
        """Serve the connection's one request; always False (the connection closes after it)."""
        if not peer_allowed(self.ctx, self.info):
            log.warning("uwsgi: connection from %s refused: not in --protocol-allow-from", self.info.remote_addr)
            return False
        outcome = self._read_packet()
        if outcome is None:
            return False
        if isinstance(outcome, ParseError):
            log.warning("uwsgi: refused a packet from %s: %s", self.info.remote_addr, outcome.reason)
            self._send(refusal(self.ctx, self.info, outcome))
            self._linger(always=True)  # the body (a 413's above all) may still be on its way
            return False
        self.leftover = outcome.leftover
        self.body_left = outcome.content_length
        self.extra = len(self.leftover) > self.body_left  # bytes past the request: a reason to linger
        if outcome.target == self.ctx.health_path:
            self._serve_health(outcome)
        else:
            self._serve_request(outcome)
        self.last_active = time.monotonic()
        self._linger()
        return False

    # -- reading ---------------------------------------------------------------------------------------

    def _read_packet(self) -> UwsgiRequest | ParseError | None:
        """The request, an error to answer, or None when the peer left (or idled) before sending anything."""
        deadline = time.monotonic() + self.ctx.client_timeout
        while True:
            try:
                data = self.recv_once(deadline)
            except TimeoutError:
                return ParseError(408, "Request timeout") if self.parser.started else None
            except OSError:
                return None
            if not data:
                self.peer_done = True
                return self.parser.truncated() if self.parser.started else None
            outcome = self.parser.feed(data)
            if outcome is not None:
                return outcome

    def pull(self) -> bytes:
        """The next piece of the body (b"" at its end), never past CONTENT_LENGTH; wsgi.input reads here."""
        if self.body_left <= 0:
            return b""
        if self.leftover:
            piece, self.leftover = self.leftover[:self.body_left], b""
        else:
            try:
                piece = self.recv_once(time.monotonic() + self.ctx.client_timeout)[:self.body_left]
            except TimeoutError:
                raise self._fail(408, "the web server stopped sending the body") from None
            except OSError as exc:
                raise self._fail(400, f"reading the body failed: {exc}") from None
            if not piece:
                self.peer_done = True
                raise self._fail(400, "the connection closed before the body ended")
        self.body_left -= len(piece)
        return piece

    def _fail(self, status: int, reason: str) -> ClientError:
        self.body_failure = ParseError(status, reason)
        return ClientError(reason, status)

    # -- answering -------------------------------------------------------------------------------------

    def _serve_request(self, request: UwsgiRequest) -> None:
        ctx = self.ctx
        started, clock = time.time(), time.monotonic()
        environ = cgi_environ(request.vars, self.pull, ctx.errors, multithread=ctx.multithread,
                              strip_script_name=request.strip_script_name)
        head = request.head()
        sink = SocketSink(self, head, None, False)  # type: ignore[arg-type]  # no body reader: never kept alive
        begin_request(ctx)
        result = run_app(ctx.app, environ, sink)
        sent = sink.framing.sent if sink.framing else sink.error_bytes
        record = end_request(ctx, environ, sink.status or result.status, sent, started, clock, result.failed)
        if record is not None:
            ctx.access_log.write(record)

    def _serve_health(self, request: UwsgiRequest) -> None:
        data, _ = answer_health(self.ctx, request_info(request, self.info), request.head(request.version),
                                False)
        self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            self.send_all(data)
        except OSError:
            pass

    def _linger(self, always: bool = False) -> None:
        """Before the close: if request bytes may still be coming, end our side and drop them until the peer
        closes (a moment at most), so that the close sends no reset over our answer."""
        # (a request read whole, nothing after it in what came: nginx sends no more, so no FIONREAD to ask)
        if self.peer_done or not always and self.body_left <= 0 and not self.extra:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(LINGER_SECONDS, self.ctx.client_timeout)
            dropped = 0
            while dropped < LINGER_BYTES:
                data = self.recv_once(deadline)
                if not data:
                    return
                dropped += len(data)
        except OSError:  # TimeoutError included
            pass


def request_info(request: UwsgiRequest, info: ConnectionInfo) -> ConnectionInfo:
    """The connection as the web server describes it in the vars (the client's address, not the web
    server's), for the access log of answers given without the app."""
    found = request.vars
    return ConnectionInfo(found.get("SERVER_NAME", info.server_name), found.get("SERVER_PORT", info.server_port),
                          found.get("REMOTE_ADDR", info.remote_addr), found.get("REMOTE_PORT", info.remote_port),
                          "https" if found.get("HTTPS", "").lower() in ("on", "1") else "http", info.unix)
