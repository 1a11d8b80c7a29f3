"""Counting the requests a process answers, into its slot: the only metrics code on a request's path.

A request costs one dict lookup and a few stores into shared memory (measured in bench/metrics.py against
the same server without metrics). Workers that run the app in several threads take a lock around the
stores: an increment is a read and a write, and two threads between them would lose one.
"""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_left

from wsgistack.observe.metrics.families import (
    ACTIVE_REQUESTS,
    APP_THREADS_BUSY,
    APP_THREADS_QUEUED,
    CONNECTIONS,
    CONNECTIONS_OPEN,
    CONNECTIONS_REFUSED,
    DURATION_BOUNDS,
    EXCEPTIONS,
    KNOWN_METHODS,
    OTHER,
    REQUEST_BODY_SIZE,
    REQUEST_DURATION,
    RESPONSE_BODY_SIZE,
    SIZE_BOUNDS,
    Family,
)
from wsgistack.observe.metrics.slot import MetricSlot

# what a request-answering process writes into its slot
PROCESS_FAMILIES: tuple[Family, ...] = (
    REQUEST_DURATION, REQUEST_BODY_SIZE, RESPONSE_BODY_SIZE, ACTIVE_REQUESTS, EXCEPTIONS,
    CONNECTIONS, CONNECTIONS_OPEN, CONNECTIONS_REFUSED, APP_THREADS_BUSY, APP_THREADS_QUEUED,
)

_NO_LOCK = contextlib.nullcontext()
_DURATION_SUM = len(DURATION_BOUNDS) + 1
_SIZE_SUM = len(SIZE_BOUNDS) + 1


class RequestRecorder:
    """Counts one process's requests and connections into `slot` (see PROCESS_FAMILIES)."""

    def __init__(self, slot: MetricSlot, threaded: bool = False):
        self.slot = slot
        self.values = slot.values
        self._series: dict[tuple[str, int, str], tuple[int, int, int]] = {}
        self._active = slot.offset(ACTIVE_REQUESTS)
        self._exceptions = slot.offset(EXCEPTIONS)
        self._connections = slot.offset(CONNECTIONS)
        self._open = slot.offset(CONNECTIONS_OPEN)
        self._threads_busy = slot.offset(APP_THREADS_BUSY)
        self._threads_queued = slot.offset(APP_THREADS_QUEUED)
        self._lock = threading.Lock() if threaded else None

    def started(self) -> None:
        """A request reached the app."""
        if self._lock is None:
            self.values[self._active] += 1
        else:
            with self._lock:
                self.values[self._active] += 1

    def finished(self, method: str, status: int, route: str, seconds: float, received: int, sent: int,
                 failed: bool = False) -> None:
        """A request that reached the app was answered (`failed`: the app raised)."""
        if self._lock is None:
            self._count(method, status, route, seconds, received, sent, failed)
        else:
            with self._lock:
                self._count(method, status, route, seconds, received, sent, failed)

    def _count(self, method: str, status: int, route: str, seconds: float, received: int, sent: int,
               failed: bool) -> None:
        key = (method, status, route)
        found = self._series.get(key)
        if found is None:
            found = self._add(key)
        duration, request_size, response_size = found
        values = self.values
        values[duration + bisect_left(DURATION_BOUNDS, seconds)] += 1
        values[duration + _DURATION_SUM] += seconds
        values[request_size + bisect_left(SIZE_BOUNDS, received)] += 1
        if received:  # most requests have no body: a store saved (each costs about a thousand instructions)
            values[request_size + _SIZE_SUM] += received
        values[response_size + bisect_left(SIZE_BOUNDS, sent)] += 1
        if sent:
            values[response_size + _SIZE_SUM] += sent
        values[self._active] -= 1
        if failed:
            values[self._exceptions] += 1

    def _add(self, key: tuple[str, int, str]) -> tuple[int, int, int]:
        method, status, route = key
        labels = (method if method in KNOWN_METHODS else OTHER, str(status), route)
        slot = self.slot
        found = (slot.offset(REQUEST_DURATION, labels), slot.offset(REQUEST_BODY_SIZE, labels),
                 slot.offset(RESPONSE_BODY_SIZE, labels))
        if len(self._series) < 4096:  # a client's made-up methods all fold into _OTHER, but not in this cache
            self._series[key] = found
        return found

    def connection_opened(self) -> None:
        """A connection was accepted."""
        self._add_to(self._connections, 1)
        self._add_to(self._open, 1)

    def connection_closed(self) -> None:
        """An accepted connection closed."""
        self._add_to(self._open, -1)

    def refused(self, reason: str) -> None:
        """A connection or request was refused before the app (a bad request, a peer not allowed)."""
        if self._lock is None:
            self.values[self.slot.offset(CONNECTIONS_REFUSED, (reason,))] += 1
        else:
            with self._lock:
                self.values[self.slot.offset(CONNECTIONS_REFUSED, (reason,))] += 1

    def connections_now(self, accepted: int, open_now: int, shed: int) -> None:
        """An event loop's own counts, written whole at each tick: connections accepted and open, and those
        closed or refused at --worker-connections."""
        self.values[self._connections] = accepted
        self.values[self._open] = open_now
        with self._lock or _NO_LOCK:
            self.values[self.slot.offset(CONNECTIONS_REFUSED, ("worker_connections",))] = shed

    def app_threads(self, busy: int, queued: int) -> None:
        """The app-thread pool as it is now."""
        self.values[self._threads_busy] = busy
        self.values[self._threads_queued] = queued

    def _add_to(self, at: int, amount: float) -> None:
        if self._lock is None:
            self.values[at] += amount
        else:
            with self._lock:
                self.values[at] += amount
