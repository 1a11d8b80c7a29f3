"""The thread worker: a pool of threads runs the app; the main thread accepts, parks idle connections (kept
alive, or new with no byte of a request yet) in a selector, and beats the heartbeat only while no app call
is stuck past --timeout.

The workers share the listen queue fairly (server/accept_share.py, as the event worker): one that holds far
more connections than a sibling leaves the next ones to it for a moment, where it used to take everything
queued, and then served a whole load test's connections while its sibling had none.
"""

from __future__ import annotations

import logging
import queue
import selectors
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from wsgistack.server.accept_share import PAUSE, AcceptPacer, wide_slack
from wsgistack.server.context import ServeContext
from wsgistack.server.protocols.choose import blocking_connection
from wsgistack.server.protocols.http import HTTPConnection
from wsgistack.server.sockets import defer_accept, unread_bytes
from wsgistack.server.workers.base import STOP_GRACE_IDLE, Worker
from wsgistack.server.workers.sync import serve_blocking_self_check

# --threads auto: the thread worker holds a connection per thread, so its pool stays fixed at this size
THREAD_WORKER_THREADS = 4

log = logging.getLogger("wsgistack.server")


class ThreadWorker(Worker):
    """Keep-alive and pipelining with a bounded pool of `--threads` app threads."""

    multithread = True

    def run(self) -> None:
        """The selector loop: accept when a thread is free, hand ready connections to the pool."""
        settings = self.settings
        self.selector = selectors.DefaultSelector()
        threads = settings.threads or THREAD_WORKER_THREADS
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="wsgistack-app")
        self.returned: queue.SimpleQueue[tuple[HTTPConnection, bool]] = queue.SimpleQueue()
        # parked connections -> when they are closed if still idle; in the order they became idle
        self.idle: dict[HTTPConnection, float] = {}
        self.busy = 0  # connections being served by the pool
        self.inflight: dict[int, float] = {}  # app thread id -> when its current request started
        self.lock = threading.Lock()
        self.accepting = False
        self.emptying: list = []  # listeners whose queue this stopping worker still empties
        # fair shares of the listen queue: the policy, what this worker accepted, the end of a wait for siblings
        self.pacer = AcceptPacer(self.accept_share, wide_slack) if self.accept_share is not None else None
        self.accepted = 0
        self.resume_at: float | None = None
        # a response keeps its connection unless the worker stops, or hands it to a sibling (accept_share.py)
        pacer = self.pacer
        self.ctx = self.serve_context(
            keep_alive=lambda: (self.alive and settings.keep_alive > 0
                                and (pacer is None or pacer.keeps_connection())),
            on_request=self._request_started, beat=lambda: None)
        self.connection_class = blocking_connection(self.ctx.protocol)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "wakeup")
        self.report_booted()
        for listener in self.listeners:
            listener.sock.setblocking(False)
            # a new connection then comes with its request: no parking round for it, and silent clients
            # wait in the kernel rather than in a slot (those it hands over anyway are parked, see _accept)
            defer_accept(listener.sock, self.ctx.client_timeout)
        self._set_accepting(True)
        self._publish()
        interval = self.beat_interval(settings)
        stopping_since = None
        try:
            while True:
                if not self.check_parent():
                    if stopping_since is None:
                        stopping_since = time.monotonic()
                        self._begin_stop()
                    done = not self.busy and not self.idle and not self.emptying
                    if done or self.deadline_passed(stopping_since):
                        return
                if self._healthy():
                    self.heartbeat.beat()
                wait = interval if self.resume_at is None else min(interval, self.resume_at - time.monotonic())
                for key, _ in self.selector.select(max(0.0, wait)):
                    if key.data == "wakeup":
                        self.drain_wakeups()
                    elif key.data == "listener":
                        self._accept(key.fileobj)
                    else:
                        self._dispatch(key.data)
                self._take_returned()
                self._close_idle(stopping_since)
                self._publish()
                self._resume_if_due()
                if self.ctx.metrics is not None:  # connections handed to the pool: on a thread, or waiting
                    self.ctx.metrics.app_threads(min(self.busy, threads), max(0, self.busy - threads))
        finally:
            for conn in list(self.idle):
                conn.close()
            self.pool.shutdown(wait=False, cancel_futures=True)

    # -- health ----------------------------------------------------------------------------------------

    def answer_self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        """The blocking connection serves the probe, as an app thread would (see Worker.report_booted)."""
        return serve_blocking_self_check(ctx, request)

    def _request_started(self) -> None:
        with self.lock:  # with _accept_one's: nothing is accepted once a request was the worker's last
            self.inflight[threading.get_ident()] = time.monotonic()
            self.count_request()

    def _healthy(self) -> bool:
        """False while some app call has run longer than --timeout: the master then sees silence."""
        timeout = self.settings.timeout
        if not timeout:
            return True
        with self.lock:
            oldest = min(self.inflight.values(), default=None)
        return oldest is None or time.monotonic() - oldest < timeout

    # -- connections -----------------------------------------------------------------------------------

    def _set_accepting(self, on: bool) -> None:
        # accept up to --worker-connections and queue ready connections FIFO for the pool: accepting only
        # while a thread was free let parked keep-alive connections starve queued ones (p99 in seconds)
        if on == self.accepting or on and self.resume_at is not None:  # (a wait for siblings ends by itself)
            return
        self.accepting = on
        for listener in self.listeners:
            if listener.sock.fileno() < 0:
                continue
            if on:
                self.selector.register(listener.sock, selectors.EVENT_READ, "listener")
            else:
                self.selector.unregister(listener.sock)

    def _begin_stop(self) -> None:
        """Stop accepting; when the whole server stops, first empty the listen queues (see base)."""
        self.resume_at = None
        if self.accept_share is not None:
            self.accept_share.stop()
        if not self.empty_backlog:
            self._set_accepting(False)
            self.close_listeners()
            return
        # the queues are emptied through the usual accept path (up to --worker-connections at a time;
        # the door is shut, so what waits is finite); each listener closes once accept() says it is empty
        self.emptying = [listener.sock for listener in self.listeners]
        self._set_accepting(True)
        for sock in list(self.emptying):
            self._accept(sock)

    def _emptied(self, listener) -> None:
        if listener in self.emptying:
            self.emptying.remove(listener)
            if self.accepting:
                self.selector.unregister(listener)
            listener.close()
        if not self.emptying:
            self.accepting = False

    def _capacity_left(self) -> bool:
        return self.busy + len(self.idle) < self.settings.worker_connections

    # -- fair shares of the listen queue ----------------------------------------------------------------

    def _publish(self) -> None:
        """Tell the siblings how many connections this worker holds (not once it stopped accepting)."""
        if self.accept_share is not None and self.alive:
            self.accept_share.publish(self.busy + len(self.idle), self.accepted)
            if self.pacer is not None:
                self.pacer.rebalance(self.busy + len(self.idle))

    def _leave_to_siblings(self) -> None:
        """Far ahead of a sibling: no accept for a moment (or until this worker holds fewer)."""
        self._set_accepting(False)
        assert self.pacer is not None
        self.pacer.begin_wait()
        self.resume_at = time.monotonic() + PAUSE

    def _resume_if_due(self) -> None:
        """End a wait for the siblings once its time is up or this worker holds fewer; take over from them
        when they took nothing for a while (AcceptPacer)."""
        if self.resume_at is None or self.pacer is None or not self.alive:
            return
        if time.monotonic() < self.resume_at and self.pacer.ahead(self.busy + len(self.idle)):
            return
        self.resume_at = None
        if self.pacer.end_wait():
            self.pacer.take_over()
            before = self.accepted
            self._set_accepting(True)
            for listener in self.listeners:
                if self.accepting and listener.sock.fileno() >= 0:
                    self._accept(listener.sock)
            self.pacer.took_over(self.accepted - before)
        elif self._capacity_left() or self.idle:
            self._set_accepting(True)

    def _accept(self, listener) -> None:
        while self.alive or listener in self.emptying:
            full = not self._capacity_left()
            if full and not self.idle:
                self._set_accepting(False)  # every connection is in a request: new ones wait in the backlog
                return
            if self.pacer is not None and self.alive and not self.pacer.may_accept(self.busy + len(self.idle)):
                self._leave_to_siblings()
                return
            try:
                sock, peer = self._accept_one(listener)
            except BlockingIOError:
                if not self.alive:
                    self._emptied(listener)
                return
            except (InterruptedError, ConnectionAbortedError):
                return
            if sock is None:
                return
            # at --worker-connections a new client takes the place of the connection idle the longest (shed
            # only once there is a client to admit: a sibling worker may have won the accept)
            admitted_all = not full or self._shed_oldest_idle()
            conn = self.connection_class(sock, peer, self.ctx)
            if unread_bytes(sock.fileno()):
                self._submit(conn)
            else:
                # nothing sent yet: wait in the selector, not in a thread, and be sheddable while idle
                self._park(conn, time.monotonic() + self.ctx.client_timeout)
            self.accepted += 1
            self._publish()  # at once: a sibling deciding meanwhile sees this worker as it is
            if not admitted_all:
                self._set_accepting(False)  # the idle ones were all receiving a request: no more for now
                return

    def _accept_one(self, listener) -> tuple:
        if not self.max_requests:
            return listener.accept()
        # with --max-requests, under the lock _request_started counts in: once an app thread started the
        # worker's last request nothing more is accepted (the lock costs a few percent of new connections)
        with self.lock:
            return listener.accept() if self.alive or self.emptying else (None, None)

    def _shed_oldest_idle(self) -> bool:
        """At --worker-connections, close the connection idle the longest (never one with a request in it)."""
        for conn in self.idle:
            if self._close_if_idle(conn):
                return True
        return False

    def _park(self, conn: HTTPConnection, until: float) -> None:
        self.idle[conn] = until
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _close_if_idle(self, conn: HTTPConnection) -> bool:
        """Close a parked connection unless request bytes wait in the kernel (it is dispatched then)."""
        if unread_bytes(conn.sock.fileno()):
            return False
        self.selector.unregister(conn.sock)
        del self.idle[conn]
        conn.close()
        return True

    def _dispatch(self, conn: HTTPConnection) -> None:
        if self.idle.pop(conn, None) is None:
            return  # shed (or closed) earlier in the same round of events
        self.selector.unregister(conn.sock)
        self._submit(conn)

    def _submit(self, conn: HTTPConnection) -> None:
        self.busy += 1
        self.pool.submit(self._serve, conn)

    def _serve(self, conn: HTTPConnection) -> None:
        """Runs in an app thread."""
        keep = False
        try:
            keep = conn.serve()
        except Exception:
            log.exception("error serving a connection")
        finally:
            with self.lock:
                self.inflight.pop(threading.get_ident(), None)
            self.returned.put((conn, keep))
            self.wake()

    def _take_returned(self) -> None:
        while True:
            try:
                conn, keep = self.returned.get_nowait()
            except queue.Empty:
                break
            self.busy -= 1
            if keep and not conn.closed:
                self._park(conn, time.monotonic() + self.settings.keep_alive)
            else:
                conn.close()
        if (self.alive or self.emptying) and (self._capacity_left() or self.idle):
            self._set_accepting(True)

    def _close_idle(self, stopping_since: float | None) -> None:
        now = time.monotonic()
        # on a graceful stop a parked connection gets one more request (answered with Connection: close)
        # for a moment, so a client that is already sending is not cut off mid-request
        stopped = stopping_since is not None and now - stopping_since >= STOP_GRACE_IDLE
        for conn, until in list(self.idle.items()):
            if now >= until or stopped:
                self._close_if_idle(conn)
