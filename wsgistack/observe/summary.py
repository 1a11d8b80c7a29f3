"""What a person watching a stack wants from its Prometheus text: per app, worker, upstream and program.

The one place that turns `/metrics` text into numbers for `wsgistack top` and the dashboard. Two steps, both
pure: `parse_snapshot` reads one scrape (the Prometheus text format, through prometheus_client's own parser),
and `summarise` compares two scrapes (rates and latency quantiles come from the difference). `fetch_metrics`
is the only I/O: one GET of /metrics over TCP or a unix socket.

Series scraped by the supervisor of `wsgistack up` carry a `program` label; a lone `wsgistack serve` or
`wsgistack proxy` has none, and its series make one unnamed app (program "").
"""

from __future__ import annotations

import http.client
import math
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.errors import ConfigError

# the series this module reads (sample names, so counters end in _total and histograms in _bucket/_count)
DURATION_BUCKET = "http_server_request_duration_seconds_bucket"
DURATION_COUNT = "http_server_request_duration_seconds_count"
ACTIVE_REQUESTS = "http_server_active_requests"
WORKER_REQUESTS = "wsgistack_worker_requests_total"
WORKER_BUSY = "wsgistack_worker_busy"
WORKER_RSS = "wsgistack_worker_rss_bytes"
WORKER_UPTIME = "wsgistack_worker_uptime_seconds"
UPSTREAM_REQUESTS = "wsgistack_proxy_upstream_requests_total"
UPSTREAM_FAILURES = "wsgistack_proxy_upstream_failures_total"
UPSTREAM_STATE = "wsgistack_proxy_upstream_state"
UPSTREAM_ACTIVE = "wsgistack_proxy_upstream_active_connections"
PROGRAM_STATE = "wsgistack_program_state"
PROGRAM_RESTARTS = "wsgistack_program_restarts_total"
PROGRAM_UPTIME = "wsgistack_program_uptime_seconds"
PROCESS_START = "process_start_time_seconds"  # prometheus_client's process collector, when the exporter has it

METRICS_PATH = "/metrics"
MAX_SCRAPE_BYTES = 32 * 1024 * 1024  # far above any real scrape; a wrong endpoint streaming forever is cut
QUANTILES = (0.5, 0.95, 0.99)

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: hashable, one spelling per label set
Increase = Callable[[str, Labels], float]  # how much a counter series grew over the window
Rate = Callable[[float], "float | None"]  # an increase per second of the window (None without a window)


class MetricsError(Exception):
    """A scrape that failed or could not be read; the message is one line for the user."""


@dataclass(frozen=True)
class Snapshot:
    """One scrape: every sample by (sample name, labels), and when it was taken (monotonic and wall clock)."""

    at: float
    wall: float
    samples: Mapping[tuple[str, Labels], float]

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every (labels, value) of one sample name."""
        return [(dict(labels), value) for (sample, labels), value in self.samples.items() if sample == name]


@dataclass(frozen=True)
class AppSummary:
    """One app server (a program of the stack, or "" for a lone server): traffic, latency, errors."""

    program: str
    requests_total: float
    requests_per_second: float | None  # None: no earlier snapshot to compare with
    p50: float | None  # seconds; None: no request in the window
    p95: float | None
    p99: float | None
    errors_total: float  # 5xx responses since the process started
    errors_per_second: float | None
    active_requests: float


@dataclass(frozen=True)
class WorkerSummary:
    """One live worker of an app server."""

    program: str
    pid: str
    requests_total: float
    requests_per_second: float | None
    busy: bool
    rss_bytes: float | None
    uptime_seconds: float | None


@dataclass(frozen=True)
class UpstreamSummary:
    """One server of one upstream group of a proxy."""

    program: str
    upstream: str
    server: str
    state: str | None  # up, down, backup; None when the proxy reports none
    requests_per_second: float | None
    failures_total: float
    active_connections: float | None


@dataclass(frozen=True)
class ProgramSummary:
    """One program of the supervisor."""

    program: str
    state: str | None  # the supervisor's state name as the metric spells it (running, backoff, ...)
    restarts_total: float
    uptime_seconds: float | None


@dataclass(frozen=True)
class Summary:
    """Everything `top` shows, computed from one snapshot and (for rates and windows) the one before."""

    at: float
    wall: float
    window_seconds: float | None  # time between the two snapshots; None for a single one
    uptime_seconds: float | None
    apps: tuple[AppSummary, ...] = field(default=())
    workers: tuple[WorkerSummary, ...] = field(default=())
    upstreams: tuple[UpstreamSummary, ...] = field(default=())
    programs: tuple[ProgramSummary, ...] = field(default=())


def parse_snapshot(text: str, at: float, wall: float) -> Snapshot:
    """Read Prometheus text taken at `at` (time.monotonic()) and `wall` (time.time()); MetricsError if unreadable."""
    samples: dict[tuple[str, Labels], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        # prometheus_client says what it could not read, but not where: the first line is enough to recognise
        first = text.lstrip().split("\n", 1)[0][:60]
        raise MetricsError(f"not Prometheus text ({exc}; it starts {first!r})") from None
    return Snapshot(at, wall, samples)


def summarise(after: Snapshot, before: Snapshot | None = None) -> Summary:
    """The summary of `after`; rates and latency over the window since `before` (else since each process began).

    A counter lower than before belongs to a process that restarted: it is counted from zero.
    """
    window = after.at - before.at if before is not None and after.at > before.at else None
    previous = before.samples if before is not None else {}

    def increase(name: str, labels: Labels) -> float:
        return _increase(after.samples[(name, labels)], previous.get((name, labels)))

    def rate(total: float) -> float | None:
        return None if window is None else total / window

    return Summary(
        at=after.at, wall=after.wall, window_seconds=window, uptime_seconds=_uptime(after),
        apps=_apps(after, increase, rate), workers=_workers(after, increase, rate),
        upstreams=_upstreams(after, increase, rate), programs=_programs(after))


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of a histogram given as (upper bound, cumulative count) pairs, as Prometheus computes it.

    The bucket holding the rank q * count is found and the value interpolated linearly inside it (its lower
    bound is the bound below, or 0 for the first bucket); a rank in the +Inf bucket gives the highest finite
    bound. None when there is nothing to tell: no observation, or no +Inf bucket.
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return None
    if q < 0 or q > 1:
        return -math.inf if q < 0 else math.inf
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for index, (bound, count) in enumerate(ordered):
        if count >= rank:
            if math.isinf(bound):
                return ordered[index - 1][0]
            if index == 0 and bound <= 0:
                return bound
            if count == lower_count:  # q = 0 over an empty first bucket
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return ordered[-2][0]  # counts that go down (a torn scrape): the highest finite bound, as Prometheus


def metrics_address(text: str) -> Address:
    """A metrics endpoint as users write it: HOST:PORT, http://HOST:PORT[/metrics] or unix:PATH; ConfigError if not."""
    raw = text.strip()
    if raw.startswith(("http://", "tcp://")):
        raw = raw.removesuffix("/").removesuffix(METRICS_PATH)
    try:
        address = parse_address(raw)
    except ConfigError:
        address = None
    if address is None or address.kind == "fd":
        raise ConfigError(f"{text!r} is not a metrics address (write HOST:PORT or unix:PATH)")
    return address


def fetch_metrics(addr: str | Address, timeout: float) -> str:
    """GET /metrics at `addr` (HOST:PORT or unix:PATH) and return its text; MetricsError, one line, if it fails."""
    address = addr if isinstance(addr, Address) else metrics_address(addr)
    connection: http.client.HTTPConnection
    if address.kind == "unix":
        connection = _UnixHTTPConnection(address.path, timeout)
    else:
        connection = http.client.HTTPConnection(_reachable_host(address.host), address.port, timeout=timeout)
    try:
        # the classic text format: what every exporter speaks, and all this module reads
        connection.request("GET", METRICS_PATH, headers={"Accept": "text/plain; version=0.0.4"})
        response = connection.getresponse()
        body = response.read(MAX_SCRAPE_BYTES + 1)
    except TimeoutError:
        raise MetricsError(f"{_shown(address)}: no answer within {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise MetricsError(f"{_shown(address)}: {reason.lower() if reason[:1].isupper() else reason}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise MetricsError(f"{_shown(address)}{METRICS_PATH}: HTTP {response.status} {response.reason}")
    if len(body) > MAX_SCRAPE_BYTES:
        raise MetricsError(f"{_shown(address)}{METRICS_PATH}: more than {MAX_SCRAPE_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: the same request and response handling, another kind of socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _reachable_host(host: str) -> str:
    # a listener on every interface is reached on the loopback one
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _shown(address: Address) -> str:
    return str(address).removeprefix("http://")


def _increase(now: float, then: float | None) -> float:
    if then is None or now < then:  # new series, or a restarted process whose counter began again at zero
        return now
    return now - then


def _group(labels: Mapping[str, str]) -> str:
    return labels.get("program", "")


def _apps(snapshot: Snapshot, increase: Increase, rate: Rate) -> tuple[AppSummary, ...]:
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    requests: dict[str, float] = defaultdict(float)
    fresh: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    fresh_errors: dict[str, float] = defaultdict(float)
    active: dict[str, float] = defaultdict(float)
    for (name, labels), value in snapshot.samples.items():
        if name not in (DURATION_BUCKET, DURATION_COUNT, ACTIVE_REQUESTS):
            continue
        named = dict(labels)
        app = _group(named)
        if name == ACTIVE_REQUESTS:
            active[app] += value
        elif name == DURATION_BUCKET:
            try:
                bound = float(named.get("le", ""))
            except ValueError:
                continue
            buckets[app][bound] += increase(name, labels)  # every method, status and route of the app together
        else:
            requests[app] += value
            fresh[app] += increase(name, labels)
            if named.get("http_response_status_code", "").startswith("5"):
                errors[app] += value
                fresh_errors[app] += increase(name, labels)
    apps = []
    for app in sorted(set(requests) | set(active) | set(buckets)):
        p50, p95, p99 = (histogram_quantile(q, buckets[app].items()) for q in QUANTILES)
        apps.append(AppSummary(app, requests[app], rate(fresh[app]), p50, p95, p99, errors[app],
                               rate(fresh_errors[app]), active[app]))
    return tuple(apps)


def _workers(snapshot: Snapshot, increase: Increase, rate: Rate) -> tuple[WorkerSummary, ...]:
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    fresh: dict[tuple[str, str], float] = {}
    for (name, labels), value in snapshot.samples.items():
        if name in (WORKER_REQUESTS, WORKER_BUSY, WORKER_RSS, WORKER_UPTIME):
            named = dict(labels)
            key = (_group(named), named.get("pid", "?"))
            values[key][name] = value
            if name == WORKER_REQUESTS:
                fresh[key] = increase(name, labels)
    return tuple(
        WorkerSummary(program, pid, found.get(WORKER_REQUESTS, 0.0),
                      rate(fresh[(program, pid)]) if (program, pid) in fresh else None,
                      found.get(WORKER_BUSY, 0.0) > 0, found.get(WORKER_RSS), found.get(WORKER_UPTIME))
        for (program, pid), found in sorted(values.items(), key=lambda item: (item[0][0], _numeric(item[0][1]))))


def _upstreams(snapshot: Snapshot, increase: Increase, rate: Rate) -> tuple[UpstreamSummary, ...]:
    servers: set[tuple[str, str, str]] = set()
    states: dict[tuple[str, str, str], str] = {}
    fresh: dict[tuple[str, str, str], float] = {}
    failures: dict[tuple[str, str, str], float] = defaultdict(float)
    active: dict[tuple[str, str, str], float] = {}
    for (name, labels), value in snapshot.samples.items():
        if name not in (UPSTREAM_REQUESTS, UPSTREAM_FAILURES, UPSTREAM_STATE, UPSTREAM_ACTIVE):
            continue
        named = dict(labels)
        key = (_group(named), named.get("upstream", ""), named.get("server", ""))
        servers.add(key)
        if name == UPSTREAM_STATE:
            if value > 0:  # one series per possible state; the current one is 1
                states[key] = named.get("state", "?")
        elif name == UPSTREAM_REQUESTS:
            fresh[key] = increase(name, labels)
        elif name == UPSTREAM_FAILURES:
            failures[key] = value
        else:
            active[key] = value
    return tuple(UpstreamSummary(*key, states.get(key), rate(fresh[key]) if key in fresh else None,
                                 failures[key], active.get(key))
                 for key in sorted(servers))


def _programs(snapshot: Snapshot) -> tuple[ProgramSummary, ...]:
    programs: set[str] = set()
    states: dict[str, str] = {}
    restarts: dict[str, float] = defaultdict(float)
    uptimes: dict[str, float] = {}
    for (name, labels), value in snapshot.samples.items():
        if name not in (PROGRAM_STATE, PROGRAM_RESTARTS, PROGRAM_UPTIME):
            continue
        named = dict(labels)
        program = _group(named)
        programs.add(program)
        if name == PROGRAM_STATE:
            if value > 0:
                states[program] = named.get("state", "?")
        elif name == PROGRAM_RESTARTS:
            restarts[program] = value
        else:
            uptimes[program] = value
    return tuple(ProgramSummary(program, states.get(program), restarts[program], uptimes.get(program))
                 for program in sorted(programs))


def _uptime(snapshot: Snapshot) -> float | None:
    """How long the scraped process (the supervisor under `up`) has run, else its oldest program or worker."""
    start = snapshot.samples.get((PROCESS_START, ()))
    if start is not None:
        return max(0.0, snapshot.wall - start)
    ages = [value for (name, _), value in snapshot.samples.items() if name in (PROGRAM_UPTIME, WORKER_UPTIME)]
    return max(ages) if ages else None


def _numeric(pid: str) -> tuple[int, str]:
    return (int(pid), "") if pid.isdigit() else (1 << 62, pid)


__all__: Sequence[str] = (
    "AppSummary", "MetricsError", "ProgramSummary", "Snapshot", "Summary", "UpstreamSummary", "WorkerSummary",
    "fetch_metrics", "histogram_quantile", "metrics_address", "parse_snapshot", "summarise",
)
