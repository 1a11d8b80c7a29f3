"""The threads that run app calls handed over through a queue: a fixed number (--threads N), or as many as
the calls need (--threads auto, the default).

Lighter than concurrent.futures.ThreadPoolExecutor on the hot path: no Future (with its Condition and
locks) per request, just a C-implemented SimpleQueue. Nobody waits on a result: the call reports back itself.

Sizing itself: while calls wait for a thread, a watcher thread looks at the threads in a call. Python runs
one thread at a time (the GIL), so more threads help only calls that wait on something outside the process:
a database, another service, a sleep. The kernel says where each thread is (/proc/self/task/TID/syscall):
in a system call that waits on I/O or a timer, on a lock (futex: the GIL, a lock of the app's, such as a
pool of connections all in use), or running. If half the threads sampled wait on I/O and the process left
its core idle part of the look, the pool doubles, up to the calls waiting, so none waits behind a blocked
one. If none waits on I/O, one thread leaves (down to the minimum): threads added in a spell of waiting
would otherwise stay to crowd a CPU-bound load, since under load they never idle long enough to leave.
A thread idle for IDLE_EXIT seconds leaves too.

Why the kernel's word and not the clocks: a thread's CPU clock stops both when it waits on I/O and when
it waits for the GIL, which under load is most of a short call's time; read as waiting, that grew Flask's
hello to 20 threads a worker on a slow machine (half the req/s of 2). The process's CPU clock stops as
well when the machine is busy with other processes. Where /proc has no such file (not Linux), the pool
grows when the process left its core idle half a look.
"""

from __future__ import annotations

import logging
import os
import platform
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wsgistack.server")

_STOP = None
MINIMUM = 2  # threads a self-sizing pool keeps: one call may block without the others waiting on it
IDLE_EXIT = 10.0  # seconds a thread beyond the minimum waits for a call before it leaves
LOOK = 0.005  # seconds of one look: the GIL changes hands every 5 ms when contended
# a look that added no thread makes the next one twice as long, up to this: each look takes the GIL from the
# app's threads several times, which cost Flask's hello 6-9% while a look came every 5 ms
LOOK_MOST = 0.1
CALM = 1.0  # seconds without calls waiting after which looks start short again (the load has changed)
ROOM = 0.9  # a process that ran on a core less than this share of a look has room for more threads
SAMPLE = 8  # threads in a call whose system call a look reads
# the system calls that wait on a lock rather than on I/O, by machine (numbers from the kernel's unistd.h)
LOCK_CALLS = {"x86_64": {"202", "449"}, "aarch64": {"98", "449"}}.get(platform.machine())


class ThreadStates:
    """Where threads of this process are, from /proc/self/task/TID/syscall; the files stay open, since an
    open costs ten times a read."""

    def __init__(self) -> None:
        self.files: dict[int, int] = {}
        here = f"/proc/self/task/{threading.get_native_id()}/syscall"
        self.works = LOCK_CALLS is not None and os.path.exists(here)

    def waiting_on_io(self, tids: list[int]) -> tuple[int, int]:
        """(threads waiting in a system call that is not a lock, threads read)."""
        on_io = read = 0
        for tid in tids:
            try:
                fd = self.files.get(tid)
                if fd is None:
                    fd = self.files[tid] = os.open(f"/proc/self/task/{tid}/syscall", os.O_RDONLY)
                call = os.pread(fd, 16, 0).split(maxsplit=1)[0].decode()
            except (OSError, IndexError):  # the thread has ended (a new one may get its id: open afresh)
                fd = self.files.pop(tid, None)
                if fd is not None:
                    os.close(fd)
                continue
            read += 1
            on_io += call.isdigit() and call not in LOCK_CALLS  # else "running" (or runnable), or a lock
        return on_io, read

    def keep_only(self, tids: set[int]) -> None:
        """Close the files of threads not among `tids`."""
        for tid in [tid for tid in self.files if tid not in tids]:
            os.close(self.files.pop(tid))


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
        self.lock = threading.Lock()  # guards `threads`, `serial`, `retire`, the watcher (not the hot path)
        self.serial = 0
        self.stopping = False
        # auto: the threads in a call, by ident, with their kernel thread ids; each adds and removes itself
        self.running: dict[int, int] = {}
        self.retire = False  # the next thread to end a call leaves (unless the pool is at its minimum)
        self.looking = threading.Event()  # set: the watcher looks, and goes on while calls wait
        self.watcher: threading.Thread | None = None
        for _ in range(self.minimum):
            self._add_thread()

    @property
    def size(self) -> int:
        """Threads now."""
        return len(self.threads)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the next free thread."""
        self.calls.put((fn, args))
        if not self.fixed and not self.looking.is_set() and self._calls_wait():
            self._start_looking()

    def shutdown(self) -> None:
        """Let the threads end once the calls queued before this one are done."""
        with self.lock:
            self.stopping = True
            count = len(self.threads)
        self.looking.set()  # the watcher sees `stopping` and ends
        for _ in range(count):
            self.calls.put(_STOP)

    # -- sizing ----------------------------------------------------------------------------------------

    def _calls_wait(self) -> bool:
        """More calls queued than threads out of a call (a burst is queued before any thread starts one)."""
        return len(self.running) + self.calls.qsize() > len(self.threads)

    def _start_looking(self) -> None:
        with self.lock:
            if self.stopping:
                return
            if self.watcher is None:
                self.watcher = threading.Thread(target=self._watch, name=f"{self.name}_watch", daemon=True)
                self.watcher.start()
        self.looking.set()

    def _watch(self) -> None:
        """Look while calls wait; sleep on `looking` otherwise."""
        states = ThreadStates()
        look = LOOK
        try:
            while True:
                if not self.looking.is_set():
                    calm_since = time.monotonic()
                    self.looking.wait()
                    if time.monotonic() - calm_since > CALM:
                        look = LOOK  # calls wait again after a long calm: a new load, looked at closely
                if self.stopping:
                    return
                wall, cpu = time.monotonic(), time.process_time()
                time.sleep(look)
                busy = (time.process_time() - cpu) / (time.monotonic() - wall)
                if states.works:
                    states.keep_only({thread.native_id for thread in list(self.threads)})
                    on_io, read = states.waiting_on_io(list(self.running.values())[:SAMPLE])
                    grow = bool(read) and 2 * on_io >= read and busy < ROOM
                    grew = self._resize(grow=grow, shrink=read > 0 and on_io == 0)
                else:
                    grew = self._resize(grow=busy < ROOM / 2, shrink=False)
                look = LOOK if grew else min(2 * look, LOOK_MOST)
                self.looking.clear()
                if self._calls_wait():  # a submit that saw `looking` set just before the clear
                    self.looking.set()
        finally:
            states.keep_only(set())

    def _resize(self, grow: bool, shrink: bool) -> bool:
        """Threads for the calls waiting, or one less; whether any was added."""
        with self.lock:
            if self.stopping or not self._calls_wait():
                return False
            size = len(self.threads)
            if grow:  # threads started by the last look may not have taken a call yet: count them as free
                waiting = len(self.running) + self.calls.qsize() - size
                for _ in range(min(waiting, size, self.maximum - size)):
                    self._add_thread()
                return len(self.threads) > size
            if shrink and size > self.minimum:
                self.retire = True
            return False

    def _add_thread(self) -> None:
        self.serial += 1
        thread = threading.Thread(target=self._work, name=f"{self.name}_{self.serial}", daemon=True)
        self.threads.add(thread)
        thread.start()

    def _leave(self, retire: bool = False) -> bool:
        """Whether this thread, idle or told to retire, may leave (the pool stays at its minimum)."""
        with self.lock:
            if retire:
                self.retire = False
            if self.fixed or self.stopping or len(self.threads) <= self.minimum:
                return False
            self.threads.discard(threading.current_thread())
            return True

    # -- the threads -----------------------------------------------------------------------------------

    def _work(self) -> None:
        calls = self.calls
        ident = threading.get_ident()
        tid = threading.get_native_id()
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
                running[ident] = tid
            try:
                fn(*args)
            except BaseException:
                log.exception("error in an app thread")
            finally:
                if not self.fixed:
                    running.pop(ident, None)
            if self.retire and self._leave(retire=True):
                return
