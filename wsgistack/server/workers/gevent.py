"""The gevent worker: the standard library monkey-patched before the app is imported, a greenlet per
connection. An app that waits on the network (a slow API, a database) yields to the others instead of
holding a thread, so thousands of such waits cost little.

The connection code is the same as the sync and thread workers' (`protocols/http.py`): under monkey
patching its blocking socket calls become cooperative. --timeout is a per-request deadline here
(`server/request_deadline.py`): a request that waits past it is cut, with its greenlet's stack logged; a
greenlet that never yields stops the heartbeat and the master kills the worker, as in the other classes.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from wsgistack.server.context import ServeContext
from wsgistack.server.protocols.choose import blocking_connection
from wsgistack.server.request_deadline import RequestTimedOut, with_deadline
from wsgistack.server.sockets import accept_backlog, unread_bytes
from wsgistack.server.workers.base import STOP_GRACE_IDLE, Worker
from wsgistack.server.workers.sync import serve_blocking_self_check

log = logging.getLogger("wsgistack.server")


class GeventWorker(Worker):
    """Greenlets under a pool of --worker-connections; the main greenlet beats and watches for stops."""

    multithread = True  # greenlets interleave like threads

    def before_boot(self) -> None:
        """Patch before anything else imports socket, ssl, threading or time (the app above all)."""
        from gevent import monkey

        monkey.patch_all()
        log.info("worker %s: gevent monkey-patched the standard library before loading the app", os.getpid())

    def run(self) -> None:
        """Accept on every listener until stopped; then wait for connections up to --graceful-timeout."""
        import gevent
        from gevent.pool import Group
        from gevent.server import StreamServer

        settings = self.settings
        if settings.timeout and self.app is not None:
            self.app = with_deadline(self.app, settings.timeout)
        self.ctx = self.serve_context(keep_alive=lambda: self.alive and settings.keep_alive > 0,
                                      on_request=self.count_request, beat=lambda: None)
        from gevent.event import Event

        self.stop_requested = Event()
        group = Group()
        self.connection_limit = settings.worker_connections
        self.open: dict = {}  # greenlets of the connections under --worker-connections, oldest first
        # greenlets waiting for a request (a new connection's first, a keep-alive one's next) -> their
        # socket's descriptor, oldest first
        self.idle: dict = {}
        servers = []
        from gevent import socket as green

        self.report_booted()  # before any listener serves (see EventWorker)
        for listener in self.listeners:
            # the master made this socket before we patched: wrap its descriptor in a cooperative socket
            sock = green.socket(listener.sock.family, listener.sock.type, fileno=os.dup(listener.sock.fileno()))
            listener.sock.close()
            server = StreamServer(sock, self._handle, spawn=group.spawn)  # unbounded: _admit applies the cap
            server.start()
            servers.append((server, sock))
        interval = self.beat_interval(settings)
        # a greenlet stuck in a blocking call or a CPU loop blocks this one too: the heartbeat stops, the
        # master notices after --timeout. A greenlet that sleeps or waits on a patched socket is not stuck.
        while self.alive:
            self.heartbeat.beat()
            if not self.check_parent():
                break
            self.stop_requested.wait(interval)
        for server, sock in servers:
            if self.empty_backlog:
                # the whole server stops (its door is shut): take what waits in the listen queue first, all
                # of it (it is finite), then close
                server.stop_accepting()
                self.connection_limit = sys.maxsize
                for conn, peer in accept_backlog(sock):
                    group.spawn(self._handle, conn, peer)
            server.close()
        waited = 0.0
        # the group, not self.open: a connection accepted just before the close has its greenlet spawned but
        # not started yet (not in self.open); killing it with the group would drop a connection we accepted
        while len(group) and waited < settings.graceful_timeout:
            self.heartbeat.beat()
            if waited >= STOP_GRACE_IDLE:
                # idle keep-alive connections had their moment for a last request (answered with close)
                gevent.killall([g for g, fd in list(self.idle.items()) if not unread_bytes(fd)], block=False)
            gevent.sleep(0.1)
            waited += 0.1
        group.kill(block=False)

    def answer_self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        """The (monkey-patched) blocking connection serves the probe (see Worker.report_booted)."""
        return serve_blocking_self_check(ctx, request)

    def wake(self) -> None:
        """Stop accepting at once (max-requests, TERM): the main greenlet is waiting on this event."""
        stop = getattr(self, "stop_requested", None)
        if stop is not None:
            stop.set()

    def _admit(self, me) -> bool:
        """Count a new connection. At --worker-connections the oldest idle one is closed to make room, so
        idle connections cannot lock new clients out; False when every connection is in a request."""
        if len(self.open) >= self.connection_limit:
            # a connection whose request bytes are already here is not idle: closing it would reset them
            victim = next((g for g, fd in self.idle.items() if not unread_bytes(fd)), None)
            if victim is None:
                return False
            del self.idle[victim]
            self.open.pop(victim, None)
            victim.kill(block=False)
        self.open[me] = None
        return True

    def _handle(self, sock: socket.socket, peer) -> None:
        """One connection: serve requests while the client keeps it alive."""
        import gevent
        from gevent.socket import wait_read

        me = gevent.getcurrent()
        if not self._admit(me):
            sock.close()  # every other connection is in a request: refuse rather than starve them
            return
        # a timeout (no system call under gevent) bounds each cooperative wait on a patched socket: with
        # none, a read would wait for a silent client for good (see BlockingConnection.try_first)
        sock.settimeout(self.ctx.client_timeout)
        conn = blocking_connection(self.ctx.protocol)(sock, peer, self.ctx)
        wait = self.ctx.client_timeout  # for the first byte; then --keep-alive between requests
        try:
            while True:
                if not conn.parser.started:
                    self.idle[me] = sock.fileno()
                try:
                    wait_read(sock.fileno(), timeout=wait)
                except TimeoutError:
                    return
                finally:
                    self.idle.pop(me, None)
                if not conn.serve():
                    return
                wait = self.settings.keep_alive
        except OSError:
            pass
        except RequestTimedOut:
            # the deadline fired while the response was being written: it cannot be finished, only cut
            log.info("worker %s: a response past --timeout was cut; its connection is closed", os.getpid())
        finally:
            conn.close()
            self.open.pop(me, None)
