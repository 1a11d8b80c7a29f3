"""What the dashboard's charts and tables show, from the stack's Prometheus text.

The text is read and turned into rates by observe/summary.py (the one parse, shared with `wsgistack top`); this
module only scrapes on demand, keeps the snapshot before, and shapes a Summary as the JSON the page's script
plots: per app (the `program` label) req/s, p50/p99 latency and 5xx/s; per upstream server its state, req/s
and failures; the worker table.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

MIN_INTERVAL = 0.5  # seconds between two scrapes: closer than this, the last answer is given again
MAX_TEXT = 32 << 20  # a larger exposition is refused rather than parsed on the supervisor's loop


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def shape(summary: Any) -> dict[str, Any]:
    """A summary.Summary as the page's JSON."""
    return {
        "window": summary.window_seconds,
        "programs": {app.program or "-": {"rps": app.requests_per_second, "p50_ms": _ms(app.p50),
                                          "p99_ms": _ms(app.p99), "errors_per_s": app.errors_per_second,
                                          "requests": app.requests_total, "errors": app.errors_total}
                     for app in summary.apps},
        "upstreams": [{"program": u.program, "upstream": u.upstream, "server": u.server, "state": u.state,
                       "rps": u.requests_per_second, "failures": u.failures_total, "active": u.active_connections}
                      for u in summary.upstreams],
        "workers": [{"program": w.program, "pid": w.pid, "requests": w.requests_total, "rps": w.requests_per_second,
                     "busy": w.busy, "rss_bytes": w.rss_bytes, "uptime": w.uptime_seconds} for w in summary.workers],
    }


class Charts:
    """Scrapes when asked (at most every MIN_INTERVAL) and answers the latest rates; one per dashboard, so
    several open browsers share the scrapes and the window between them."""

    def __init__(self, metrics_text: Callable[[], Awaitable[str]] | None, clock=time.monotonic):
        self.metrics_text = metrics_text
        self.clock = clock
        self._previous: Any = None  # the last summary.Snapshot
        self._answer: dict[str, Any] | None = None

    async def latest(self) -> dict[str, Any]:
        """{"available": bool, "reason": ..., "programs": ..., "upstreams": ..., "workers": ..., "at": ...}."""
        if self.metrics_text is None:
            return {"available": False, "reason": "No metrics: this supervisor was started without the metrics "
                                                  "engine."}
        now = self.clock()
        if self._answer is not None and now - self._previous.at < MIN_INTERVAL:
            return self._answer
        from wsgistack.observe import summary  # prometheus_client is imported only when metrics are on

        try:
            text = await self.metrics_text()
            if len(text) > MAX_TEXT:
                raise summary.MetricsError(f"the exposition is over {MAX_TEXT} bytes")
            snapshot = summary.parse_snapshot(text, now, time.time())
        except Exception as exc:  # noqa: BLE001 (a scrape that fails is a line on the page, never a 500)
            return {"available": False, "reason": f"Metrics could not be read: {exc}"}
        previous, self._previous = self._previous, snapshot
        self._answer = {"available": True, "at": snapshot.wall, **shape(summary.summarise(snapshot, previous))}
        return self._answer
