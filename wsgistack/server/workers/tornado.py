"""The tornado worker: Tornado's IOLoop and IOStream in front, the WSGI app in a thread pool.

This is the classic "Tornado's non-blocking server in front of a WSGI app" deployment, under wsgistack's
master (signals, timeouts, reloads, logs). Tornado's IOStreams do every read and write on its IOLoop. The
accepts are the event worker's (server/loop_acceptor.py), which leave a burst of connections to a sibling
that holds fewer: tornado's TCPServer took all it could (wrk's 64 connections on 2 workers: 64/0 in 4 of
13 warm runs, at half the req/s of an even split). Each request is framed by wsgistack's own strict parser
and each response by our head writer (`protocols/http_tornado.py`), so what reaches the app, and what a
malformed request is answered, are the same as in the other worker classes. docs/workers.md says what
still differs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from typing import Any

from wsgistack.event_loop import new_event_loop
from wsgistack.server.app_threads import AppThreads, app_threads_cap
from wsgistack.server.context import ServeContext
from wsgistack.server.loop_acceptor import LoopAcceptor
from wsgistack.server.protocols.http_tornado import RECV_SIZE, TornadoConnections, TornadoHTTPConnection
from wsgistack.server.sockets import accept_backlog
from wsgistack.server.workers.base import SELF_CHECK_TIMEOUT, STOP_GRACE_IDLE, Worker

log = logging.getLogger("wsgistack.server")


class TornadoWorker(Worker):
    """Tornado's TCPServer on this worker's listeners; the app in a pool of `--threads` threads."""

    multithread = True

    def run(self) -> None:
        """Serve until stopped, then let requests in flight finish (up to --graceful-timeout)."""
        from tornado.ioloop import IOLoop

        settings = self.settings
        asyncio.set_event_loop(new_event_loop())
        self.ioloop = IOLoop.current()
        self.pool = AppThreads(settings.threads, maximum=app_threads_cap(settings))
        # a response keeps its connection unless the worker stops, or hands it to a sibling (accept_share.py)
        self.ctx = self.serve_context(
            keep_alive=lambda: self.alive and settings.keep_alive > 0 and self.acceptor.keeps_connection(),
            on_request=self.count_request, beat=lambda: None)
        self.connections = TornadoConnections(self.pool.submit, settings.worker_connections)
        self.server = _tcp_server(self.ctx, self.connections)
        for listener in self.listeners:
            listener.sock.setblocking(False)
        self.stopping_since: float | None = None
        # the task serving each accepted connection, from the accept on: the worker's load for the fair share
        self.adopting: set[asyncio.Task] = set()
        self.ioloop.add_handler(self.wakeup_r, self._on_wakeup, IOLoop.READ)
        adopting = self.adopting
        self.acceptor = LoopAcceptor(asyncio.get_event_loop(), [listener.sock for listener in self.listeners],
                                     self._adopt_accepted, lambda: len(adopting), self.accept_share)
        self.report_booted()  # before any listener serves (see EventWorker)
        if self.stopping_since is None:
            self.acceptor.start()
        self._tick()
        try:
            self.ioloop.start()
        finally:
            for conn in list(self.connections.open):
                conn.close()
            self.pool.shutdown()

    def answer_self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        """The IOLoop, an IOStream and the tornado protocol serve the probe (see Worker.report_booted)."""
        return self.ioloop.run_sync(lambda: self._self_check(ctx, request), timeout=SELF_CHECK_TIMEOUT)

    async def _self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        from tornado.iostream import IOStream

        loop = asyncio.get_running_loop()
        client, server = socket.socketpair()
        with client:
            client.setblocking(False)
            # its own registry: the probe is no connection of the worker's
            connection = TornadoHTTPConnection(IOStream(server, read_chunk_size=RECV_SIZE), "", ctx,
                                               TornadoConnections(self.pool.submit, 1))
            served = asyncio.ensure_future(connection.serve())
            await loop.sock_sendall(client, request)
            answer = b""
            while data := await loop.sock_recv(client, 65536):
                answer += data
            await served
            return answer

    def _on_wakeup(self, fd: int, events: int) -> None:
        """A signal or a thread woke us: start stopping now rather than at the next tick."""
        self.drain_wakeups()
        if not self.alive and self.stopping_since is None:
            self._begin_stop(time.monotonic())

    def _begin_stop(self, now: float) -> None:
        self.stopping_since = now
        self.acceptor.stop()
        if self.empty_backlog:  # the whole server stops: first take what waits in the listen queues
            self.connections.limit = sys.maxsize  # what waits is finite (the door is shut): take all of it
            for listener in self.listeners:
                if listener.sock.fileno() >= 0:
                    for sock, address in accept_backlog(listener.sock):
                        self._adopt(sock, address)
        self.close_listeners()

    def _adopt_accepted(self, sock: socket.socket, listening: socket.socket) -> None:
        """A connection the acceptor took: served with its peer's address, as tornado's accept gives it."""
        try:
            address = sock.getpeername()
        except OSError:  # the client is already gone
            sock.close()
            return
        self._adopt(sock, address)

    def _adopt(self, sock: socket.socket, address: Any) -> None:
        """Serve an accepted connection as tornado's TCPServer serves those it accepts."""
        from tornado.iostream import IOStream

        stream = IOStream(sock, read_chunk_size=RECV_SIZE)
        task = asyncio.ensure_future(self.server.handle_stream(stream, address))
        self.adopting.add(task)  # counted until it is served (the loop holds tasks weakly)
        task.add_done_callback(self.adopting.discard)
        if self.accept_share is not None:  # after the discard: the siblings see the load without it
            task.add_done_callback(lambda _: self.acceptor.closed_one())

    def _tick(self) -> None:
        """Once per beat interval: heartbeat, deadlines, and the graceful stop."""
        now = time.monotonic()
        self.check_parent()
        if not self.alive and self.stopping_since is None:
            self._begin_stop(now)
        timeout = self.settings.timeout
        oldest = self.connections.oldest_request()
        if not timeout or oldest is None or now - oldest < timeout:
            self.heartbeat.beat()
        self.acceptor.rebalance()
        stopping = self.stopping_since
        for conn in list(self.connections.open):
            # parked keep-alive connections get a moment for a last request (answered with Connection: close)
            # before they are closed, so a client that is already sending is not cut off
            if stopping is not None and now - stopping >= STOP_GRACE_IDLE and conn.close_if_idle():
                continue
            conn.expire(now)
        drained = not self.connections.open and not self.adopting
        if stopping is not None and (drained or self.deadline_passed(stopping)):
            self.ioloop.stop()
            return
        self.ioloop.call_later(self.beat_interval(self.settings) if self.alive else 0.1, self._tick)


def _tcp_server(ctx: ServeContext, connections: TornadoConnections) -> Any:
    """Tornado's TCPServer handing each accepted IOStream to our connection (tornado is imported late)."""
    from tornado.tcpserver import TCPServer

    class Server(TCPServer):
        async def handle_stream(self, stream: Any, address: Any) -> None:
            try:
                stream.set_nodelay(True)  # a no-op for unix sockets
                conn = TornadoHTTPConnection(stream, address, ctx, connections)
            except OSError:  # the client is already gone (getsockname, setsockopt failed)
                stream.close()
                return
            await conn.serve()

    return Server(read_chunk_size=RECV_SIZE)
