"""The metric families wsgistack exposes: name, kind, labels and help, written once.

The request families follow OpenTelemetry's HTTP server conventions (names, labels, duration buckets), so
dashboards made for other servers read ours. docs/metrics.md lists them for users.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

# OpenTelemetry's advice for http.server.request.duration, in seconds
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# body sizes in bytes: a decade a bucket, from a small form post to a large upload
SIZE_BOUNDS = (100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0)

# The methods of RFC 9110 and PATCH; any other becomes "_OTHER", so a client cannot grow the label set.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER = "_OTHER"
REQUEST_LABELS = ("http_request_method", "http_response_status_code", "http_route")


@dataclass(frozen=True)
class Family:
    """One metric family: its Prometheus name (counters without the _total suffix), kind, labels, help."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    bounds: tuple[float, ...] = ()  # a histogram's bucket upper bounds, +Inf implied

    @property
    def width(self) -> int:
        """How many numbers one series holds: a value, or a histogram's buckets (+Inf too) and sum."""
        return len(self.bounds) + 2 if self.kind == HISTOGRAM else 1


# -- the requests a process answered (server workers; the proxy) ---------------------------------------
REQUEST_DURATION = Family("http_server_request_duration_seconds", HISTOGRAM,
                          "Time to answer a request, to the response's last byte (an app server counts from "
                          "the request's arrival, the proxy from its last byte).", REQUEST_LABELS,
                          DURATION_BOUNDS)
REQUEST_BODY_SIZE = Family("http_server_request_body_size_bytes", HISTOGRAM, "Request body sizes.",
                           REQUEST_LABELS, SIZE_BOUNDS)
RESPONSE_BODY_SIZE = Family("http_server_response_body_size_bytes", HISTOGRAM, "Response body sizes.",
                            REQUEST_LABELS, SIZE_BOUNDS)
ACTIVE_REQUESTS = Family("http_server_active_requests", GAUGE, "Requests being answered now.")

# -- the app server ------------------------------------------------------------------------------------
WORKERS = Family("wsgistack_server_workers", GAUGE, "Worker processes alive.")
WORKERS_BUSY = Family("wsgistack_server_workers_busy", GAUGE, "Workers answering at least one request now.")
EXCEPTIONS = Family("wsgistack_server_exceptions", COUNTER, "App calls that raised (answered with a 500).")
RESTARTS = Family("wsgistack_server_worker_restarts", COUNTER,
                  "Workers replaced, by cause: crash, timeout, max_requests, reload, scale_down.", ("cause",))
LISTEN_QUEUE = Family("wsgistack_server_listen_queue", GAUGE,
                      "Connections waiting in the kernel's accept queue (TCP listeners, Linux).", ("listener",))
LISTEN_QUEUE_MAX = Family("wsgistack_server_listen_queue_max", GAUGE, "The accept queue's size (--backlog).",
                          ("listener",))
LISTEN_OVERFLOWS = Family("wsgistack_server_listen_overflows", COUNTER,
                          "Connections the kernel dropped because an accept queue was full (whole machine, "
                          "Linux's ListenOverflows).")
CONNECTIONS = Family("wsgistack_server_connections", COUNTER, "Connections accepted.")
CONNECTIONS_OPEN = Family("wsgistack_server_connections_open", GAUGE, "Connections open now.")
CONNECTIONS_REFUSED = Family("wsgistack_server_connections_refused", COUNTER,
                             "Connections or requests refused before the app, by reason.", ("reason",))
APP_THREADS_BUSY = Family("wsgistack_server_app_threads_busy", GAUGE, "App threads running a request.")
APP_THREADS_QUEUED = Family("wsgistack_server_app_threads_queued", GAUGE, "Requests waiting for an app thread.")
WORKER_REQUESTS = Family("wsgistack_worker_requests", COUNTER, "Requests answered by a live worker.", ("pid",))
WORKER_BUSY = Family("wsgistack_worker_busy", GAUGE, "1 while the worker answers a request.", ("pid",))
WORKER_EXCEPTIONS = Family("wsgistack_worker_exceptions", COUNTER, "App calls that raised, per live worker.",
                           ("pid",))
WORKER_RSS = Family("wsgistack_worker_rss_bytes", GAUGE, "A live worker's resident memory.", ("pid",))
WORKER_UPTIME = Family("wsgistack_worker_uptime_seconds", GAUGE, "Seconds since the worker started.", ("pid",))
