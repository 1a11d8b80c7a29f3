"""--timeout in the gevent class: a request that waits (cooperatively) past it is cut, its greenlet's stack is
logged, the worker goes on serving others meanwhile, and a graceful stop does not wait for it."""

from __future__ import annotations

import re
import signal
import threading
import time

import requests
from polling import wait_for

TIMEOUT = 2


def test_request_waiting_past_timeout_is_cut_with_its_stack(start_server):
    server = start_server("behaviour_app:app", "-w", "1", "-k", "gevent", "--timeout", str(TIMEOUT),
                          "--graceful-timeout", "60")
    (worker,) = server.wait_workers(1)
    outcome: dict = {}

    def sleeper():
        started = time.monotonic()
        try:
            response = requests.get(f"http://127.0.0.1:{server.port}/sleep?s=30", timeout=20)
            outcome["status"] = response.status_code
        except requests.RequestException as exc:  # a cut after the head would be a closed connection
            outcome["status"] = repr(exc)
        outcome["elapsed"] = time.monotonic() - started

    client = threading.Thread(target=sleeper)
    client.start()
    wait_for(lambda: "sleep started" in server.log(), message="the request to be in flight")
    # the same (only) worker keeps serving while the request waits
    assert requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=10).text == "hello\n"
    assert "status" not in outcome, "the request was still waiting while /hello was served"
    # a graceful stop now waits for the request only until its deadline, not its 30 s or --graceful-timeout
    stop_sent = time.monotonic()
    server.signal(signal.SIGTERM)
    client.join(25)
    assert outcome["status"] == 500, outcome
    assert outcome["elapsed"] < TIMEOUT + 6, outcome
    assert server.proc.wait(20) == 0
    assert time.monotonic() - stop_sent < TIMEOUT + 8
    log = server.log()
    assert re.search(r'ran past --timeout \(2s\): cut', log), log
    assert re.search(r'File ".*behaviour_app\.py", line \d+ in sleep', log), "the greenlet's stack is logged"
    assert f"worker {worker} timed out" not in log, "cut by its deadline, not by the master killing it"
