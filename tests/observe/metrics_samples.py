"""Prometheus text as a stack's metrics endpoint serves it, for the tests of observe/summary.py and `top`.

`stack_text(n)` is the n-th scrape of a running `wsgistack up` (the supervisor's one /metrics: every series of
a child carries its `program` label); counters grow by the same amount between any two scrapes, so the numbers
over a window are known exactly. `serve_text(n)` is a lone `wsgistack serve` (no `program` label).
"""

from __future__ import annotations

BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5",
          "10.0", "+Inf")
START = 1_764_500_000.0  # process_start_time_seconds of the scraped process (the supervisor)
BASE = 50  # scrapes' worth of traffic before scrape 0

# requests added between two scrapes, per bucket (not cumulative), for each (method, status, route)
FAST = {"0.005": 10, "0.01": 30, "0.025": 40, "0.05": 15, "0.075": 5}  # 100 requests, GET 200 /
FAILING = {"0.5": 2}  # 2 requests, GET 500 /boom, between 0.25 and 0.5 s
SLOW_AT_START = {"2.5": 20}  # 20 requests before scrape 0 only, between 1 and 2.5 s (a cold start)


def _histogram(name: str, labels: str, per_bucket: dict[str, int], times: int, extra: dict[str, int]) -> list[str]:
    lines, total = [], 0
    for bound in BOUNDS:
        total += per_bucket.get(bound, 0) * times + extra.get(bound, 0)
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {total}')
    lines.append(f"{name}_count{{{labels}}} {total}")
    lines.append(f"{name}_sum{{{labels}}} {total * 0.02:.3f}")
    return lines


HTTP_TYPES = ["# HELP http_server_request_duration_seconds Duration of HTTP server requests.",
              "# TYPE http_server_request_duration_seconds histogram"]
ACTIVE_TYPES = ["# HELP http_server_active_requests Requests being answered.",
                "# TYPE http_server_active_requests gauge"]


def _http(program: str, n: int, base: int = BASE) -> list[str]:
    """The request duration histograms of one app server (or the proxy), in the fixed bucket layout."""
    who = f'program="{program}",' if program else ""
    times = base + n
    name = "http_server_request_duration_seconds"
    lines = _histogram(name, f'{who}http_request_method="GET",http_response_status_code="200",http_route="/"',
                        FAST, times, SLOW_AT_START if base else {})
    lines += _histogram(name, f'{who}http_request_method="GET",http_response_status_code="500",http_route="/boom"',
                        FAILING, times, {})
    return lines


def _active(program: str) -> str:
    return f'http_server_active_requests{{program="{program}"}}' if program else "http_server_active_requests"


def _server(program: str, n: int, base: int = BASE) -> list[str]:
    who = f'program="{program}",' if program else ""
    only = f"{{{who.rstrip(',')}}}" if who else ""
    return [
        "# TYPE wsgistack_server_workers gauge", f"wsgistack_server_workers{only} 2",
        "# TYPE wsgistack_server_workers_busy gauge", f"wsgistack_server_workers_busy{only} 1",
        "# TYPE wsgistack_server_worker_restarts_total counter",
        f'wsgistack_server_worker_restarts_total{{{who}cause="crash"}} 1',
        f'wsgistack_server_worker_restarts_total{{{who}cause="max_requests"}} {n}',
        "# TYPE wsgistack_worker_requests_total counter",
        f'wsgistack_worker_requests_total{{{who}pid="101"}} {10 * base + 60 * n}',
        f'wsgistack_worker_requests_total{{{who}pid="102"}} {round(9.6 * base) + 42 * n}',
        "# TYPE wsgistack_worker_busy gauge",
        f'wsgistack_worker_busy{{{who}pid="101"}} 1', f'wsgistack_worker_busy{{{who}pid="102"}} 0',
        "# TYPE wsgistack_worker_rss_bytes gauge",
        f'wsgistack_worker_rss_bytes{{{who}pid="101"}} 52428800', f'wsgistack_worker_rss_bytes{{{who}pid="102"}} 48234496',
        "# TYPE wsgistack_worker_uptime_seconds gauge",
        f'wsgistack_worker_uptime_seconds{{{who}pid="101"}} {3600 + n}',
        f'wsgistack_worker_uptime_seconds{{{who}pid="102"}} {1800 + n}',
    ]


def _proxy(n: int) -> list[str]:
    web, backup, api = ('upstream="web",server="unix:/tmp/wsgistack/web.sock"',
                        'upstream="web",server="127.0.0.1:9001"', 'upstream="api",server="127.0.0.1:9002"')
    lines = ["# TYPE wsgistack_proxy_upstream_requests_total counter"]
    lines += [f'wsgistack_proxy_upstream_requests_total{{program="proxy",{web}}} {5100 + 102 * n}',
              f'wsgistack_proxy_upstream_requests_total{{program="proxy",{backup}}} 0',
              f'wsgistack_proxy_upstream_requests_total{{program="proxy",{api}}} 40',
              "# TYPE wsgistack_proxy_upstream_failures_total counter",
              f'wsgistack_proxy_upstream_failures_total{{program="proxy",{web}}} 3',
              f'wsgistack_proxy_upstream_failures_total{{program="proxy",{api}}} {17 + n}',
              "# TYPE wsgistack_proxy_upstream_active_connections gauge",
              f'wsgistack_proxy_upstream_active_connections{{program="proxy",{web}}} 4',
              "# TYPE wsgistack_proxy_upstream_state gauge"]
    for server, current in ((web, "up"), (backup, "backup"), (api, "down")):
        lines += [f'wsgistack_proxy_upstream_state{{program="proxy",{server},state="{state}"}} '
                  f'{1 if state == current else 0}' for state in ("up", "down", "backup")]
    return lines


def _programs(n: int) -> list[str]:
    lines = ["# TYPE wsgistack_program_state gauge"]
    for program, current in (("web", "running"), ("proxy", "running"), ("mailer", "backoff")):
        lines += [f'wsgistack_program_state{{program="{program}",state="{state}"}} {1 if state == current else 0}'
                  for state in ("stopped", "starting", "running", "backoff", "stopping", "exited", "fatal")]
    return lines + [
        "# TYPE wsgistack_program_restarts_total counter",
        'wsgistack_program_restarts_total{program="web"} 1', 'wsgistack_program_restarts_total{program="proxy"} 0',
        f'wsgistack_program_restarts_total{{program="mailer"}} {7 + n}',
        "# TYPE wsgistack_program_uptime_seconds gauge",
        f'wsgistack_program_uptime_seconds{{program="web"}} {3600 + n}',
        f'wsgistack_program_uptime_seconds{{program="proxy"}} {3700 + n}',
        'wsgistack_program_uptime_seconds{program="mailer"} 0',
    ]


def stack_text(n: int) -> str:
    """The n-th scrape of the supervisor's /metrics under `wsgistack up` (programs web, proxy, mailer)."""
    lines = ["# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
             "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {START}"]
    lines += HTTP_TYPES + _http("web", n) + _http("proxy", n)
    lines += ACTIVE_TYPES + [f"{_active('web')} 3", f"{_active('proxy')} 1"]
    lines += _server("web", n) + _proxy(n) + _programs(n)
    return "\n".join(lines) + "\n"


def serve_text(n: int, base: int = BASE) -> str:
    """The n-th scrape of a lone `wsgistack serve --metrics-bind`: no `program` label anywhere.

    `base=0` is a server just started: nothing before scrape 0 (no slow start either).
    """
    lines = HTTP_TYPES + _http("", n, base) + ACTIVE_TYPES + [f"{_active('')} 3"] + _server("", n, base)
    return "\n".join(lines) + "\n"
