"""The proxy's metrics (`metrics_bind`): its families, what each proxy process counts, and the scrape.

Each proxy process counts into a slot of shared memory (observe/metrics/slot.py) through a `ProxyRecorder`:
the requests it answers (the http_server_* families, by the route that matched), each attempt on an upstream
server, failures, retries, limit refusals, static hits and the bytes to and from clients. That is a dict
lookup and a few stores per request, never a system call. With `workers = N` the master makes each worker's
slot before its fork and folds it into its totals when it reaps the worker (`ProxyMetrics.worker_gone`), so
what a dead worker counted stays counted, once; the master serves /metrics from its selector loop. With one
process the slot is the process's own memory and the endpoint runs on its event loop.

Upstream state (`wsgistack_proxy_upstream_state`): every process has its own view of its upstreams' health
(passive health is counted per process, as in nginx without a shared zone). Each process writes, four times
a second, whether it sees each server down; the scrape says a server is `down` when ANY live process sees it
down (passively marked down after max_fails, or taken out by its active health check), else `backup` for a
backup server, else `up`. One series per state, 1 for the current one.
"""

from __future__ import annotations

import os
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.observe.metrics.endpoint import listen
from wsgistack.observe.metrics.families import (
    ACTIVE_REQUESTS,
    COUNTER,
    DURATION_BOUNDS,
    GAUGE,
    HISTOGRAM,
    REQUEST_BODY_SIZE,
    REQUEST_DURATION,
    RESPONSE_BODY_SIZE,
    Family,
)
from wsgistack.observe.metrics.registry import Merged, Totals, new_metric, render, to_metrics
from wsgistack.observe.metrics.requests import PROCESS_FAMILIES, RequestRecorder
from wsgistack.observe.metrics.slot import MetricSlot

if TYPE_CHECKING:
    from prometheus_client.core import Metric  # imported at a scrape (observe/metrics/registry.py)

_SERVER = ("upstream", "server")
UPSTREAM_REQUESTS = Family("wsgistack_proxy_upstream_requests", COUNTER,
                           "Attempts on an upstream server, counted when they end (a retried request counts on "
                           "each server tried).",
                           _SERVER)
UPSTREAM_FAILURES = Family("wsgistack_proxy_upstream_failures", COUNTER,
                           "Attempts on an upstream server that failed: connect error, reset, timeout, invalid "
                           "or cut response.", _SERVER)
UPSTREAM_RETRIES = Family("wsgistack_proxy_upstream_retries", COUNTER,
                          "Attempts after a request's first (on the next server, or a held request's retry).",
                          ("upstream",))
UPSTREAM_STATE = Family("wsgistack_proxy_upstream_state", GAUGE,
                        "1 for the server's state now: down if any live proxy process sees it down, else backup "
                        "(a backup server) or up.", (*_SERVER, "state"))
UPSTREAM_DURATION = Family("wsgistack_proxy_upstream_response_duration_seconds", HISTOGRAM,
                           "Time of an attempt on an upstream server: from its start (connect or pooled "
                           "connection) to the response's end or the failure.", _SERVER, DURATION_BOUNDS)
UPSTREAM_ACTIVE = Family("wsgistack_proxy_upstream_active_connections", GAUGE,
                         "Connections to the upstream server carrying a request now (connecting included; "
                         "each process writes its count four times a second).",
                         _SERVER)
LIMIT_REJECTIONS = Family("wsgistack_proxy_limit_rejections", COUNTER,
                          "Requests or connections refused by a limit: limit_req and limit_conn (zone: the route), "
                          "max_connections (zone: total or per_ip).", ("limit", "zone"))
STATIC_HITS = Family("wsgistack_proxy_static_hits", COUNTER,
                     "Requests a static route answered with a file (2xx or 304).")
RECEIVED_BYTES = Family("wsgistack_proxy_received_bytes", COUNTER, "Bytes read from clients (heads and bodies).")
SENT_BYTES = Family("wsgistack_proxy_sent_bytes", COUNTER, "Bytes written to clients (heads and bodies).")
# written by each process, read by the scrape to decide UPSTREAM_STATE; never shown itself
_SEEN_DOWN = Family("wsgistack_proxy_upstream_seen_down", GAUGE, "1 while this process sees the server down.",
                    _SERVER)

# what a proxy process writes into its slot (PROCESS_FAMILIES first: RequestRecorder needs them)
SLOT_FAMILIES: tuple[Family, ...] = (
    *PROCESS_FAMILIES, UPSTREAM_REQUESTS, UPSTREAM_FAILURES, UPSTREAM_RETRIES, UPSTREAM_DURATION, UPSTREAM_ACTIVE,
    LIMIT_REJECTIONS, STATIC_HITS, RECEIVED_BYTES, SENT_BYTES, _SEEN_DOWN,
)
# what a scrape shows, in this order (UPSTREAM_STATE is worked out, after these)
SHOWN: tuple[Family, ...] = (
    REQUEST_DURATION, REQUEST_BODY_SIZE, RESPONSE_BODY_SIZE, ACTIVE_REQUESTS, UPSTREAM_REQUESTS, UPSTREAM_FAILURES,
    UPSTREAM_RETRIES, UPSTREAM_DURATION, UPSTREAM_ACTIVE, LIMIT_REJECTIONS, STATIC_HITS, RECEIVED_BYTES, SENT_BYTES,
)
STATES = ("up", "down", "backup")
_DURATION_SUM = len(DURATION_BOUNDS) + 1


class ProxyRecorder(RequestRecorder):
    """What one proxy process counts, into its slot: the only metrics code on a request's path.

    The http_server_* families are RequestRecorder's (`started`, `finished`, by the route's label); the rest is
    the proxy's. `values`, `received_at` and `sent_at` are public so the client connection adds its byte
    counts inline. Gauges that the process knows anyway (each server's health and requests in flight) are
    written by `publish_upstreams` from the ticker, not per request.
    """

    def __init__(self, slot: MetricSlot):
        super().__init__(slot)
        self.received_at = slot.offset(RECEIVED_BYTES)
        self.sent_at = slot.offset(SENT_BYTES)
        self._static_at = slot.offset(STATIC_HITS)
        # (upstream, server) -> where its attempts and its duration histogram are
        self._servers: dict[tuple[str, str], tuple[int, int]] = {}

    # -- requests the proxy answers (beside `started` and `finished`) ------------------------------------

    def static_answered(self, status: int) -> None:
        """A static route answered: a hit when it sent a file or said it has not changed."""
        if status < 300 or status == 304:
            self.values[self._static_at] += 1

    def refused(self, method: str, status: int, route: str, received: int, sent: int) -> None:
        """A request answered before it was complete (unreadable, too large): counted, at no duration."""
        self.started()
        self.finished(method, status, route, 0.0, received, sent)

    def rejected(self, limit: str, zone: str) -> None:
        """A limit refused a request or a connection."""
        self.values[self.slot.offset(LIMIT_REJECTIONS, (limit, zone))] += 1

    # -- attempts on upstream servers --------------------------------------------------------------------

    def attempt_ended(self, upstream: str, server: str, seconds: float) -> None:
        """An attempt on `server` is over, however it ended: one request, and its time."""
        found = self._servers.get((upstream, server))
        if found is None:
            found = self._add_server(upstream, server)
        requests, duration = found
        values = self.values
        values[requests] += 1
        values[duration + bisect_left(DURATION_BOUNDS, seconds)] += 1
        values[duration + _DURATION_SUM] += seconds

    def retried(self, upstream: str) -> None:
        """A request is tried again (on the next server, or a held request's new connect)."""
        self.values[self.slot.offset(UPSTREAM_RETRIES, (upstream,))] += 1

    def failed(self, upstream: str, server: str) -> None:
        """An attempt on `server` failed (before or after the response head)."""
        self.values[self.slot.offset(UPSTREAM_FAILURES, (upstream, server))] += 1

    def _add_server(self, upstream: str, server: str) -> tuple[int, int]:
        labels = (upstream, server)
        found = (self.slot.offset(UPSTREAM_REQUESTS, labels), self.slot.offset(UPSTREAM_DURATION, labels))
        self._servers[labels] = found
        return found

    # -- gauges, written off the request path ------------------------------------------------------------

    def publish_upstreams(self, servers: Iterable[tuple[str, str, bool, bool, int]]) -> None:
        """This process's view of its servers: (upstream, server, backup, down, requests in flight) each."""
        values, slot = self.values, self.slot
        for upstream, server, _, down, active in servers:
            labels = (upstream, server)
            values[slot.offset(_SEEN_DOWN, labels)] = 1.0 if down else 0.0
            values[slot.offset(UPSTREAM_ACTIVE, labels)] = active


class ConfigView(Protocol):
    """What the scrape needs of the current config (routing.ProxyState)."""

    def server_states(self, now: float) -> list[tuple[str, str, bool, bool, int]]:
        """(upstream, server, is a backup, is down in this process, its requests in flight here) for every
        upstream server."""

    def limit_zones(self) -> list[tuple[str, str]]:
        """(limit, zone) of every limit the routes declare."""


class ProxyMetrics:
    """The scrape: the live processes' slots, the totals of those gone, and the upstream states.

    With `workers = N` the master calls `new_slot` before each fork, `worker_started` after it and
    `worker_gone` at each reap. A single process registers its own slot and passes its `recorder`, so its
    health view is written fresh at each scrape.
    """

    def __init__(self, config: Callable[[], ConfigView], recorder: ProxyRecorder | None = None):
        self.config = config  # the config as it is at the scrape (a reload may change it)
        self.recorder = recorder
        self.totals = Totals()
        self.live: dict[int, MetricSlot] = {}

    def new_slot(self) -> MetricSlot:
        """A slot for the next process, made before its fork."""
        return MetricSlot(SLOT_FAMILIES)

    def worker_started(self, pid: int, slot: MetricSlot) -> None:
        """The fork returned `pid` for the process of `slot`."""
        self.live[pid] = slot

    def worker_gone(self, pid: int) -> None:
        """A process was reaped: what it counted joins the totals, once, and its slot is released."""
        slot = self.live.pop(pid, None)
        if slot is not None:
            self.totals.fold(slot.read())
            slot.close()

    def close_in_child(self) -> None:
        """A new worker drops its siblings' slots (the master's to read, not its own)."""
        for slot in self.live.values():
            slot.close()
        self.live.clear()

    def render(self, accept: str) -> tuple[str, bytes]:
        """A scrape: (content type, body)."""
        return render(self.collect, accept)

    async def render_async(self, accept: str) -> tuple[str, bytes]:
        """`render` for observe's asyncio endpoint (a scrape is quick: it runs on the loop)."""
        return self.render(accept)

    def collect(self) -> list[Metric]:
        """Every family, the live slots read now."""
        config = self.config()
        servers = config.server_states(time.monotonic())
        if self.recorder is not None:
            self.recorder.publish_upstreams(servers)
        merged = self.totals.with_live([slot.read() for slot in self.live.values()])
        _zeros(merged, servers, config.limit_zones())
        out = to_metrics(merged, SHOWN)
        out.append(_states(merged, servers))
        return out


def _zeros(merged: Merged, servers: list[tuple[str, str, bool, bool, int]], zones: list[tuple[str, str]]) -> None:
    """The counters of what the config declares show from the start, at 0, so a rate() over them is defined."""
    for upstream, server, *_ in servers:
        for family in (UPSTREAM_REQUESTS, UPSTREAM_FAILURES, UPSTREAM_ACTIVE):
            merged.setdefault((family, (upstream, server)), [0.0])
        merged.setdefault((UPSTREAM_RETRIES, (upstream,)), [0.0])
    for zone in (*zones, ("max_connections", "total"), ("max_connections", "per_ip")):
        merged.setdefault((LIMIT_REJECTIONS, zone), [0.0])
    for family in (STATIC_HITS, RECEIVED_BYTES, SENT_BYTES, ACTIVE_REQUESTS):
        merged.setdefault((family, ()), [0.0])


def _states(merged: Merged, servers: list[tuple[str, str, bool, bool, int]]) -> Metric:
    metric = new_metric(UPSTREAM_STATE)
    for upstream, server, backup, *_ in servers:
        seen_down = merged.get((_SEEN_DOWN, (upstream, server)), [0.0])[0] > 0
        state = "down" if seen_down else "backup" if backup else "up"
        for name in STATES:
            metric.add_metric([upstream, server, name], 1.0 if name == state else 0.0)
    return metric


# -- the endpoint's socket --------------------------------------------------------------------------------

def open_endpoint(text: str | None) -> socket.socket | None:
    """The listening socket of `metrics_bind` (None when not set); ConfigError when it cannot be bound."""
    if text is None:
        return None
    try:
        return listen(parse_address(text))
    except OSError as exc:
        raise ConfigError(f"proxy.metrics_bind {text}: {exc.strerror or exc}") from None


def close_endpoint(sock: socket.socket, name: object) -> None:
    """Close the endpoint's listener, and remove its unix socket file (`name`: its address when opened)."""
    sock.close()
    if isinstance(name, str) and name:
        try:
            os.unlink(name)
        except OSError:
            pass
