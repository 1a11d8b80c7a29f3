"""Passing one complete request to an upstream and its response back (nginx's proxy_pass).

An `Exchange` is driven by callbacks, not a task: the upstream connection calls `on_upstream` when bytes
arrive, and what is parsed goes to the client in the same callback. A task per request and a future per
read cost a third of the proxy's time in profiles. Only opening a new connection and sending a large body
run as coroutines.

Failure rules, as nginx's `proxy_next_upstream error timeout`: when an attempt fails before the first byte
of a response (connect refused, reset, timeout), the server's failure is counted and an idempotent request
is tried on the next server; a non-idempotent one is retried only when nothing of it was sent (connect
failures). Once response bytes have arrived the response is the client's, whatever happens next.

Beyond nginx: a request whose connects were refused everywhere (nothing of it was sent) is held and its
connect retried with a short backoff for up to the upstream's `connect_retry_timeout` before the 502, so an
app server restarting behind the proxy costs its clients a short wait, not an error; so is an idempotent
request whose connection was cut before any answer (a server closing its backlog as it stops), at most
until _MAX_CUTS such cuts. A reused keep-alive
connection that the server closed as the request went out is not the server's failure: an idempotent
request is sent again on a fresh connection.

Responses are buffered as nginx's proxy_buffering does: while the client cannot take more, what the upstream
sends is read on into a Spool (memory, then a temporary file, up to a cap), and once the upstream's
response is complete its connection goes back to the pool, so a slow reader holds no app worker. While the
client keeps up nothing is copied: bytes go straight to its transport. A route with `buffering = false`,
or a response with `X-Accel-Buffering: no`, is relayed with backpressure instead (streaming).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from wsgistack.http.errors import ClientGone
from wsgistack.http.framing import Framing
from wsgistack.http.heads import forwarded_request_head, proxied_response_head, without_hop_by_hop
from wsgistack.http.parser import BodyData, EndOfMessage, ParseError, RequestHead
from wsgistack.http.response_parser import ResponseHead
from wsgistack.proxy.buffering import Spool
from wsgistack.proxy.compression import GzipStream, gzip_headers, should_compress
from wsgistack.proxy.headers import request_id
from wsgistack.proxy.health import watch_return
from wsgistack.proxy.pool import UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from wsgistack.proxy.buffering import RequestBody
    from wsgistack.proxy.routing import ProxyState, Route
    from wsgistack.proxy.upstream import UpstreamServer

log = logging.getLogger("wsgistack.proxy")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_SMALL_BODY = 64 * 1024  # bodies up to this go out in the same write as the head
_FIRST_RETRY = 0.025  # a held request's first connect retry; the wait doubles up to _RETRY_EVERY
_RETRY_EVERY = 0.25
_MAX_CUTS = 2  # connections cut before any answer after which an idempotent request is no longer held


class Phase(enum.IntEnum):
    """Where an exchange is; TRANSITIONS says which phase may follow which.

    An IntEnum: its members hash as ints (Enum's __hash__ is a Python call), so a table lookup stays cheap.
    """

    NEW = 0  # made; no server picked yet
    CONNECTING = 1  # a new connection to the picked server is opening (deadline: connect_timeout)
    HELD = 2  # every server refused or is down: a connect retry is scheduled (within connect_retry_timeout)
    AWAITING = 3  # the request went out (or is going out) on a connection; no response head yet (read_timeout)
    RELAYING = 4  # the response head came: the response goes on to the client (read_timeout, send_timeout)
    DRAINING = 5  # the upstream's part is over (its connection pooled); a spool still feeds the client
    DONE = 6  # the client connection was told (exchange_done); nothing more happens


# Module names for the members: `Phase.AWAITING` is an attribute lookup on the enum's class, ~0.5 µs on 3.11
NEW, CONNECTING, HELD, AWAITING, RELAYING, DRAINING, DONE = Phase

_NEXT_ATTEMPT = frozenset({CONNECTING, AWAITING, HELD, DONE})  # what picking a server (or none) leads to
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    NEW: _NEXT_ATTEMPT,  # DONE: no server at all (502)
    CONNECTING: _NEXT_ATTEMPT,  # connected (AWAITING); failed: the next server, a hold, or the error answer
    HELD: _NEXT_ATTEMPT,
    AWAITING: _NEXT_ATTEMPT | {RELAYING},  # failed before any response byte: the next attempt, as above
    RELAYING: frozenset({DRAINING, DONE}),  # after the head the response is the client's: no other attempt
    DRAINING: frozenset({DONE}),
    DONE: frozenset(),
}

# Off in production: a check (and debug line) per phase change is a few Python calls on the path of every
# request, 7% more of the proxy's instructions per request by bench/instructions.sh. The in-process tests
# (tests/proxy/test_proxy_core_inprocess.py) turn it on.
CHECK_PHASES = False


class PhaseError(Exception):
    """A phase change the table does not allow: a bug in the proxy, never a user's or an upstream's error."""


def check_phase(exchange: Exchange, new: Phase) -> None:
    """Raise PhaseError unless the exchange may go from its phase to `new`; log the change (debug mode)."""
    if new not in TRANSITIONS[exchange.phase]:
        raise PhaseError(f"{exchange.phase.name} -> {new.name} is not a valid transition")
    log.debug("exchange %s %s: %s -> %s", exchange.head.method, exchange.head.target, exchange.phase.name,
              new.name)


class ClientSide(Protocol):
    """What an exchange needs of the client connection it answers (ClientConnection in connection.py)."""

    client_ip: str
    scheme: str
    server_port: str
    state: ProxyState  # the config the request saw when its head arrived
    loop: asyncio.AbstractEventLoop
    begun: float  # monotonic time the request was complete: held connects count from it
    closed: bool

    @property
    def paused(self) -> bool:
        """True while the client's socket buffer is full."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the client (ClientGone when it has left)."""

    def abort(self) -> None:
        """Drop the client's connection (a response cannot be finished)."""

    def send_error(self, status: int, reason: str, head: RequestHead,
                   keep_alive: bool) -> tuple[int, int, bool]:
        """Write one of the proxy's own error responses; (status, body bytes, keep-alive)."""

    def exchange_done(self, exchange: Exchange, status: int, sent: int, keep_alive: bool,
                      fields: dict[str, Any]) -> None:
        """The exchange is over (answered, or it cannot be): log it and go on with the connection."""


class Exchange:
    """One request's way to an upstream (with retries) and its response's way back to the client."""

    def __init__(self, client: ClientSide, route: Route, head: RequestHead, body: RequestBody,
                 keep_alive: bool):
        upstream = route.upstream
        assert upstream is not None
        self.client = client
        self.upstream = upstream
        self.head = head
        self.body = body
        self.keep_alive = keep_alive
        self.rid = request_id(head.header("x-request-id"))  # an id from the client is kept: it ties logs together
        has_body = body.size > 0 or head.content_length is not None or head.chunked
        state = client.state
        self.request_head = forwarded_request_head(
            head.method, head.target, head.headers, client_ip=client.client_ip, scheme=client.scheme,
            server_port=client.server_port, trusted=state.trust.trusts(client.client_ip), request_id=self.rid,
            body_length=body.size if has_body else None, default_host=upstream.name)
        self.phase = NEW
        self.tried: set[UpstreamServer] = set()
        self.addresses: list[str] = []
        self.statuses: list[str] = []
        self.times: list[str] = []
        self.server: UpstreamServer | None = None  # the attempt's server and connection, while it lasts
        self.connection: UpstreamConnection | None = None
        self.began = 0.0
        self.response: ResponseHead | None = None
        self.framing: Framing | None = None
        self.out: list[bytes] = []
        self.deadline = 0.0  # connect, then read timeout on the upstream; send timeout while the client is full
        buffering = route.settings.buffering
        self.buffering = state.settings.buffering if buffering is None else buffering

    # What failures, new connections, large bodies and slow clients need starts as these class defaults:
    # most requests never set them, and each attribute set in __init__ is paid by every request. (With
    # ClientConnection's, an Exchange's attributes stay under the 30 that CPython 3.11 shares between
    # instance dicts: count them when adding one.)
    last_error: UpstreamError | None = None  # the last failed attempt's error (and whether it had sent)
    cuts = 0  # attempts cut after the request went out, before any answer
    retry_wait = _FIRST_RETRY
    retrying: asyncio.TimerHandle | None = None  # a held request's next connect retry
    task: asyncio.Task[None] | None = None  # opening a connection (CONNECTING), or sending a large body
    gzip: GzipStream | None = None
    spool: Spool | None = None  # what the client could not take yet (buffering)
    send_deadline = 0.0  # while the spool waits: send_timeout since the client last took bytes
    upstream_paused = False  # reading paused for the client (no buffering, or the spool is full)

    # -- attempts ---------------------------------------------------------------------------------------

    def _attempt(self) -> None:
        """Send the request to the server the balancer picks (the first attempt, or the next after a failure)."""
        server = self.upstream.pick(self.client.client_ip, self.head.headers, self.tried)
        if server is None:
            if not self._hold():
                self._give_up()
            return
        self._try(server)

    start = _attempt  # the first attempt is an attempt like the others (a name, not a call more per request)

    def _give_up(self) -> None:
        if self.last_error is not None and self.last_error.timeout:
            self._answer_error(504, "The upstream server timed out")
        else:
            self._answer_error(502, "No upstream server is available" if self.last_error is None
                               else "The upstream server failed")

    def _hold(self) -> bool:
        """Every server is down or refused the connect: wait a little and try again, within the deadline."""
        error = self.last_error
        if error is not None and (error.timeout or error.sent and self.cuts >= _MAX_CUTS):
            # a server hung (connect or read timeout: nginx's 504), or an idempotent request was cut before
            # any answer several times (a request that kills its worker must not be replayed for seconds)
            return False
        client = self.client
        left = self.upstream.settings.connect_retry_timeout - (time.monotonic() - client.begun)
        if left <= 0 or client.closed:
            return False
        if CHECK_PHASES:
            check_phase(self, HELD)
        self.phase = HELD
        self.deadline = 0.0  # nothing is in flight: only the hold's own end applies
        self.retrying = client.loop.call_later(min(self.retry_wait, left), self._retry)
        self.retry_wait = min(self.retry_wait * 2, _RETRY_EVERY)
        return True

    def _retry(self) -> None:
        self.retrying = None
        if self.phase is DONE:
            return
        self.tried.clear()
        upstream, ip, headers = self.upstream, self.client.client_ip, self.head.headers
        # servers marked down are tried too: this connect is itself the check of whether they are back
        server = upstream.pick(ip, headers) or upstream.pick(ip, headers, down_too=True)
        if server is not None:
            self._try(server)
        elif not self._hold():
            self._give_up()

    def _try(self, server: UpstreamServer) -> None:
        if self.addresses:  # not the request's first attempt
            metrics = self.client.state.metrics
            if metrics is not None:
                metrics.retried(self.upstream.name)
        self.tried.add(server)
        self.addresses.append(server.name)
        self.began = time.monotonic()
        self.server = server
        connection = server.begin_request()
        if connection is not None:
            self._send(connection)
        else:
            if CHECK_PHASES:
                check_phase(self, CONNECTING)
            self.phase = CONNECTING
            # the ticker enforces connect_timeout through the deadline: no timer of its own per connect
            self.deadline = time.monotonic() + (server.pool.connect_timeout or 1e9)
            self.task = self.client.loop.create_task(self._connect(server))

    async def _connect(self, server: UpstreamServer) -> None:
        try:
            connection = await server.pool.open()
        except UpstreamError as exc:
            self.task = None
            if self.phase is not DONE:  # the client may have gone meanwhile: then nothing is owed to anyone
                self._attempt_failed(exc)
            return
        except asyncio.CancelledError:  # check_deadline: connect_timeout passed
            self.task = None
            if self.phase is not DONE:
                self._attempt_failed(UpstreamError("connect timed out", timeout=True))
            return
        self.task = None
        server.record_connected()
        if self.phase is DONE or self.client.closed:
            connection.close()
            self._client_gone()
            return
        self._send(connection)

    def _send(self, connection: UpstreamConnection) -> None:
        if CHECK_PHASES:
            check_phase(self, AWAITING)
        self.phase = AWAITING
        self.connection = connection
        connection.listener = self
        connection.begin(self.head.method)
        body = self.body
        self.deadline = time.monotonic() + self.upstream.settings.read_timeout
        if body.in_memory and body.size <= _SMALL_BODY:
            connection.write(self.request_head + body.memory() if body.size else self.request_head)
        else:
            connection.write(self.request_head)
            self.task = self.client.loop.create_task(self._send_body(connection))  # held: tasks are weak

    async def _send_body(self, connection: UpstreamConnection) -> None:
        try:
            for piece in self.body.chunks():
                if connection.closed or connection.listener is not self:
                    return
                connection.write(piece)
                await connection.drain()
                self.deadline = time.monotonic() + self.upstream.settings.read_timeout
        except UpstreamError:
            pass  # the connection closed: on_upstream sees it and decides

    def _attempt_failed(self, error: UpstreamError, reused: bool = False) -> None:
        """This server failed before any response byte: count it, then retry or answer the client."""
        server = self.server
        assert server is not None
        if reused and not error.timeout and self.head.method in IDEMPOTENT:
            # a kept-alive connection the server closed as the request went out (a restart, its idle
            # timeout): not the server's failure. Its idle siblings are as old: a fresh connection is next.
            server.pool.close()
            self.tried.discard(server)
        else:
            self._count_failure(server)
            if server.record_failure(error.reason) and not error.sent:
                watch_return(server)  # refused connects: the first one that succeeds again ends the down time
        self._end_attempt("504" if error.timeout else "502")
        self.last_error = error
        if error.sent and not reused:
            self.cuts += 1
        if error.sent and self.head.method not in IDEMPOTENT:
            self._answer_error(504 if error.timeout else 502, "The upstream server failed")
        else:
            self._attempt()

    def _end_attempt(self, status: str, ok: bool = False) -> None:
        """The one way an attempt ends: the server counts one request less, the access log gets the
        attempt's status and time, and its connection goes back to the pool (`ok`) or is closed."""
        server, connection = self.server, self.connection
        if server is None:
            return  # no attempt in flight (held, or ended already)
        self.server = self.connection = None
        if connection is not None:
            connection.listener = None
        server.end_request(connection, ok)
        self.statuses.append(status)
        seconds = time.monotonic() - self.began
        self.times.append(f"{seconds:.3f}")
        metrics = self.client.state.metrics
        if metrics is not None:
            metrics.attempt_ended(self.upstream.name, server.name, seconds)

    def _count_failure(self, server: UpstreamServer) -> None:
        """The metrics' count of the server's failed attempts (its health has its own, record_failure)."""
        metrics = self.client.state.metrics
        if metrics is not None:
            metrics.failed(self.upstream.name, server.name)

    # -- the response -----------------------------------------------------------------------------------

    def on_upstream(self) -> None:
        """The upstream connection has news (bytes, end, close): pass on what is parsed."""
        if self.phase is DONE:
            return
        try:
            self._relay()
        except ClientGone:
            self._client_gone()
        except Exception:  # a bug: the client must not hang on it
            log.exception("error while answering %s %s", self.head.method, self.head.target)
            self._break_off("internal error")

    def _relay(self) -> None:
        connection = self.connection
        if connection is None:
            return  # DRAINING: the response is complete and waits in the spool for the client
        client = self.client
        while self.phase is not DONE:
            if client.paused and (not self.buffering or (self.spool is not None and self.spool.full)):
                connection.pause_reading()
                self.upstream_paused = True
                self.deadline = time.monotonic() + client.state.settings.send_timeout
                return  # client.resume_writing() calls resume()
            event = connection.pop_event()
            if event is None:
                if connection.closed:
                    event = ParseError(502, "upstream closed the connection")
                else:
                    self._flush()
                    self.deadline = time.monotonic() + self.upstream.settings.read_timeout
                    return
            if self.phase is AWAITING:
                if isinstance(event, ResponseHead):
                    self._on_head(event)
                elif connection.parser is not None and connection.parser.received == 0:
                    self._attempt_failed(UpstreamError(getattr(event, "reason", "no response"), sent=True),
                                         reused=connection.requests > 1)
                    return
                else:
                    self._bad_response(getattr(event, "reason", "invalid response"))
                    return
            elif isinstance(event, BodyData):
                piece = self.gzip.compress(event.data) if self.gzip is not None else event.data
                if piece:
                    self.out.append(self.framing.encode(piece))  # type: ignore[union-attr]
            elif isinstance(event, EndOfMessage):
                if self.gzip is not None:
                    self.out.append(self.framing.encode(self.gzip.finish()))  # type: ignore[union-attr]
                self.out.append(self.framing.finish())  # type: ignore[union-attr]
                self._flush()
                if self.spool is not None and self.spool.pending:
                    # the app is done: its worker is free, the spool feeds the client
                    if CHECK_PHASES:
                        check_phase(self, DRAINING)
                    self.phase = DRAINING
                    self._end_attempt(str(self.response.status), ok=True)  # type: ignore[union-attr]
                    self.deadline = 0.0
                    return
                self._finish(ok=True)
            else:
                self._break_off(event.reason if isinstance(event, ParseError) else "broken response")

    def _on_head(self, response: ResponseHead) -> None:
        self.response = response
        client, head = self.client, self.head
        state = client.state
        headers = response.headers
        if state.gzip.enabled and head.header("accept-encoding"):
            headers = without_hop_by_hop(headers)
            if should_compress(state.gzip, head.method, response.status, head.headers, headers):
                headers = gzip_headers(headers)
                self.gzip = GzipStream(state.gzip.level)
        try:
            data, self.framing, self.keep_alive, accel = proxied_response_head(
                response.status, response.reason, headers, head.method, head.version, self.keep_alive, self.rid)
        except ValueError:
            self._bad_response("invalid Content-Length")
            return
        if CHECK_PHASES:
            check_phase(self, RELAYING)
        self.phase = RELAYING
        if accel in ("yes", "no"):  # X-Accel-Buffering: the app's say, for this response only
            self.buffering = accel == "yes"
        self.out.append(data)

    def _flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out = []
            spool = self.spool
            if spool is not None and spool.pending or self.buffering and self.client.paused:
                if spool is None:
                    settings = self.client.state.settings
                    spool = self.spool = Spool(settings.response_buffer_size, settings.max_temp_file_size,
                                               prefix="wsgistack-response-")
                spool.add(data)  # behind what waits already: the order is kept
                if not self.send_deadline:
                    self.send_deadline = time.monotonic() + self.client.state.settings.send_timeout
            else:
                self.client.write(data)

    def resume(self) -> None:
        """The client took what was written: feed it from the spool, and read the upstream again."""
        if self.phase is DONE:
            return
        try:
            spool = self.spool
            if spool is not None and spool.pending:
                client = self.client
                while spool.pending and not client.paused:
                    client.write(spool.take())
                if spool.pending:
                    self.send_deadline = time.monotonic() + client.state.settings.send_timeout
                    if self.phase is DRAINING or spool.full:
                        return
                else:
                    self.send_deadline = 0.0
                    if self.phase is DRAINING:  # the upstream finished earlier: the response is complete
                        self._finish(ok=True)
                        return
        except ClientGone:
            self._client_gone()
            return
        if self.connection is not None:
            self.upstream_paused = False
            self.connection.resume_reading()
            self.on_upstream()

    def check_deadline(self, now: float) -> None:
        """Called by the server's ticker: the upstream took too long, or the client took nothing."""
        phase = self.phase
        if phase is DONE:
            return
        if self.send_deadline and now >= self.send_deadline and self.client.paused:
            self.client.abort()  # the spool waited send_timeout for a client that took nothing
            self._client_gone()
            return
        if not self.deadline or now < self.deadline:
            return
        if phase is CONNECTING:
            self.task.cancel()  # type: ignore[union-attr]  # _connect counts it as the attempt's failure
        elif self.upstream_paused and self.client.paused:
            self.client.abort()
            self._client_gone()
        elif phase is AWAITING:
            self._attempt_failed(UpstreamError("upstream timed out", timeout=True, sent=True))
        else:
            self._break_off("upstream timed out")

    # -- endings: each tells the client connection once (exchange_done), in phase DONE -------------------

    def _finish(self, ok: bool) -> None:
        """End the attempt (its connection pooled when `ok`) and tell the client connection."""
        if CHECK_PHASES:
            check_phase(self, DONE)
        self.phase = DONE
        response = self.response
        self._end_attempt(str(response.status) if response is not None else "502", ok)
        if self.spool is not None:
            self.spool.close()
        framing = self.framing
        sent = framing.sent if framing is not None else 0
        keep_alive = self.keep_alive and ok and (framing is None or framing.complete)
        status = response.status if response is not None else 502
        self.client.exchange_done(self, status, sent, keep_alive, self._fields())

    def _break_off(self, reason: str) -> None:
        # after the head, the client can only learn of a failure from a cut connection
        if self.server is not None:
            self._count_failure(self.server)
            self.server.record_failure(reason)
        try:
            self._flush()
        except ClientGone:
            pass
        self.client.abort()
        self._finish(ok=False)

    def _bad_response(self, reason: str) -> None:
        if self.server is not None:
            self._count_failure(self.server)
            self.server.record_failure(reason)
        self._end_attempt("502")
        self.response = None
        self._answer_error(502, "The upstream server sent an invalid response")

    def on_client_gone(self) -> None:
        """The client's connection closed: drop the upstream connection and end the request."""
        self._client_gone()

    def _client_gone(self) -> None:
        if self.phase is DONE:
            return
        if CHECK_PHASES:
            check_phase(self, DONE)
        self.phase = DONE
        if self.retrying is not None:
            self.retrying.cancel()
            self.retrying = None
        if self.spool is not None:
            self.spool.close()
        response = self.response
        # the rest of the response is unwanted: its connection cannot be reused (closed, not pooled)
        self._end_attempt(str(response.status) if response is not None else "-")
        status = response.status if response is not None else 499  # nginx's "client closed"
        sent = self.framing.sent if self.framing is not None else 0
        self.client.exchange_done(self, status, sent, False, self._fields())

    def _answer_error(self, status: int, reason: str) -> None:
        if CHECK_PHASES:
            check_phase(self, DONE)
        self.phase = DONE
        try:
            status, sent, keep_alive = self.client.send_error(status, reason, self.head, self.keep_alive)
        except ClientGone:
            status, sent, keep_alive = 499, 0, False
        self.client.exchange_done(self, status, sent, keep_alive, self._fields())

    def _fields(self) -> dict[str, Any]:
        # nginx lists every attempt: "10.0.0.1:80, 10.0.0.2:80"
        return {"wsgistack.request_id": self.rid, "wsgistack.upstream_addr": ", ".join(self.addresses),
                "wsgistack.upstream_status": ", ".join(self.statuses),
                "wsgistack.upstream_response_time": ", ".join(self.times)}
