"""The tornado worker: Tornado's IOLoop and HTTPServer in front, the WSGI app in a thread pool.

This is the classic "Tornado's non-blocking server in front of a WSGI app" deployment, under wsgistack's
master (signals, timeouts, reloads, logs). Tornado parses HTTP and frames responses; wsgistack builds the
environ and runs the app (`wsgi/runner.py`), so errors, streaming, file_wrapper and header checks behave as in
the other worker classes. Where Tornado's HTTP layer differs from ours, docs/workers.md says how.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgistack.http.errors import error_body
from wsgistack.http.parser import RequestHead
from wsgistack.http.response import ResponseError, build_head
from wsgistack.observe.accesslog import AccessRecord
from wsgistack.server.workers.base import Worker
from wsgistack.server.workers.event import new_event_loop
from wsgistack.wsgi.environ import ConnectionInfo, build_environ
from wsgistack.wsgi.input import InputStream
from wsgistack.wsgi.runner import ClientGone, run_app

log = logging.getLogger("wsgistack.server")

FILE_BLOCK = 256 * 1024
STOP_GRACE_IDLE = 1.0


class TornadoWorker(Worker):
    """Tornado's HTTPServer on this worker's listeners; the app in a pool of `--threads` threads."""

    multithread = True

    def run(self) -> None:
        """Serve until stopped, then let requests in flight finish (up to --graceful-timeout)."""
        from tornado.httpserver import HTTPServer
        from tornado.ioloop import IOLoop, PeriodicCallback

        settings = self.settings
        logging.getLogger("tornado.access").disabled = True  # our access log replaces Tornado's
        asyncio.set_event_loop(new_event_loop())
        self.ioloop = IOLoop.current()
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="wsgistack-app")
        self.ctx = self.serve_context(keep_alive=lambda: self.alive and settings.keep_alive > 0,
                                      on_request=self.count_request, beat=lambda: None)
        self.inflight: dict[int, float] = {}
        limits = self.ctx.limits
        head_limit = limits.head_size if (limits.fields or limits.field_size or limits.request_line) else None
        self.server = HTTPServer(
            self._handle,
            no_keep_alive=settings.keep_alive == 0,
            max_header_size=head_limit,
            max_body_size=settings.max_body_size or None,
            idle_connection_timeout=settings.keep_alive or None,
            body_timeout=settings.client_timeout or None,
        )
        for listener in self.listeners:
            listener.sock.setblocking(False)
        self.server.add_sockets([listener.sock for listener in self.listeners])
        self.stopping_since: float | None = None
        self.ioloop.add_handler(self.wakeup_r, self._on_wakeup, IOLoop.READ)
        ticker = PeriodicCallback(self._tick, self.beat_interval(settings) * 1000)
        ticker.start()
        self._tick()
        try:
            self.ioloop.start()
        finally:
            ticker.stop()
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _on_wakeup(self, fd: int, events: int) -> None:
        self.drain_wakeups()
        self._tick()  # a stop (TERM, max-requests) takes effect now, not at the next beat

    def _tick(self) -> None:
        now = time.monotonic()
        if self.alive and not self.parent_alive():
            log.warning("worker %s: the master is gone; stopping", os.getpid())
            self.alive = False
        timeout = self.settings.timeout
        oldest = min(self.inflight.values(), default=None)
        if not timeout or oldest is None or now - oldest < timeout:
            self.heartbeat.beat()
        if self.alive:
            return
        if self.stopping_since is None:
            self.stopping_since = now
            self.server.stop()
        # parked keep-alive connections get a moment for a last request (answered with Connection: close)
        # before they are closed, so a client that is already sending is not cut off
        quiet = not self.inflight and now - self.stopping_since >= STOP_GRACE_IDLE
        if quiet or self.deadline_passed(self.stopping_since):
            self.ioloop.add_callback(self._finish)

    async def _finish(self) -> None:
        if getattr(self, "_finishing", False):
            return
        self._finishing = True
        try:
            await asyncio.wait_for(self.server.close_all_connections(), 1.0)
        except TimeoutError:
            pass
        self.ioloop.stop()

    # -- one request -----------------------------------------------------------------------------------

    def _handle(self, request: Any) -> None:
        """Tornado calls this with the whole request read; the app runs in the pool."""
        head, info = _describe(request)
        refusal = _over_limits(request, self.ctx.limits)
        body = request.body or b""
        chunks = iter([body]) if body else iter(())
        stream = InputStream(lambda: next(chunks, b""))
        environ = build_environ(head, info, stream, self.ctx.errors, self.ctx.trust, True)
        sink = _TornadoSink(request, head, self.ioloop, self.ctx.client_timeout,
                            self.ctx.keep_alive() and head.keep_alive)
        if refusal is not None:
            self.pool.submit(sink.send_error, *refusal)
            return
        self.pool.submit(self._run, environ, sink)

    def _run(self, environ: dict[str, Any], sink: _TornadoSink) -> None:
        import threading

        ident = threading.get_ident()
        self.inflight[ident] = time.monotonic()
        started, clock = time.time(), time.monotonic()
        self.ctx.on_request()
        try:
            result = run_app(self.ctx.app, environ, sink)
            if not sink.finished:
                # the response broke off after its head: the connection cannot carry another one
                self.ioloop.add_callback(sink.request.connection.close)
        finally:
            self.inflight.pop(ident, None)
        if self.ctx.access_log.enabled:
            record = AccessRecord(environ, sink.status or result.status, sink.sent, started,
                                  time.monotonic() - clock)
            self.ioloop.add_callback(self.ctx.access_log.write, record)


def _over_limits(request: Any, limits: Any) -> tuple[int, str] | None:
    """Our per-field limits, which Tornado's parser does not have (it only caps the whole head)."""
    if limits.request_line and len(request.uri) > limits.request_line:
        return 414, "Request-URI too long"
    fields = list(request.headers.get_all())
    if limits.fields and len(fields) > limits.fields:
        return 431, "Too many request header fields"
    if limits.field_size and any(len(name) + len(value) > limits.field_size for name, value in fields):
        return 431, "Request header field too large"
    return None


def _describe(request: Any) -> tuple[RequestHead, ConnectionInfo]:
    """Our RequestHead and ConnectionInfo from Tornado's request, so the environ is built as elsewhere."""
    version = request.version.split("/", 1)[-1]
    headers = [(name, value) for name, value in request.headers.get_all() if "_" not in name]
    connection = request.headers.get("Connection", "").lower()
    keep_alive = ("close" not in connection) if version == "1.1" else ("keep-alive" in connection)
    length = request.headers.get("Content-Length")
    head = RequestHead(method=request.method, target=request.uri, version=version, headers=headers,
                       keep_alive=keep_alive, chunked="Transfer-Encoding" in request.headers,
                       content_length=int(length) if length and length.isdigit() else None,
                       expect_continue=False)
    context = request.connection.context
    address = getattr(context, "address", None)
    if isinstance(address, tuple):
        stream = request.connection.stream
        local = stream.socket.getsockname() if stream.socket is not None else ("", 0)
        info = ConnectionInfo(str(local[0]), str(local[1]), str(address[0]), str(address[1]))
    else:
        info = ConnectionInfo("localhost", "80", "127.0.0.1", "0", unix=True)
    return head, info


class _TornadoSink:
    """The runner's ResponseSink: Tornado frames the response; each write waits until Tornado took it."""

    def __init__(self, request: Any, head: RequestHead, ioloop: Any, timeout: float, keep_alive: bool):
        self.request = request
        self.head = head
        self.ioloop = ioloop
        self.loop = ioloop.asyncio_loop
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.status = 0
        self.sent = 0
        self.remaining: int | None = None
        self.no_body = False
        self.finished = False

    def _call(self, fn: Any, *args: Any) -> Any:
        async def step() -> Any:
            result = fn(*args)
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                return await result
            return result
        try:
            return asyncio.run_coroutine_threadsafe(step(), self.loop).result(self.timeout)
        except Exception as exc:
            raise ClientGone(f"writing the response failed: {exc!r}") from None

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        from tornado import httputil

        # our checks and framing decision; Tornado writes the bytes
        head_bytes, framing, self.keep_alive = build_head(status, headers, self.head.method, self.head.version,
                                                          self.keep_alive)
        self.status = int(status[:3])
        self.no_body = framing.mode == "none"
        self.remaining = framing.remaining if framing.mode == "length" else None
        fields = httputil.HTTPHeaders()
        for line in head_bytes.decode("latin-1").split("\r\n")[1:]:
            if not line:
                continue
            name, _, value = line.partition(": ")
            if name.lower() in ("transfer-encoding", "connection") and not (
                    name.lower() == "connection" and value == "close"):
                continue  # Tornado chunks and manages keep-alive itself
            fields.add(name, value)
        start = httputil.ResponseStartLine("HTTP/1.1", self.status, status[4:])
        if not self.keep_alive:
            # Tornado decides keep-alive from the request alone; our "close" (stopping, errors) must hold too
            self.request.connection._disconnect_on_finish = True
        self._call(self.request.connection.write_headers, start, fields)

    def send_body(self, data: bytes) -> None:
        if self.no_body or not data:
            return
        if self.remaining is not None:
            data = data[: self.remaining]
            self.remaining -= len(data)
            if not data:
                return
        self.sent += len(data)
        self._call(self.request.connection.write, data)

    def send_file(self, fd: int, offset: int, count: int) -> None:
        position, end = offset, offset + count
        while position < end and not self.no_body:
            block = os.pread(fd, min(FILE_BLOCK, end - position), position)
            if not block:
                raise ClientGone("the file ended before its announced length")
            position += len(block)
            self.send_body(block)

    def send_error(self, status: int, reason: str) -> None:
        body = error_body(status, reason)
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                   ("Connection", "close")]
        self.keep_alive = False
        try:
            self.send_head(f"{status} {reason}", headers)
        except ResponseError:
            self.send_head(f"{status} Error", headers)
        self.send_body(body)
        self.end()

    def end(self) -> None:
        self._call(self.request.connection.finish)
        self.finished = True
