"""A fixed set of threads that run app calls handed over through a queue.

Lighter than concurrent.futures.ThreadPoolExecutor on the hot path: no Future (with its Condition and
locks) per request, just a C-implemented SimpleQueue. Nobody waits on a result: the call reports back itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wsgistack.server")

_STOP = None


class AppThreads:
    """`size` daemon threads executing submitted calls in arrival order."""

    def __init__(self, size: int, name: str = "wsgistack-app"):
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(size)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the next free thread."""
        self.calls.put((fn, args))

    def shutdown(self) -> None:
        """Let the threads end once the calls queued before this one are done."""
        for _ in self.threads:
            self.calls.put(_STOP)

    def _work(self) -> None:
        calls = self.calls
        while True:
            item = calls.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:
                log.exception("error in an app thread")
