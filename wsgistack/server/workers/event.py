"""The event worker: an asyncio loop (uvloop when installed) owns every socket; apps run in a thread pool.

Idle keep-alive connections and slow clients cost a parser and a few hundred bytes, not a thread. The loop
beats the heartbeat once a second unless an app call has run past --timeout, so a stuck app thread gets
the worker killed (with its stacks logged) exactly as in the other worker classes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from wsgistack.server.app_threads import AppThreads
from wsgistack.server.protocols.http_event import ConnectionRegistry, EventHTTPProtocol
from wsgistack.server.workers.base import Worker

log = logging.getLogger("wsgistack.server")

STOP_GRACE_IDLE = 1.0  # on a graceful stop, idle keep-alive connections get this long for a last request


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, asyncio's own otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


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
        pool = None if self.inline else AppThreads(settings.threads)
        self.registry = ConnectionRegistry(settings.worker_connections, pool)
        self.ctx = self.serve_context(keep_alive=lambda: self.alive and settings.keep_alive > 0,
                                      on_request=self.count_request, beat=lambda: None)
        self.loop.add_reader(self.wakeup_r, self._on_wakeup)
        self.servers: list[asyncio.AbstractServer] = []
        self.stopping_since: float | None = None
        for listener in self.listeners:
            listener.sock.setblocking(False)
            server = self.loop.run_until_complete(self.loop.create_server(
                lambda: EventHTTPProtocol(self.ctx, self.loop, self.registry, run_in_pool=not self.inline),
                sock=listener.sock, backlog=settings.backlog))
            self.servers.append(server)
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
        if self.alive and not self.parent_alive():
            log.warning("worker %s: the master is gone; stopping", os.getpid())
            self.alive = False
        if not self.alive and self.stopping_since is None:
            self._begin_stop(now)
        registry = self.registry
        oldest = registry.oldest_request()
        if not self.settings.timeout or oldest is None or now - oldest < self.settings.timeout:
            self.heartbeat.beat()
        for proto in list(registry.connections):
            if self.stopping_since is not None and proto.idle() and now - self.stopping_since > STOP_GRACE_IDLE:
                proto._close()
            else:
                proto.expire(now)
        if self.stopping_since is not None and (not registry.connections or self.deadline_passed(self.stopping_since)):
            self.loop.stop()
            return
        self.loop.call_later(self.beat_interval(self.settings) if self.alive else 0.1, self._tick)

    def _on_wakeup(self) -> None:
        """A signal or a thread woke us: start stopping now rather than at the next tick."""
        self.drain_wakeups()
        if not self.alive and self.stopping_since is None:
            self._begin_stop(time.monotonic())

    def _begin_stop(self, now: float) -> None:
        self.stopping_since = now
        for server in self.servers:
            server.close()
