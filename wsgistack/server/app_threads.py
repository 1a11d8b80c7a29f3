"""The threads that run app calls handed over through a queue: a fixed number (--threads N), or as many as
the calls need (--threads auto, the default).

Lighter than concurrent.futures.ThreadPoolExecutor on the hot path: no Future (with its Condition and
locks) per request, just a C-implemented SimpleQueue. Nobody waits on a result: the call reports back itself.

Sizing itself: when a call finds every thread in a call, the pool looks at the calls in progress. If they
spend most of their time off the CPU (waiting on a database, another service, a sleep), threads are added
for every call waiting, so none waits behind a blocked one. If they run on the CPU, none is added: Python
runs one thread at a time (the GIL), and more threads would only take turns, which costs throughput. A call
starts holding the GIL, so its time off the CPU is time it gave the GIL away, in I/O or a sleep. A thread
idle for IDLE_EXIT seconds leaves, down to the minimum.
"""

from __future__ import annotations

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
OFF_CPU = 0.5  # calls in progress off the CPU more than this share of their time: add threads
YOUNG = 0.002  # calls younger than this (seconds) tell too little; the pool looks again this much later


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
        self.lock = threading.Lock()  # guards `threads`, `serial` and the look-again timer (not the hot path)
        self.serial = 0
        self.stopping = False
        # auto: each thread's call in progress, as (thread CPU clock id, wall start, CPU start); a thread
        # writes and removes only its own entry
        self.running: dict[int, tuple[int, float, float]] = {}
        self.again: threading.Timer | None = None
        for _ in range(self.minimum):
            self._add_thread()

    @property
    def size(self) -> int:
        """Threads now."""
        return len(self.threads)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the next free thread."""
        self.calls.put((fn, args))
        if not self.fixed and len(self.running) >= len(self.threads) and len(self.threads) < self.maximum:
            self._maybe_grow()

    def shutdown(self) -> None:
        """Let the threads end once the calls queued before this one are done."""
        with self.lock:
            self.stopping = True
            count = len(self.threads)
            if self.again is not None:
                self.again.cancel()
        for _ in range(count):
            self.calls.put(_STOP)

    # -- sizing ----------------------------------------------------------------------------------------

    def _maybe_grow(self) -> None:
        """Every thread is in a call: threads for the waiting calls if the calls in progress are blocked."""
        verdict = self._blocked()
        with self.lock:
            if self.stopping:
                return
            if verdict is None:  # too young to tell: look again shortly (one timer at a time)
                if self.again is None:
                    self.again = threading.Timer(YOUNG, self._look_again)
                    self.again.daemon = True
                    self.again.start()
                return
            if verdict:
                waiting = self.calls.qsize()
                for _ in range(min(max(waiting, 1), self.maximum - len(self.threads))):
                    self._add_thread()

    def _look_again(self) -> None:
        with self.lock:
            self.again = None
        if self.calls.qsize() and len(self.running) >= len(self.threads) and len(self.threads) < self.maximum:
            self._maybe_grow()

    def _blocked(self) -> bool | None:
        """Whether the calls in progress spend most of their time off the CPU; None when they are too young."""
        now = time.monotonic()
        wall = cpu = 0.0
        for clock, started, cpu_started in list(self.running.values())[:16]:  # a sample is enough
            try:
                cpu += time.clock_gettime(clock) - cpu_started
            except OSError:  # the thread ended meanwhile
                continue
            wall += now - started
        if wall < YOUNG:
            return None
        return 1.0 - cpu / wall > OFF_CPU

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
        ident = threading.get_ident()
        clock = time.pthread_getcpuclockid(ident) if not self.fixed else 0
        running = self.running
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
            fn, args = item
            if not self.fixed:
                running[ident] = (clock, time.monotonic(), time.clock_gettime(clock))
            try:
                fn(*args)
            except BaseException:
                log.exception("error in an app thread")
            finally:
                if not self.fixed:
                    running.pop(ident, None)
