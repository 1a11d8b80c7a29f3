"""The event worker's default app-thread pool sizes itself: calls that block get threads of their own, so a
route that sleeps never delays a quick request behind it, and a pinned --threads stays what it says."""

from __future__ import annotations

import threading
import time

import requests
from polling import wait_for


def _sleepers(base: str, count: int, seconds: float) -> list[threading.Thread]:
    threads = [threading.Thread(target=requests.get, args=(f"{base}/sleep?s={seconds}",), kwargs={"timeout": 30})
               for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_a_sleeping_route_does_not_delay_a_quick_one(start_server):
    server = start_server("behaviour_app:app", "-k", "event", "-w", "1")  # the defaults: --threads auto
    base = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{base}/hello", timeout=10).status_code == 200
    sleepers = _sleepers(base, 6, 1.0)  # more than the pool's 2 first threads
    wait_for(lambda: server.log().count("sleep started") == 6, message="the six sleeps in flight")
    started = time.monotonic()
    assert requests.get(f"{base}/hello", timeout=10).text == "hello\n"
    took = time.monotonic() - started
    still_sleeping = any(thread.is_alive() for thread in sleepers)
    for thread in sleepers:
        thread.join()
    assert still_sleeping  # the quick request was answered while the sleeps went on
    assert took < 0.25, f"a quick request waited {took * 1000:.0f} ms behind sleeping ones"


def test_a_pinned_pool_stays_pinned(start_server):
    server = start_server("behaviour_app:app", "-k", "event", "-w", "1", "--threads", "2")
    base = f"http://127.0.0.1:{server.port}"
    sleepers = _sleepers(base, 3, 1.0)
    # two threads: the third sleep waits for one of them, so only two start at first
    wait_for(lambda: server.log().count("sleep started") >= 2, message="two sleeps in flight")
    assert server.log().count("sleep started") == 2
    for thread in sleepers:
        thread.join()
    assert server.log().count("sleep started") == 3


# -- where a call runs: quick routes on the loop, the others in threads (server/inline_calls.py) ----------

LOOP = "MainThread"  # the event worker's loop runs on the process's main thread
# A bare call takes 10 µs under load but 50 µs or more between sequential test requests (cold caches), above
# the default 20us: the tests learn with a bound that a quick call meets on a busy test machine too.
LEARN_BELOW = ("--inline-below", "500us")


def _until_on_loop(session: requests.Session, url: str) -> None:
    """Call the quick route until its calls run on the loop (it is learned in windows of 32 calls)."""
    wait_for(lambda: session.get(url, timeout=10).text == LOOP, timeout=20, interval=0,
             message=f"{url} to run on the loop")


def test_a_quick_route_runs_on_the_loop_and_a_sleeping_one_never_delays_it(start_server):
    server = start_server("inline_app:app", "-k", "event", "-w", "1", *LEARN_BELOW)  # and --threads auto
    base = f"http://127.0.0.1:{server.port}"
    session = requests.Session()
    _until_on_loop(session, f"{base}/hello")
    for _ in range(3):  # the sleeping route is called before: it is known, and known to block
        assert requests.get(f"{base}/sleep?s=0.05", timeout=10).text != LOOP
    sleepers = _sleepers(base, 3, 1.0)
    wait_for(lambda: server.log().count("sleep started") == 6, message="the three sleeps in flight")
    assert LOOP not in server.log()  # no sleep ran on the loop
    slowest = 0.0
    for _ in range(20):  # while the three sleep, on a connection of its own
        started = time.monotonic()
        assert session.get(f"{base}/hello", timeout=10).text == LOOP, server.log()
        slowest = max(slowest, time.monotonic() - started)
    still_sleeping = any(thread.is_alive() for thread in sleepers)
    for thread in sleepers:
        thread.join()
    assert still_sleeping
    assert slowest < 0.25, f"a quick call on the loop waited {slowest * 1000:.0f} ms behind sleeping ones"


def test_a_route_on_the_loop_that_blocks_goes_back_to_the_threads(start_server):
    server = start_server("inline_app:app", "-k", "event", "-w", "1", *LEARN_BELOW)
    base = f"http://127.0.0.1:{server.port}"
    session = requests.Session()
    _until_on_loop(session, f"{base}/maybe")
    # the first slow call of a route learned quick runs on the loop: the price of learning, paid once...
    assert session.get(f"{base}/maybe?s=0.05", timeout=10).text == LOOP
    # ...and from then on the route's calls run in threads, the slow ones as well
    assert session.get(f"{base}/maybe?s=0.05", timeout=10).text != LOOP
    assert session.get(f"{base}/maybe", timeout=10).text != LOOP
    assert server.log().count(f"sleep started on {LOOP}") == 1
    _until_on_loop(session, f"{base}/maybe")  # quick again for long enough: back on the loop


def test_inline_below_0_runs_every_call_in_a_thread(start_server):
    server = start_server("inline_app:app", "-k", "event", "-w", "1", "--inline-below", "0")
    session = requests.Session()
    answers = {session.get(f"http://127.0.0.1:{server.port}/hello", timeout=10).text for _ in range(200)}
    assert LOOP not in answers and answers  # 200 calls: over six windows of 32, had they been learned
