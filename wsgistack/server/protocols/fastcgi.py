"""One FastCGI connection served with blocking calls (sync, thread, and gevent with monkey patching), and
what the event protocol (fastcgi_event.py) shares with it: the environ from the params, the CGI response in
STDOUT records, the health endpoint and our own refusals as CGI responses, the management answers.

One request at a time (gateway/fastcgi.py refuses a second with FCGI_CANT_MPX_CONN). The body is read from
STDIN records as the app asks; the response goes out as STDOUT records as the app yields, then the empty
STDOUT record and END_REQUEST. With FCGI_KEEP_CONN the connection waits for another request (unless the
worker is stopping, or is the sync worker, which closes after each request as it does over HTTP); without
it, it closes after END_REQUEST. A response cut short (an app failure after its head, a body shorter than
its Content-Length) gets no END_REQUEST: the connection closes, so the web server sees a truncated response
and never passes it on as whole.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from wsgistack.gateway import fastcgi as fcgi
from wsgistack.http.errors import ClientGone, error_body, status_line_text
from wsgistack.http.heads import cgi_head
from wsgistack.http.parser import Limits, ParseError, RequestHead
from wsgistack.server.context import (
    ServeContext,
    answer_health,
    begin_request,
    end_request,
    peer_allowed,
    refusal,
)
from wsgistack.server.protocols.connection import BlockingConnection
from wsgistack.wsgi.cgi_environ import body_length, cgi_environ
from wsgistack.wsgi.environ import ConnectionInfo
from wsgistack.wsgi.runner import ClientError, run_app

log = logging.getLogger("wsgistack.server")

FILE_BLOCK = 256 * 1024
DRAIN_LIMIT = 64 << 20  # stdin of an answered request read and dropped before a close; past it, just close


# -- shared with the event protocol ------------------------------------------------------------------------

def param_limits(limits: Limits) -> fcgi.ParamLimits:
    """The HTTP limits as FastCGI params: HTTP_* params are the header fields, REQUEST_URI the target."""
    return fcgi.ParamLimits(limits.request_line, limits.fields, limits.field_size)


def fastcgi_environ(params: dict[str, str], pull: Callable[[], bytes], ctx: ServeContext) -> dict[str, Any]:
    """The environ of one request, the one `wsgistack cgi` gives for the same meta-variables.

    nginx's stock fastcgi_params send SCRIPT_NAME ($fastcgi_script_name: the whole path, DOCUMENT_URI, unless
    fastcgi_split_path_info cut it) and no PATH_INFO. Without PATH_INFO, what DOCUMENT_URI has past a
    SCRIPT_NAME that ends at a segment boundary is the PATH_INFO (the split's $fastcgi_path_info), and a
    SCRIPT_NAME that is the whole path becomes PATH_INFO under an empty SCRIPT_NAME: the app is then mounted
    at the root.
    """
    meta = dict(params)
    if "PATH_INFO" not in meta:
        script, path = meta.get("SCRIPT_NAME", ""), meta.get("DOCUMENT_URI", "")
        if script and path.startswith(script.rstrip("/") + "/") and path != script:
            meta["PATH_INFO"] = path[len(script.rstrip("/")):]
        else:
            meta["PATH_INFO"], meta["SCRIPT_NAME"] = script, ""
    return cgi_environ(meta, pull, ctx.errors, multithread=ctx.multithread)


def is_health(params: dict[str, str], ctx: ServeContext) -> bool:
    """Whether the request's target (REQUEST_URI, as nginx got it) is the health endpoint's."""
    return params.get("REQUEST_URI") == ctx.health_path


def _as_cgi(http_response: bytes) -> bytes:
    """A response of ours written for HTTP (answer_health, refusal) as a CGI response: `Status:` for the status
    line, and no Connection field (FastCGI's own records say whether the connection stays)."""
    head, _, body = http_response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([b"Status: " + lines[0].split(b" ", 1)[1], *fields]) + b"\r\n\r\n" + body


def health_answer(ctx: ServeContext, info: ConnectionInfo, params: dict[str, str]) -> bytes:
    """The health endpoint's CGI response (no app call; access-logged by answer_health)."""
    head = RequestHead(method=params.get("REQUEST_METHOD", "GET"), target=ctx.health_path, version="1.1",
                       headers=[("Host", params.get("HTTP_HOST", ""))], keep_alive=True, chunked=False,
                       content_length=None, expect_continue=False)
    data, _ = answer_health(ctx, info, head, True)
    return _as_cgi(data)


def refusal_answer(ctx: ServeContext, info: ConnectionInfo, status: int, reason: str) -> bytes:
    """Our own error for a request the app never sees (400, 413, 414, 431) as a CGI response, logged."""
    log.info("FastCGI request refused: %s %s", status, reason)
    return _as_cgi(refusal(ctx, info, ParseError(status, reason)))


def request_problem(params: dict[str, str], limits: Limits) -> tuple[int, str] | None:
    """A reason to refuse the request before the app (bad CONTENT_LENGTH, a body past --max-body-size)."""
    try:
        length = body_length(params)
    except ValueError as exc:
        return 400, str(exc)
    if limits.body_size and length > limits.body_size:
        return 413, "request body too large"
    return None


def management_answer(event: object, max_conns: int | None) -> bytes:
    """The record answering a management event (GetValues, UnknownType) or a Refused request."""
    if isinstance(event, fcgi.GetValues):
        known = {"FCGI_MPXS_CONNS": "0"}
        if max_conns:
            known["FCGI_MAX_CONNS"] = known["FCGI_MAX_REQS"] = str(max_conns)  # one request per connection
        return fcgi.get_values_result({name: known[name] for name in event.names if name in known})
    if isinstance(event, fcgi.UnknownType):
        return fcgi.unknown_type(event.record_type)
    assert isinstance(event, fcgi.Refused)
    log.info("FastCGI request %s refused with protocol status %s", event.request_id, event.protocol_status)
    return fcgi.end_request(event.request_id, 0, event.protocol_status)


class CGIOutput:
    """One response as STDOUT records: the CGI head, the body cut to its Content-Length (none to HEAD)."""

    def __init__(self, request_id: int, method: str):
        self.request_id = request_id
        self.head_only = method == "HEAD"
        self.remaining: int | None = None
        self.sent = 0  # body bytes, for the access log
        self.status = 0
        self.own_error = False

    @property
    def complete(self) -> bool:
        """Whether the body reached its Content-Length (if it announced one)."""
        return self.head_only or not self.remaining

    def head(self, status: str, headers: list[tuple[str, str]]) -> bytes:
        self.status = int(status[:3])
        for name, value in headers:
            if name.lower() == "content-length" and value.strip().isdigit():
                self.remaining = int(value)
        return fcgi.stream(fcgi.STDOUT, self.request_id, cgi_head(status, headers))

    def body(self, data: bytes) -> bytes:
        if self.head_only:
            return b""
        if self.remaining is not None:
            data = data[:self.remaining]
            self.remaining -= len(data)
        self.sent += len(data)
        return fcgi.stream(fcgi.STDOUT, self.request_id, data)

    def error(self, status: int, reason: str) -> bytes:
        """A whole error response of ours, ended."""
        body = error_body(status, reason)
        self.status, self.own_error, self.sent = status, True, len(body)
        head = cgi_head(status_line_text(status), [("Content-Type", "text/plain; charset=utf-8"),
                                                    ("Content-Length", str(len(body)))])
        return fcgi.stream(fcgi.STDOUT, self.request_id, head + (b"" if self.head_only else body)) + self.end()

    def end(self) -> bytes:
        return fcgi.end_response(self.request_id)


def file_pieces(fd: int, offset: int, count: int) -> Any:
    """A file's bytes in blocks (FastCGI frames every byte in records: no sendfile)."""
    end = offset + count
    while offset < end:
        block = os.pread(fd, min(FILE_BLOCK, end - offset), offset)
        if not block:
            raise ClientGone("the file ended before its announced length")
        offset += len(block)
        yield block


# -- the blocking connection -------------------------------------------------------------------------------

class FastCGIConnection(BlockingConnection):
    """An accepted web-server connection and the record parser that survives between its requests."""

    def __init__(self, sock: socket.socket, peer: Any, ctx: ServeContext):
        super().__init__(sock, peer, ctx)
        self.parser = fcgi.FastCGIParser(param_limits(ctx.limits))
        self.received = False  # some byte came during the current serve() call
        self.bytes_in = 0

    def _send(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.send_all(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from None

    def _receive(self, deadline: float) -> bool:
        """Read once into the parser; False at the end of the stream; TimeoutError past `deadline`."""
        data = self.recv_once(deadline)
        if not data:
            return False
        self.received = True
        self.bytes_in += len(data)
        self.parser.feed(data)
        return True

    # -- serving ---------------------------------------------------------------------------------------

    def serve(self) -> bool:
        """Serve requests until none is on its way; True when the connection should wait for another."""
        if not peer_allowed(self.ctx, self.info):
            log.warning("FastCGI connection from %s refused: not in --protocol-allow-from", self.info.remote_addr)
            self.close()
            return False
        self.received = False
        try:
            while True:
                begin = self._next_request()
                if begin is None:
                    return False
                if begin is True:
                    return True
                keep = self._serve_request(begin)
                self.last_active = time.monotonic()
                if not keep:
                    self._drain()
                    return False
        except ClientGone as exc:
            log.debug("FastCGI peer gone: %s", exc)
            return False
        finally:
            if self.parser.failed:
                log.warning("FastCGI protocol error from %s: %s", self.info.remote_addr, self.parser.error)

    def _next_request(self) -> fcgi.BeginRequest | bool | None:
        """The next request's begin; True when the connection is idle (wait for more); None to close."""
        deadline = time.monotonic() + self.ctx.client_timeout
        parser = self.parser
        while True:
            event = parser.next_event()
            if isinstance(event, fcgi.BeginRequest):
                return event
            if isinstance(event, fcgi.ProtocolError):
                return None  # logged by serve()
            if isinstance(event, (fcgi.GetValues, fcgi.UnknownType, fcgi.Refused)):
                self._send(management_answer(event, None))
                continue
            if event is not None:
                continue  # leftovers of a request answered already
            if self.received and not parser.started:
                return True
            try:
                if not self._receive(deadline):
                    if parser.started:
                        log.warning("FastCGI peer %s closed in the middle of a record or request",
                                    self.info.remote_addr)
                    return None
            except TimeoutError:
                if parser.started:
                    log.info("FastCGI peer %s stopped sending in the middle of a request", self.info.remote_addr)
                return None
            except OSError:
                return None

    def _params(self, begin: fcgi.BeginRequest) -> dict[str, str] | None:
        """The request's params, or None once it was answered (a limit) or the connection is done."""
        deadline = time.monotonic() + self.ctx.client_timeout
        while True:
            event = self.parser.next_event()
            if isinstance(event, fcgi.Params):
                return event.params
            if isinstance(event, fcgi.TooLarge):
                self._answer(begin.request_id, refusal_answer(self.ctx, self.info, event.status, event.reason))
                return None
            if isinstance(event, fcgi.ProtocolError):
                return None  # logged by serve()
            if isinstance(event, fcgi.AbortRequest):
                self._send(fcgi.end_request(begin.request_id))  # the spec's answer to an abort
                self.parser.request_done()
                return None
            if isinstance(event, (fcgi.GetValues, fcgi.UnknownType, fcgi.Refused)):
                self._send(management_answer(event, None))
                continue
            if event is not None:
                continue  # nothing else can come before the params end (the parser refuses it)
            try:
                if self._receive(deadline):
                    continue
                log.warning("FastCGI peer %s closed before the params ended", self.info.remote_addr)
            except TimeoutError:
                log.info("FastCGI peer %s stopped sending before the params ended", self.info.remote_addr)
            except OSError:
                pass
            return None

    def _answer(self, request_id: int, cgi_response: bytes) -> None:
        """Send a whole response of ours (health, refusal) and end the request."""
        self._send(fcgi.stream(fcgi.STDOUT, request_id, cgi_response) + fcgi.end_response(request_id))
        self.parser.request_done()

    def _serve_request(self, begin: fcgi.BeginRequest) -> bool:
        """Serve one request; True when the connection may carry another."""
        ctx = self.ctx
        params = self._params(begin)
        if params is None:
            return begin.keep_conn and ctx.keep_alive() and not self.parser.failed and self.parser.request_id == 0
        keep = begin.keep_conn and ctx.keep_alive()
        if is_health(params, ctx):
            self._answer(begin.request_id, health_answer(ctx, self.info, params))
            return keep and not ctx.draining
        problem = request_problem(params, ctx.limits)
        if problem is not None:
            self._answer(begin.request_id, refusal_answer(ctx, self.info, *problem))
            return keep
        if self.parser.failed:
            return False  # the bytes that came with the params broke the protocol: no app call
        started, clock = time.time(), time.monotonic()
        body = _StdinReader(self, begin.request_id, params)
        environ = fastcgi_environ(params, body.pull, ctx)
        sink = _RecordSink(self, CGIOutput(begin.request_id, environ["REQUEST_METHOD"]), body)
        begin_request(ctx)
        result = run_app(ctx.app, environ, sink)
        out = sink.out
        record = end_request(ctx, environ, out.status or result.status, out.sent, started, clock, result.failed)
        if record is not None:
            ctx.access_log.write(record)
        self.parser.request_done()
        if not (sink.ended or out.own_error):
            return False  # cut short: no END_REQUEST, the connection closes (see the module's docstring)
        return keep and body.failure is None and ctx.keep_alive()

    def _drain(self) -> None:
        """Before a close: read and drop the stdin of an answered request (closing a socket with unread bytes
        resets it, and the web server could lose the answer)."""
        deadline = time.monotonic() + self.ctx.client_timeout
        limit = self.bytes_in + DRAIN_LIMIT
        try:
            while self.parser.draining and not self.parser.failed and self.bytes_in < limit:
                if not self._receive(deadline):
                    return
        except OSError:
            pass


class _StdinReader:
    """wsgi.input's pull over the request's STDIN records: never past CONTENT_LENGTH (when given), and a
    ClientError (413) past --max-body-size."""

    def __init__(self, conn: FastCGIConnection, request_id: int, params: dict[str, str]):
        self.conn = conn
        self.request_id = request_id
        self.declared = body_length(params) if params.get("CONTENT_LENGTH", "").strip() else None
        self.limit = conn.ctx.limits.body_size
        self.received = 0
        self.done = False
        self.failure: ClientError | None = None

    def pull(self) -> bytes:
        conn = self.conn
        while not self.done:
            if self.failure is not None:
                raise self.failure
            event = conn.parser.next_event()
            if isinstance(event, fcgi.StdinData):
                return self._take(event.data)
            if isinstance(event, fcgi.StdinEnd):
                self.done = True
                if self.declared is not None and self.received < self.declared:
                    raise self._fail(400, "the body ended before CONTENT_LENGTH")
                return b""
            if isinstance(event, fcgi.AbortRequest):
                raise self._fail(400, "the web server aborted the request")
            if isinstance(event, fcgi.ProtocolError):
                conn.parser.events.appendleft(event)
                raise self._fail(400, f"FastCGI protocol error: {event.reason}")
            if isinstance(event, (fcgi.GetValues, fcgi.UnknownType, fcgi.Refused)):
                conn._send(management_answer(event, None))
                continue
            if event is not None:
                continue  # nothing else can come inside a body (the parser refuses it)
            try:
                received = conn._receive(time.monotonic() + conn.ctx.client_timeout)
            except TimeoutError:
                raise self._fail(400, "the web server stopped sending the body") from None
            except OSError as exc:
                raise self._fail(400, f"reading the body failed: {exc}") from None
            if not received:
                raise self._fail(400, "the web server closed the connection before the body ended")
        return b""

    def _take(self, data: bytes) -> bytes:
        if self.declared is not None:
            data = data[:self.declared - self.received]  # a CGI body is CONTENT_LENGTH bytes, never more
        self.received += len(data)
        if self.limit and self.received > self.limit:
            raise self._fail(413, "request body too large")
        return data

    def _fail(self, status: int, reason: str) -> ClientError:
        self.failure = ClientError(reason, status)
        return self.failure


class _RecordSink:
    """The WSGI runner's ResponseSink: STDOUT records on the connection's socket, as the app yields."""

    def __init__(self, conn: FastCGIConnection, out: CGIOutput, body: _StdinReader):
        self.conn = conn
        self.out = out
        self.body = body
        self.head = b""
        self.ended = False

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        if self.body.failure is not None:
            # the app caught our body error and answered anyway (often a 500): the web server deserves the 4xx
            self.send_error(self.body.failure.status, str(self.body.failure))
            raise ClientGone("the request body was refused")
        self.head = self.out.head(status, headers)  # goes out with the first piece of body

    def send_body(self, data: bytes) -> None:
        head, self.head = self.head, b""
        records = head + self.out.body(data)
        if self.out.remaining == 0:
            # the last piece of an announced length goes out with END_REQUEST, in one write: had nginx the
            # whole answer first, a client closing at once would make it drop this connection for want of
            # the END_REQUEST still on its way (measured: one connection in ten, not kept)
            self.head = records
            return
        self.conn._send(records)

    def send_file(self, fd: int, offset: int, count: int) -> None:
        for block in file_pieces(fd, offset, count):
            self.send_body(block)
            if self.out.complete and self.out.remaining == 0:
                return

    def send_error(self, status: int, reason: str) -> None:
        self.conn._send(self.out.error(status, reason))

    def end(self) -> None:
        head, self.head = self.head, b""
        if not self.out.complete:
            self.conn._send(head)
            raise ClientGone("the body was shorter than its Content-Length")
        self.conn._send(head + self.out.end())
        self.ended = True
