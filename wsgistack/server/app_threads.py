"""The threads that run app calls handed over through a queue: a fixed number (--threads N), or as many as
the calls need (the default).

Lighter than concurrent.futures.ThreadPoolExecutor on the hot path: no Future (with its Condition and
locks) per request, just a C-implemented SimpleQueue. Nobody waits on a result: the call reports back itself.

Sizing itself: a call that finds calls already waiting may add a thread, but only while the process has CPU
to spare. Calls that wait on I/O (a database, another service) leave the process idle while they queue, so
threads are added until the waiting calls are taken at once; calls that are short and CPU-bound keep the
process busy, and more threads would only take turns at the GIL (a convoy that costs throughput), so none
are added. A thread idle for IDLE_EXIT seconds leaves, down to the minimum.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wsgistack.server")

_STOP = None
MINIMUM = 2  # threads a self-sizing pool keeps: one call may block without the others waiting on it
IDLE_EXIT = 10.0  # seconds a thread beyond the minimum waits for a call before it leaves
# A thread is added only while the process used less than BUSY_SHARE of one core over the last sample (at
# least WINDOW long): the GIL lets Python run on one core at a time.
WINDOW = 0.005
BUSY_SHARE = 0.7
# Calls waiting this long for a thread allow a thread more whatever the CPU says: a burst of CPU-bound
# calls must not hold up one that blocks behind them for long.
STARVED = 0.2


def app_threads_cap(settings: Any) -> int:
    """--max-threads, or one thread per connection a worker may hold (--worker-connections)."""
    return settings.max_threads or settings.worker_connections


class AppThreads:
    """Threads executing submitted calls in arrival order: `size` of them, or (size None) between MINIMUM and
    `maximum` as the calls need."""

    def __init__(self, size: int | None, name: str = "wsgistack-app", maximum: int = 1000):
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.name = name
        self.fixed = size is not None
        self.maximum = size if size is not None else max(maximum, MINIMUM)
        self.minimum = size if size is not None else MINIMUM
        self.threads: set[threading.Thread] = set()
        self.lock = threading.Lock()  # guards `threads`, `serial` and the CPU sample (not the hot path)
        self.serial = 0
        self.sampled_at = time.monotonic()
        self.sampled_cpu = time.process_time()
        self.share = 0.0  # the process's CPU (cores) over the last sample
        self.stopping = False
        self.last_wait = 0.0  # how long the call a thread took last had waited for it (one write, no lock)
        self.submitted = 0  # calls handed over (written by the submitting thread only)
        self.finished = 0  # calls done, as a thread last saw the count (itertools.count's next() is atomic)
        self._finishing = itertools.count(1)
        for _ in range(self.minimum):
            self._add_thread()

    @property
    def size(self) -> int:
        """Threads now."""
        return len(self.threads)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the next free thread."""
        self.calls.put((fn, args, 0.0 if self.fixed else time.monotonic()))
        if not self.fixed:
            self.submitted += 1
            # every thread is in a call (the ones counted finished may lag by a call: enough for a heuristic)
            if self.submitted - self.finished >= len(self.threads) and len(self.threads) < self.maximum:
                self._maybe_grow()

    def shutdown(self) -> None:
        """Let the threads end once the calls queued before this one are done."""
        with self.lock:
            self.stopping = True
            count = len(self.threads)
        for _ in range(count):
            self.calls.put(_STOP)

    # -- sizing ----------------------------------------------------------------------------------------

    def _maybe_grow(self) -> None:
        """Calls are waiting: a thread more if the process has CPU to spare (or a call waits too long)."""
        now = time.monotonic()
        with self.lock:
            elapsed = now - self.sampled_at
            if elapsed >= WINDOW:  # a new CPU sample; between samples the last one stands
                cpu = time.process_time()
                self.share = (cpu - self.sampled_cpu) / elapsed
                self.sampled_at, self.sampled_cpu = now, cpu
            if self.stopping or len(self.threads) >= self.maximum:
                return
            if self.share < BUSY_SHARE or self.last_wait > STARVED:
                self._add_thread()

    def _add_thread(self) -> None:
        self.serial += 1
        thread = threading.Thread(target=self._work, name=f"{self.name}_{self.serial}", daemon=True)
        self.threads.add(thread)
        thread.start()

    def _leave(self) -> bool:
        """Whether this idle thread may leave (the pool stays at its minimum)."""
        with self.lock:
            if self.fixed or self.stopping or len(self.threads) <= self.minimum:
                return False
            self.threads.discard(threading.current_thread())
            return True

    # -- the threads -----------------------------------------------------------------------------------

    def _work(self) -> None:
        calls = self.calls
        while True:
            try:
                item = calls.get() if self.fixed else calls.get(timeout=IDLE_EXIT)
            except queue.Empty:
                if self._leave():
                    return
                continue
            if item is _STOP:
                with self.lock:
                    self.threads.discard(threading.current_thread())
                return
            fn, args, queued = item
            if not self.fixed:
                self.last_wait = time.monotonic() - queued
            try:
                fn(*args)
            except BaseException:
                log.exception("error in an app thread")
            if not self.fixed:
                self.finished = next(self._finishing)
