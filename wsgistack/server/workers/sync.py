"""The sync worker: one request at a time per process, blocking I/O, a new connection per request.

Like gunicorn's sync worker it answers `Connection: close`: a slow client holds the whole process, so it is
meant to sit behind a buffering proxy (`wsgistack up`, or nginx).
"""

from __future__ import annotations

import selectors
import socket

from wsgistack.server.context import ServeContext
from wsgistack.server.protocols.choose import blocking_connection
from wsgistack.server.sockets import accept_backlog
from wsgistack.server.workers.base import SELF_CHECK_TIMEOUT, Worker


class SyncWorker(Worker):
    """Accept, serve one request, close; beat the heartbeat between requests."""

    keeps_alive = False

    def run(self) -> None:
        """Wait for connections on every listener; stop when asked, when recycled or when orphaned."""
        ctx = self.serve_context(keep_alive=lambda: False, on_request=self.count_request,
                                 beat=self.heartbeat.beat)
        selector = selectors.DefaultSelector()
        for listener in self.listeners:
            listener.sock.setblocking(False)
            selector.register(listener.sock, selectors.EVENT_READ)
        selector.register(self.wakeup_r, selectors.EVENT_READ)
        self.report_booted()
        interval = self.beat_interval(self.settings)
        while self.alive:
            self.heartbeat.beat()
            if not self.check_parent():
                break
            for key, _ in selector.select(interval):
                if key.fileobj == self.wakeup_r:
                    self.drain_wakeups()
                    continue
                self._accept_and_serve(key.fileobj, ctx)
                if not self.alive:
                    break
        selector.close()
        if self.empty_backlog:
            # the whole server stops (its door is shut): answer what the kernel queued, then close
            for listener in self.listeners:
                for sock, peer in accept_backlog(listener.sock):
                    self.heartbeat.beat()
                    self._serve(sock, peer, ctx)
        self.close_listeners()

    def _accept_and_serve(self, listener: socket.socket, ctx: ServeContext) -> None:
        """Serve a connection waiting on `listener`; with one listener, go on with the next while any waits
        (as gunicorn's sync worker): under load a request then costs no poll and no look at the master,
        whose death the kernel reports with a TERM (Worker._init_signals). With several listeners, one
        connection each: none waits behind another's queue."""
        while self.alive:
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty, or another worker was faster
            except ConnectionAbortedError:
                continue  # that client gave up while queued
            self._serve(sock, peer, ctx)
            if len(self.listeners) > 1:
                return
            self.heartbeat.beat()

    @staticmethod
    def _serve(sock: socket.socket, peer, ctx: ServeContext) -> None:
        conn = blocking_connection(ctx.protocol)(sock, peer, ctx)
        try:
            conn.serve()
        finally:
            conn.close()

    def answer_self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        """The blocking connection serves the probe (see Worker.report_booted)."""
        return serve_blocking_self_check(ctx, request)


def serve_blocking_self_check(ctx: ServeContext, request: bytes) -> bytes:
    """The connection code of the sync, thread and gevent classes answers `request` on a socket pair, in
    this thread (the request and its answer fit in the pair's buffers); the bytes that came back."""
    client, server = socket.socketpair()
    with client:
        client.settimeout(SELF_CHECK_TIMEOUT)
        server.settimeout(SELF_CHECK_TIMEOUT)  # bounded under gevent too (BlockingConnection.try_first)
        client.sendall(request)
        SyncWorker._serve(server, "", ctx)
        return b"".join(iter(lambda: client.recv(65536), b""))
