"""The metrics benchmark: what `--metrics-bind` costs, and what ten thousand worker restarts do to a scrape.

1. Cost: `wsgistack serve apps:flask_hello` with and without --metrics-bind (a scraper reading /metrics once a
   second during the runs with it), interleaved repeats of wrk, medians; the goal is a ratio ≥ 0.97.
2. Restarts: `serve --max-requests 1` (every request retires its worker) for --restarts requests, then the
   scrape's time (median of 5) and whether its counters are exact.

Run with `bench/.venv/bin/python bench/metrics.py` (bash bench/run.sh installs the venv); bench/results/
metrics.json keeps the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import machine
from gateway import CLOCK_TICKS, cpu_ticks
from load import run_wrk
from procs import ServerProcess, StartFailed
from servers import BENCH_DIR, BIN_DIR, WORKERS, Server

log = logging.getLogger("bench.metrics")
RESULTS = BENCH_DIR / "results" / "metrics.json"
LOG_DIR = BENCH_DIR / "results" / "logs" / "metrics"
CONNECTIONS = 64
GOAL = 0.97  # with metrics ≥ 97 % of the throughput without
RESTARTS_DEADLINE = 30 * 60.0  # seconds: the restart run stops there, whatever --restarts says


def serve(metrics: Path | None, extra: tuple[str, ...] = ()) -> Server:
    """`wsgistack serve` of the bench's apps, event worker (the default), with or without metrics."""
    def build(app: str, port: int, threads: int) -> list[str]:
        argv = [str(BIN_DIR / "wsgistack"), "serve", f"apps:{app}", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", *extra]
        return argv + (["--metrics-bind", f"unix:{metrics}"] if metrics else [])
    return Server("wsgistack serve" + (" --metrics-bind" if metrics else ""), build, wsgistack=True)


def scrape(path: Path) -> tuple[float, str]:
    """(seconds, body) of one GET /metrics on the unix socket."""
    started = time.monotonic()
    conn = _UnixConnection(str(path))
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return time.monotonic() - started, body


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def total(body: str, name: str, needle: str = "") -> float:
    """The sum of the samples named `name` (whose line holds `needle`)."""
    found = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if needle in line:
                found += float(line.rsplit(" ", 1)[1])
    return found


def cost_run(work: Path, with_metrics: bool, seconds: float, repeat: int) -> dict:
    """One wrk run against a fresh server."""
    socket_path = work / f"metrics-{repeat}.sock"
    server = serve(socket_path if with_metrics else None)
    record: dict = {"metrics": with_metrics, "repeat": repeat}
    with ServerProcess(server, "flask_hello", 1, LOG_DIR / f"cost-{int(with_metrics)}-{repeat}.log") as proc:
        proc.wait_ready()
        run_wrk(proc.port, CONNECTIONS, 1.0)  # warm-up
        stop = threading.Event()
        scrapes: list[float] = []

        def scraper() -> None:  # Prometheus' default interval is 15 s; once a second is a busy scraper
            while not stop.wait(1.0):
                scrapes.append(scrape(socket_path)[0])

        thread = threading.Thread(target=scraper, daemon=True)
        if with_metrics:
            thread.start()
        before = cpu_ticks(proc.proc.pid)
        result = run_wrk(proc.port, CONNECTIONS, seconds)
        if result.requests:  # the server's CPU per request moves less than req/s on a shared machine
            record["cpu_us_per_request"] = (cpu_ticks(proc.proc.pid) - before) / CLOCK_TICKS * 1e6 / result.requests
        stop.set()
        if with_metrics:
            thread.join()
            record["scrape_ms"] = round(statistics.median(scrapes) * 1000, 2) if scrapes else None
            record["counted"] = total(scrape(socket_path)[1], "http_server_request_duration_seconds_count")
        record.update(result.as_dict())
    return record


def restarts_run(work: Path, count: int) -> dict:
    """`--max-requests 1`: `count` requests, so as many worker restarts; then the scrape."""
    socket_path = work / "restarts.sock"
    server = serve(socket_path, ("-k", "sync", "--max-requests", "1"))
    answered = 0
    started = time.monotonic()
    with ServerProcess(server, "plain", 1, LOG_DIR / "restarts.log") as proc:
        proc.wait_ready()
        settle = time.monotonic() + 30
        while True:  # the readiness request's worker retires too: start from a count where it is reaped
            body = scrape(socket_path)[1]
            before = total(body, "http_server_request_duration_seconds_count")
            restarts_before = total(body, "wsgistack_server_worker_restarts_total", 'cause="max_requests"')
            # the readiness request was answered (so is counted once its worker gets to it) and its worker reaped
            if before >= 1 and restarts_before == before or time.monotonic() > settle:
                break
            time.sleep(0.1)
        lock = threading.Lock()

        def client() -> None:
            nonlocal answered
            while time.monotonic() - started < RESTARTS_DEADLINE:
                with lock:
                    if answered >= count:
                        return
                    answered += 1
                conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
                try:
                    conn.request("GET", "/")
                    conn.getresponse().read()
                finally:
                    conn.close()

        threads = [threading.Thread(target=client) for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 30
        while True:  # the last retiring workers are reaped within a moment
            timings, body = zip(*(scrape(socket_path) for _ in range(5)))
            counted = total(body[-1], "http_server_request_duration_seconds_count") - before
            restarts = total(body[-1], "wsgistack_server_worker_restarts_total", 'cause="max_requests"') \
                - restarts_before
            if restarts >= answered or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    return {"requests": answered, "seconds": round(elapsed, 1), "counted": counted, "restarts": restarts,
            "scrape_ms_median": round(statistics.median(timings) * 1000, 2), "scrape_bytes": len(body[-1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/.venv/bin/python bench/metrics.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5,
                        help="Runs with and without metrics (default 5; 0: only the restarts).")
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds per wrk run (default 5).")
    parser.add_argument("--restarts", type=int, default=10_000, help="Worker restarts (default 10000; 0: none).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = Path(tempfile.mkdtemp(prefix="wsgistack-metrics-bench-"))
    records = []
    try:
        for repeat in range(args.repeats):
            for with_metrics in ((False, True) if repeat % 2 == 0 else (True, False)):
                record = cost_run(work, with_metrics, args.duration, repeat)
                records.append(record)
                log.info("  metrics %-5s %8.0f req/s  p99 %6.2f ms  CPU %5.1f µs/req  non-2xx %d%s", with_metrics,
                         record["rps"], record["p99_ms"] or 0, record.get("cpu_us_per_request") or 0,
                         record["non_2xx"],
                         f"  scrape {record['scrape_ms']} ms, counted {record['counted']:.0f}"
                         if with_metrics else "")
        restarts = restarts_run(work, args.restarts) if args.restarts else None
    except StartFailed as exc:
        sys.exit(f"bench: {exc}")
    ratio = cpu_ratio = None
    if records:
        without = statistics.median(r["rps"] for r in records if not r["metrics"])
        with_ = statistics.median(r["rps"] for r in records if r["metrics"])
        ratio = with_ / without
        cpu_without = statistics.median(r["cpu_us_per_request"] for r in records if not r["metrics"])
        cpu_with = statistics.median(r["cpu_us_per_request"] for r in records if r["metrics"])
        cpu_ratio = cpu_without / cpu_with
    saved = {"command": shlex.join(["python", "bench/metrics.py", *(argv or sys.argv[1:])]),
             "machine": machine.describe(), "records": records, "ratio": ratio,
             "cpu_ratio": cpu_ratio, "restarts": restarts}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    print(f"\n`{saved['command']}`, {saved['machine']['date']}, load average {saved['machine']['load_average']}")
    if ratio is not None:
        print(f"Flask hello, event worker, -w {WORKERS}, wrk c{CONNECTIONS}, {args.repeats} × {args.duration:g} s: "
              f"without metrics {without:,.0f} req/s, with {with_:,.0f} req/s: {ratio:.3f}× "
              f"(goal ≥ {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}); the server's CPU per request "
              f"{cpu_without:.1f} µs without, {cpu_with:.1f} µs with: {cpu_ratio:.3f}×")
    if restarts:
        exact = restarts["counted"] == restarts["requests"] == restarts["restarts"]
        print(f"--max-requests 1: {restarts['requests']:,} requests in {restarts['seconds']} s, "
              f"{restarts['restarts']:,.0f} restarts counted, {restarts['counted']:,.0f} requests counted "
              f"({'exact' if exact else 'NOT exact'}); a scrape then takes {restarts['scrape_ms_median']} ms "
              f"(median of 5), {restarts['scrape_bytes']:,} bytes")


if __name__ == "__main__":
    main()
