"""The event worker: an asyncio loop (uvloop when installed) owns every socket; apps run in a thread pool.

Idle keep-alive connections and slow clients cost a parser and a few hundred bytes, not a thread. The loop
beats the heartbeat once a second unless an app call has run past --timeout, so a stuck app thread gets
the worker killed (with its stacks logged) exactly as in the other worker classes.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

from wsgistack.event_loop import new_event_loop  # uvloop with it: the master imports it before forking
from wsgistack.server.app_threads import AppThreads, app_threads_cap
from wsgistack.server.context import ServeContext
from wsgistack.server.inline_calls import SLOW, InlineCalls
from wsgistack.server.loop_acceptor import LoopAcceptor
from wsgistack.server.protocols.choose import event_protocol
from wsgistack.server.protocols.http_event import ConnectionRegistry, EventHTTPProtocol
from wsgistack.server.sockets import accept_backlog
from wsgistack.server.workers.base import SELF_CHECK_TIMEOUT, STOP_GRACE_IDLE, Worker

STOP_POLL = 0.05  # how often a stopping worker looks whether its last connection is done


class EventWorker(Worker):
    """One loop for all connections; a bounded pool of `--threads` threads for the app."""

    multithread = True

    def run(self) -> None:
        """Serve until stopped; returns when the last request finished or --graceful-timeout passed."""
        settings = self.settings
        # --threads 1 runs the app inline on the loop: no thread hand-off (see docs/design.md for numbers)
        self.inline = settings.threads == 1
        self.multithread = not self.inline
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        pool = None if self.inline else AppThreads(settings.threads, maximum=app_threads_cap(settings))
        # --threads auto: routes seen to be quicker than a hand-off run on the loop (server/inline_calls.py)
        inline_calls = None
        if pool is not None and settings.threads is None and settings.inline_below > 0:
            inline_calls = InlineCalls(quick=min(settings.inline_below, SLOW / 2))
        self.registry = ConnectionRegistry(settings.worker_connections, pool, inline_calls)
        # a response keeps its connection unless the worker stops, or hands it to a sibling (accept_share.py)
        self.ctx = self.serve_context(
            keep_alive=lambda: self.alive and settings.keep_alive > 0 and self.acceptor.keeps_connection(),
            on_request=self.count_request, beat=lambda: None)
        self.protocol_class = event_protocol(self.ctx.protocol)
        self.loop.add_reader(self.wakeup_r, self._on_wakeup)
        self.stopping_since: float | None = None
        self.tick_handle: asyncio.TimerHandle | None = None
        self.adopting: set[asyncio.Task] = set()  # sockets taken from the listen queue on the way to a transport
        for listener in self.listeners:
            listener.sock.setblocking(False)
        registry = self.registry
        self.acceptor = LoopAcceptor(self.loop, [listener.sock for listener in self.listeners], self._adopt,
                                     lambda: len(registry.connections) + registry.opening, self.accept_share)
        if self.accept_share is not None:
            registry.on_closed = self.acceptor.closed_one
        # the self-check before any listener serves: a real request taken meanwhile could stop the worker
        # (--max-requests 1), and its health check would then say 503
        self.report_booted()
        if self.stopping_since is None:
            self.acceptor.start()
        else:
            self._stop_accepting()
        self._tick()
        try:
            self.loop.run_forever()
        finally:
            for proto in list(self.registry.connections):
                proto.transport.abort()
            if pool is not None:
                pool.shutdown()

    def _tick(self) -> None:
        """Once per beat interval: heartbeat, deadlines, and the graceful stop."""
        now = time.monotonic()
        self.check_parent()
        if not self.alive and self.stopping_since is None:
            self._begin_stop(now)
        registry = self.registry
        oldest = registry.oldest_request()
        if not self.settings.timeout or oldest is None or now - oldest < self.settings.timeout:
            self.heartbeat.beat()
        self.acceptor.rebalance()
        if self.ctx is not None and self.ctx.metrics is not None:
            self.ctx.metrics.connections_now(registry.accepted, len(registry.connections),
                                             registry.refused + registry.shed)
            running, threads = len(registry.inflight), registry.pool.size if registry.pool else 1
            self.ctx.metrics.app_threads(min(running, threads), max(0, running - threads))
        stopping = self.stopping_since
        for proto in list(registry.connections):
            if stopping is not None and now - stopping > STOP_GRACE_IDLE and proto.close_if_idle():
                continue
            proto.expire(now)
        if stopping is not None:
            # a socket accepted just before accepting stopped is served too: its protocol counts in
            # `opening` until connection_made (never long; the grace bounds a transport that never made it)
            drained = not registry.connections and (not registry.opening or now - stopping > STOP_GRACE_IDLE)
            if drained or self.deadline_passed(stopping):
                self.loop.stop()
                return
        self._schedule_tick(self.beat_interval(self.settings) if stopping is None else STOP_POLL)

    def _schedule_tick(self, delay: float) -> None:
        """One chain of ticks: a tick scheduled earlier is replaced."""
        if self.tick_handle is not None:
            self.tick_handle.cancel()
        self.tick_handle = self.loop.call_later(delay, self._tick)

    def _on_wakeup(self) -> None:
        """A signal or a thread woke us: start stopping now rather than at the next tick."""
        self.drain_wakeups()
        if not self.alive and self.stopping_since is None:
            self._begin_stop(time.monotonic())

    def answer_self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        """The loop and the event protocol serve the probe (see Worker.report_booted)."""
        return self.loop.run_until_complete(asyncio.wait_for(self._self_check(ctx, request), SELF_CHECK_TIMEOUT))

    async def _self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        client, server = socket.socketpair()
        with client:
            client.setblocking(False)
            registry = ConnectionRegistry(1, self.registry.pool)  # the probe is no connection of the worker's
            protocol = event_protocol(ctx.protocol)(ctx, self.loop, registry, run_in_pool=not self.inline)
            await self.loop.connect_accepted_socket(lambda: protocol, server)
            await self.loop.sock_sendall(client, request)
            answer = b""
            while data := await self.loop.sock_recv(client, 65536):
                answer += data
            return answer

    def _new_protocol(self) -> EventHTTPProtocol:
        return self.protocol_class(self.ctx, self.loop, self.registry, run_in_pool=not self.inline)

    def _begin_stop(self, now: float) -> None:
        # stop accepting first (the kernel's backlog is shared: the other workers take what waits there),
        # then finish every connection already accepted; look again soon rather than at the next beat
        self.stopping_since = now
        self._stop_accepting()
        self._schedule_tick(STOP_POLL)
        self.registry.on_drained = lambda: self._schedule_tick(0)

    def _stop_accepting(self) -> None:
        """Accept no more; when the whole server stops, first take what waits in the listen queues."""
        self.acceptor.stop()
        if self.empty_backlog:
            self.registry.limit = sys.maxsize  # what waits is finite (the door is shut): take all of it
            for listener in self.listeners:
                if listener.sock.fileno() >= 0:
                    for sock, _ in accept_backlog(listener.sock):
                        self._adopt(sock)
        self.close_listeners()

    def _adopt(self, sock: socket.socket, listening: socket.socket | None = None) -> None:
        """A transport and a protocol for a socket taken from the listen queue."""
        protocol = self._new_protocol()  # counted in registry.opening from here on
        task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: protocol, sock))
        self.adopting.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self.adopting.discard)
