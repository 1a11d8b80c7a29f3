"""Which app calls the event worker runs on its loop, and which it hands to its threads (--threads auto).

Handing a call to a thread and its response back to the loop costs about 20 µs of CPU here (two wake-ups
and the GIL passed twice). For a bare WSGI app whose call takes 5 µs, that is most of the work: it runs 1.6×
faster on the loop (1.7×, bench/README.md). For a Flask view (60 µs and more) the threads are faster (1.1×), and a call that
blocks must never run on the loop, or every other connection waits for it. So the loop runs only the calls
of routes it has seen to be quick, and only while they stay quick:

- a route (method and path) is learned in the threads, in windows of LEARN calls: when three in four took
  under QUICK, wall time from the call to its last byte handed over, and none took SLOW, its calls run on
  the loop. A call that waits on anything (a database, a sleep, a slow client) takes longer than QUICK, so
  a route that blocks is never learned. Wall time rather than CPU time, because a quick call is never made to wait for the GIL midway
  (a thread keeps it for 5 ms before being asked to give it up);
- a call on the loop that takes longer than SLOW, and waited meanwhile, sends its route back to the threads
  at once; it must then
  be seen quick again for 2^strikes windows in a row, so a route that sometimes blocks soon stays in the
  threads. That one slow call did hold the loop: the price of learning, paid once a strike;
- at most ROUTES routes are remembered, so an app with a path per object (/user/123) costs bounded memory.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("wsgistack.server")

QUICK = 20e-6  # seconds: a call under this, measured in a thread, costs less than handing it over
SLOW = 1e-3  # seconds: a call on the loop taking longer sends its route back to the threads
LEARN = 32  # calls of a route in a window
MAX_STRIKES = 6  # a route sent back this often needs 64 quick windows (2,048 calls) to come back
ROUTES = 1024  # routes remembered; past this the table starts again (the hot routes are learned quickly)


@dataclass
class Route:
    """What is known of one route's calls."""

    inline: bool = False
    calls: int = 0  # calls seen in the threads in this window of LEARN
    quick: int = 0  # of which were quick
    slow: bool = False  # one of them took SLOW or more
    windows: int = 0  # quick windows in a row
    strikes: int = 0  # times a call on the loop was slow


class InlineCalls:
    """The routes whose calls run on the loop. Used on the loop thread only: no locks."""

    def __init__(self, quick: float = QUICK, slow: float = SLOW, learn: int = LEARN):
        self.quick = quick
        self.slow = slow
        self.learn = learn
        self.routes: dict[tuple[str, str], Route] = {}
        self.sent_back = 0  # calls on the loop that proved slow (for the logs and tests)

    def on_loop(self, key: tuple[str, str]) -> bool:
        """Whether this route's next call runs on the loop."""
        route = self.routes.get(key)
        return route is not None and route.inline

    def threaded_call(self, key: tuple[str, str], seconds: float) -> None:
        """A call of the route ran in a thread and took `seconds`, wall time."""
        route = self.routes.get(key)
        if route is None:
            if len(self.routes) >= ROUTES:
                self.routes.clear()
            route = self.routes[key] = Route()
        route.calls += 1
        if seconds < self.quick:
            route.quick += 1
        elif seconds >= self.slow:
            route.slow = True
        if route.calls < self.learn:
            return
        # a window: quick if three calls in four were (a quick call may still lose the GIL once in a while
        # to the loop, which is busy under load) and none was slow
        good = route.quick * 4 >= route.calls * 3 and not route.slow
        route.windows = route.windows + 1 if good else 0
        route.calls = route.quick = 0
        route.slow = False
        if route.windows >= 1 << route.strikes:
            route.inline = True

    @staticmethod
    def waits() -> int:
        """The times this thread has waited so far (voluntary context switches): read before a call on the loop."""
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw

    def loop_call(self, key: tuple[str, str], seconds: float, waits_before: int) -> None:
        """A call of the route ran on the loop and took `seconds`: slow, and the route goes back.

        Slow means it took SLOW and waited meanwhile (a sleep, I/O, the GIL): a call the system merely paused
        to run another process, as a busy machine does for milliseconds at a time, stays on the loop.
        """
        if seconds < self.slow or self.waits() == waits_before:
            return
        route = self.routes.get(key)
        if route is None:
            return
        route.inline = False
        route.windows = 0
        route.strikes = min(route.strikes + 1, MAX_STRIKES)
        self.sent_back += 1
        log.info("%s %s took %.1f ms on the event loop: its calls run in threads again", *key, seconds * 1000)
