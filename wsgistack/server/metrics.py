"""The app server's metrics, as its master sees them: a slot of shared memory per worker, the totals of
the workers that are gone, restarts by cause, and what only the master can read (the listen queues, each
worker's memory and age).

docs/metrics.md lists the families; observe/metrics/ holds the machinery shared with the proxy.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsgistack.observe.metrics.families import (
    ACTIVE_REQUESTS,
    APP_THREADS_BUSY,
    APP_THREADS_QUEUED,
    CONNECTIONS,
    CONNECTIONS_OPEN,
    CONNECTIONS_REFUSED,
    EXCEPTIONS,
    LISTEN_OVERFLOWS,
    LISTEN_QUEUE,
    LISTEN_QUEUE_MAX,
    REQUEST_BODY_SIZE,
    REQUEST_DURATION,
    RESPONSE_BODY_SIZE,
    RESTARTS,
    WORKER_BUSY,
    WORKER_EXCEPTIONS,
    WORKER_REQUESTS,
    WORKER_RSS,
    WORKER_UPTIME,
    WORKERS,
    WORKERS_BUSY,
    Family,
)
from wsgistack.observe.metrics.registry import Totals, new_metric, render, to_metrics
from wsgistack.observe.metrics.requests import PROCESS_FAMILIES
from wsgistack.observe.metrics.slot import MetricSlot, Series
from wsgistack.server.sockets import Listener

if TYPE_CHECKING:
    from prometheus_client.core import Metric  # imported at a scrape (observe/metrics/registry.py)

# the summed families, in the order a scrape lists them
SUMMED: tuple[Family, ...] = (
    REQUEST_DURATION, REQUEST_BODY_SIZE, RESPONSE_BODY_SIZE, ACTIVE_REQUESTS, EXCEPTIONS, RESTARTS, CONNECTIONS,
    CONNECTIONS_OPEN, CONNECTIONS_REFUSED, APP_THREADS_BUSY, APP_THREADS_QUEUED,
)
CAUSES = ("crash", "timeout", "max_requests", "reload", "scale_down")
_PAGE = os.sysconf("SC_PAGE_SIZE")
# struct tcp_info: eight one-byte fields, rto, ato, snd_mss, rcv_mss, then unacked (for a listener, the
# connections waiting to be accepted) and sacked (the queue's size)
_TCP_INFO_QUEUE = struct.Struct("<24xII")


@dataclass
class LiveWorker:
    """What the scrape needs of a live worker."""

    pid: int
    started: float  # monotonic
    slot: MetricSlot


class ServerMetrics:
    """The master's metrics: call `new_slot` before each fork, `worker_gone` at each reap, `render` to scrape."""

    def __init__(self, listeners: Callable[[], list[Listener]]):
        self.listeners = listeners  # the master's, as they are at the scrape (a reload may change them)
        self.totals = Totals()
        for cause in CAUSES:  # every cause shows from the start, at 0, so a rate() over it is defined
            self.totals.count(RESTARTS, (cause,), 0.0)
        self.live: dict[int, LiveWorker] = {}

    def new_slot(self) -> MetricSlot:
        """A slot for the next worker, made before its fork."""
        return MetricSlot(PROCESS_FAMILIES)

    def worker_started(self, pid: int, slot: MetricSlot) -> None:
        """The fork returned `pid` for the worker of `slot`."""
        self.live[pid] = LiveWorker(pid, time.monotonic(), slot)

    def worker_gone(self, pid: int, restart_cause: str | None) -> None:
        """A worker was reaped: its numbers join the totals, once; `restart_cause` when it is replaced."""
        worker = self.live.pop(pid, None)
        if worker is not None:
            self.totals.fold(worker.slot.read())
            worker.slot.close()
        if restart_cause is not None:
            self.totals.count(RESTARTS, (restart_cause,))

    def render(self, accept: str) -> tuple[str, bytes]:
        """A scrape: (content type, body)."""
        return render(self.collect, accept)

    def collect(self) -> list[Metric]:
        """Every family, the live workers' numbers read now."""
        readings = {pid: worker.slot.read() for pid, worker in self.live.items()}
        merged = self.totals.with_live(readings.values())
        out = to_metrics(merged, SUMMED)
        out.extend(self._workers(readings))
        out.extend(self._listen_queues())
        return out

    def _workers(self, readings: dict[int, list[Series]]) -> list[Metric]:
        now = time.monotonic()
        count, busy_count = new_metric(WORKERS), new_metric(WORKERS_BUSY)
        requests, busy, exceptions = new_metric(WORKER_REQUESTS), new_metric(WORKER_BUSY), new_metric(WORKER_EXCEPTIONS)
        rss, uptime = new_metric(WORKER_RSS), new_metric(WORKER_UPTIME)
        busy_workers = 0
        for pid, series in sorted(readings.items()):
            numbers = {family: values[0] for family, labels, values in series if not labels}
            # its requests: the count of its duration histograms (the buckets; the last number is the sum)
            answered = sum(sum(values[:-1]) for family, _, values in series if family is REQUEST_DURATION)
            label = [str(pid)]
            active = numbers.get(ACTIVE_REQUESTS, 0.0) > 0
            busy_workers += active
            requests.add_metric(label, answered)
            busy.add_metric(label, 1.0 if active else 0.0)
            exceptions.add_metric(label, numbers.get(EXCEPTIONS, 0.0))
            memory = resident_bytes(pid)
            if memory is not None:
                rss.add_metric(label, memory)
            uptime.add_metric(label, round(now - self.live[pid].started, 3))
        count.add_metric([], len(readings))
        busy_count.add_metric([], busy_workers)
        return [count, busy_count, requests, busy, exceptions, rss, uptime]

    def _listen_queues(self) -> list[Metric]:
        queue, limit = new_metric(LISTEN_QUEUE), new_metric(LISTEN_QUEUE_MAX)
        for listener in self.listeners():
            found = listen_queue(listener.sock)
            if found is not None:
                queue.add_metric([listener.name()], found[0])
                limit.add_metric([listener.name()], found[1])
        out = [queue, limit] if queue.samples else []
        overflows = listen_overflows()
        if overflows is not None:
            metric = new_metric(LISTEN_OVERFLOWS)
            metric.add_metric([], overflows)
            out.append(metric)
        return out


def resident_bytes(pid: int) -> float | None:
    """A process's resident memory, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return float(int(handle.read().split()[1]) * _PAGE)
    except (OSError, IndexError, ValueError):
        return None


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the queue's size) of a TCP listener, from Linux's TCP_INFO;
    None for other sockets and systems."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except OSError:
        return None
    if len(info) < _TCP_INFO_QUEUE.size:
        return None
    return _TCP_INFO_QUEUE.unpack_from(info)


def listen_overflows() -> float | None:
    """Linux's count of connections dropped at a full accept queue, machine-wide (TcpExt ListenOverflows)."""
    try:
        with open("/proc/net/netstat") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for names, numbers in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], numbers.split()[1:]))
            if "ListenOverflows" in table:
                return float(table["ListenOverflows"])
    return None
