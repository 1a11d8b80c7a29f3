"""The self-sizing app-thread pool in process (server/app_threads.py): how it looks at its calls, not what a
worker does with it (that is test_server_app_threads.py, black-box)."""

from __future__ import annotations

import threading
import time

from polling import wait_for

from wsgistack.server.app_threads import MINIMUM, AppThreads, ThreadStates


def _spin(seconds: float) -> None:
    """No I/O, no sleep: `seconds` of the thread's own CPU time, holding the GIL or waiting for it."""
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def _spin_then_block(started: list, release: threading.Event, name: str) -> None:
    """50 ms on the CPU, then a wait outside the process (a sleep, as for a database) until released."""
    started.append(name)
    _spin(0.05)
    deadline = time.monotonic() + 10
    while not release.is_set() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_calls_queued_behind_calls_that_turn_to_waiting_get_threads_without_another_submit():
    pool = AppThreads(None, maximum=8, name="pool-queued")
    release = threading.Event()
    started: list[str] = []
    try:
        for name in ("a", "b"):  # the pool's two threads
            pool.submit(_spin_then_block, started, release, name)
        wait_for(lambda: len(started) == 2, interval=0.001, message="both threads in a call")
        # these find both threads on the CPU: no thread for them then, and no submit comes after them; when
        # the two calls go on to wait, the pool must see it by itself
        pool.submit(_spin_then_block, started, release, "c")
        pool.submit(_spin_then_block, started, release, "d")
        wait_for(lambda: len(started) == 4, timeout=5, interval=0.005,
                 message="the queued calls started while the first two wait")
        assert pool.size >= 4
    finally:
        release.set()
        pool.shutdown()


def test_calls_that_stay_on_the_cpu_get_no_threads():
    pool = AppThreads(None, maximum=8, name="pool-cpu")
    done = threading.Semaphore(0)
    try:
        for _ in range(40):
            pool.submit(lambda: (_spin(0.01), done.release()))
        for _ in range(40):
            assert done.acquire(timeout=20)
        # two threads taking turns at the GIL: each waits half the time, but on the GIL, not on the outside
        assert pool.size == MINIMUM
    finally:
        pool.shutdown()


def test_no_thread_of_a_pool_outlives_it():
    for fixed in (None, 2):
        name = f"pool-ends-{fixed}"
        pool = AppThreads(fixed, maximum=8, name=name)
        release = threading.Event()
        started: list[str] = []
        for call in ("a", "b"):
            pool.submit(_spin_then_block, started, release, call)
        wait_for(lambda: len(started) == 2, interval=0.001, message="both threads in a call")
        pool.submit(_spin_then_block, started, release, "c")  # a look for the auto pool, and its watcher
        release.set()
        pool.shutdown()
        wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith(name)], timeout=5,
                 message=f"every thread of {name} ended")


def test_threads_added_for_waiting_calls_leave_when_the_calls_keep_the_cpu_busy():
    pool = AppThreads(None, maximum=8, name="pool-shrinks")
    stop = threading.Event()
    try:
        for _ in range(8):
            pool.submit(time.sleep, 0.3)
        wait_for(lambda: pool.size >= 6, timeout=5, interval=0.005, message="threads for the sleeping calls")
        grown = pool.size

        def spin_until_stopped() -> None:
            if not stop.is_set():
                _spin(0.005)
                pool.submit(spin_until_stopped)  # keeps the queue full: every thread stays in a call

        for _ in range(3 * grown):
            pool.submit(spin_until_stopped)
        # well before IDLE_EXIT: the threads leave because the calls run on the CPU, not because they idle
        wait_for(lambda: pool.size == MINIMUM, timeout=10, interval=0.005,
                 message=f"the pool of {grown} back at its minimum while the calls spin")
    finally:
        stop.set()
        pool.shutdown()


def test_calls_waiting_on_a_lock_of_the_app_get_no_threads():
    """As calls waiting for a connection of a pool all in use: more threads would wait on the lock too."""
    pool = AppThreads(None, maximum=8, name="pool-lock")
    pool_in_use = threading.Lock()
    pool_in_use.acquire()
    entered = threading.Semaphore(0)

    def wait_for_the_lock() -> None:
        entered.release()
        with pool_in_use:
            pass

    try:
        for _ in range(6):
            pool.submit(wait_for_the_lock)
        for _ in range(2):
            assert entered.acquire(timeout=5)
        # the watcher has looked while four calls waited: long enough for it to have grown the pool
        wait_for(lambda: pool.watcher is not None, message="a look")
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the pool must stay put for the whole span, not only at its end
            assert pool.size == MINIMUM
            time.sleep(0.01)
    finally:
        pool_in_use.release()
        pool.shutdown()


def test_the_kernel_tells_a_thread_waiting_on_io_from_one_waiting_on_a_lock():
    states = ThreadStates()
    assert states.works  # Linux on x86_64 or aarch64: what the tests and CI run on
    held = threading.Lock()
    held.acquire()
    done = threading.Event()
    tids: dict[str, int] = {}

    def sleeper() -> None:
        tids["sleep"] = threading.get_native_id()
        while not done.is_set():
            time.sleep(0.01)

    def locked() -> None:
        tids["lock"] = threading.get_native_id()
        held.acquire(timeout=10)

    threads = [threading.Thread(target=sleeper), threading.Thread(target=locked)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(tids) == 2, message="both threads started")
        # a thread is seen between two waits now and then: ask until the kernel has seen each in its wait
        wait_for(lambda: states.waiting_on_io([tids["sleep"]]) == (1, 1), message="the sleeper in its sleep")
        seen_on_io = False
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # a thread waiting on a lock is never waiting on I/O
            seen_on_io |= states.waiting_on_io([tids["lock"]])[0] > 0
        assert not seen_on_io
        assert states.waiting_on_io([tids["lock"]]) == (0, 1)
    finally:
        done.set()
        held.release()
        for thread in threads:
            thread.join()
    # ended (the kernel lets a thread go a moment after join returns): nothing read, and their files closed
    ended = [tids["sleep"], tids["lock"]]
    wait_for(lambda: states.waiting_on_io(ended) == (0, 0), message="both threads gone")
    assert states.files == {}
