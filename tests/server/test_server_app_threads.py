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
