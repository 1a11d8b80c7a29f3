"""The proxy benchmark: `wsgistack proxy` against nginx in front of the same app servers, interleaved and
repeated; writes bench/results/proxy.json and the proxy section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import machine
import proxy_report
from cases import SLOWLORIS_CONNECTIONS
from load import Slowloris, WrkResult, parse_wrk
from procs import READY_SECONDS, NotReady, ServerProcess, StartFailed, TreeProcess
from proxy_setups import (
    SESSIONS,
    UPLOAD_BYTES,
    Places,
    ProxyLoad,
    ProxySession,
    Stack,
    nginx_binary,
    write_static_files,
    write_upload_script,
)
from servers import BENCH_DIR, Server

log = logging.getLogger("bench.proxy")

RESULTS = BENCH_DIR / "results" / "proxy.json"
LOG_DIR = BENCH_DIR / "results" / "logs" / "proxy"
WARMUP_SECONDS = 1.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of `bash bench/run.sh --proxy`."""
    parser = argparse.ArgumentParser(prog="bash bench/run.sh --proxy", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s runs: checks the harness.")
    parser.add_argument("--repeats", type=int, help="Runs of each stack on each case (default 3; quick 1).")
    parser.add_argument("--duration", type=float, help="Seconds per wrk run (default 5; quick 2).")
    parser.add_argument("--report-only", action="store_true",
                        help="Rewrite the proxy section of docs/benchmarks.md from bench/results/proxy.json.")
    parser.add_argument("--sessions", metavar="APP[,APP]",
                        help=f"Only the sessions of these apps ({', '.join(s.app for s in SESSIONS)}): a partial "
                        "run writes bench/results/proxy.json and prints the goals, and leaves "
                        "docs/benchmarks.md alone.")
    args = parser.parse_args(argv)
    known = {session.app for session in SESSIONS}
    args.sessions = [app for app in (args.sessions or "").split(",") if app]
    if set(args.sessions) - known:
        parser.error(f"--sessions: unknown {sorted(set(args.sessions) - known)} (known: {', '.join(known)})")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    if args.repeats < 1 or args.repeats > 20 or args.duration <= 0 or args.duration > 60:
        parser.error("--repeats must be 1..20 and --duration 0..60 s")
    return args


def run_wrk(port: int, load: ProxyLoad, seconds: float, script: Path) -> WrkResult:
    """One `wrk -t1 --latency` run against the load's path on the front."""
    argv = ["wrk", "-t1", f"-c{load.connections}", f"-d{seconds:g}s", "--latency"]
    if load.upload:
        argv += ["-s", str(script)]
    argv.append(f"http://127.0.0.1:{port}{load.path}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def check_response(port: int, load: ProxyLoad) -> str | None:
    """Send the load's request once through the front; None if the answer is right, else what is wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30.0)
    try:
        if load.upload:
            conn.request("POST", load.path, body=b"x" * UPLOAD_BYTES,
                         headers={"Content-Type": "application/octet-stream"})
        else:
            conn.request("GET", load.path)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"{load.path}: {exc!r}"
    finally:
        conn.close()
    if response.status != 200:
        return f"{load.path} answered {response.status}"
    if load.expect_body is not None and body != load.expect_body:
        return f"{load.path}: body {body[:40]!r} is not {load.expect_body[:40]!r}"
    if load.expect_length is not None and len(body) != load.expect_length:
        return f"{load.path}: body of {len(body):,} bytes, not {load.expect_length:,}"
    return None


def wait_unix_ready(proc: ServerProcess, path: Path, timeout: float = READY_SECONDS) -> None:
    """Return once GET / on the unix socket answers 200; StartFailed if the server exits first."""
    deadline = time.monotonic() + timeout
    last = "no socket"
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise StartFailed(f"exited with {proc.proc.returncode}: {proc.log_tail()}")
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2.0)
                sock.connect(str(path))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                head = sock.recv(64)
            if head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
                return
            last = repr(head[:40])
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise NotReady(f"upstream not ready after {timeout:.0f} s ({last}): {proc.log_tail()}")


def measure(stack: Stack, session: ProxySession, repeat: int, seconds: float, work: Path, static_dir: Path,
            script: Path) -> list[dict]:
    """Start the stack (app server, then front), run the session's loads through it, stop both.

    Raises StartFailed if either process exits before serving: that stack is not available here.
    """
    slug = f"{stack.name.replace(' + ', '+').replace(' ', '-')}-{session.app}-{repeat}"
    places = Places(work / slug, static_dir)
    places.workdir.mkdir()
    base = {"server": stack.name, "repeat": repeat, "app": session.app}
    records = [{**base, "case": load.key} for load in session.loads]
    requests = 0
    with ExitStack() as running:
        if stack.whole is not None:
            # one process tree (`wsgistack up`): it starts its proxy once its app server is ready, so the port
            # answering 200 is readiness for both
            whole = Server(stack.name, lambda app, port, threads: stack.whole(app, places, port))
            front_proc = running.enter_context(TreeProcess(whole, session.app, 0, LOG_DIR / f"{slug}-up.log"))
            watched = (front_proc,)
        else:
            upstream = Server(f"{stack.name} (upstream)",
                              lambda app, port, threads: stack.upstream(app, places.socket))
            front = Server(stack.name, lambda app, port, threads: stack.front(places, port))
            # Stopped in reverse: the front first, so it never answers 502 for an upstream already gone.
            app_server = running.enter_context(
                ServerProcess(upstream, session.app, 0, LOG_DIR / f"{slug}-upstream.log"))
            front_proc = running.enter_context(
                ServerProcess(front, session.app, 0, LOG_DIR / f"{slug}-front.log"))
            watched = (app_server, front_proc)
        try:
            if stack.whole is None:
                wait_unix_ready(app_server, places.socket)
            front_proc.wait_ready()
        except NotReady as exc:
            for record in records:
                record["error"] = str(exc)
                _log_record(record)
            return records
        first = session.loads[0]
        try:
            requests += run_wrk(front_proc.port, first, WARMUP_SECONDS, script).requests
        except RuntimeError as exc:
            log.warning("%s: warm-up failed: %s", stack.name, exc)
        baseline: float | None = None
        for load, record in zip(session.loads, records, strict=True):
            try:
                record["check"] = check_response(front_proc.port, load) or "ok"
                requests += 1
                if load.slowloris:
                    with Slowloris(front_proc.port, SLOWLORIS_CONNECTIONS, max_seconds=seconds + 30) as crowd:
                        time.sleep(1.0)  # let every connection start its head before the load begins
                        result = run_wrk(front_proc.port, load, seconds, script)
                        record.update(slowloris_open=crowd.open_count(), slowloris_reconnects=crowd.reconnects,
                                      slowloris_failed_connects=crowd.failed_connects)
                    record.update(baseline_rps=baseline,
                                  slowloris_ratio=result.rps / baseline if baseline else None)
                else:
                    result = run_wrk(front_proc.port, load, seconds, script)
                    baseline = result.rps
                record.update(result.as_dict())
                requests += result.requests
                record["invalid"] = invalid_reason(record)
            except RuntimeError as exc:
                record["error"] = str(exc)
            exited = [p.server.name for p in watched if p.proc.poll() is not None]
            if exited:
                for unmeasured in records[records.index(record):]:
                    unmeasured["error"] = f"{', '.join(exited)} exited during the load"
                break
    lines = count_lines(places.access_log)
    for record in records:
        record.update(access_log_lines=lines, requests_this_start=requests)
        _log_record(record)
    log.info("  %-34s access log: %s lines for %s requests answered", stack.name, f"{lines:,}", f"{requests:,}")
    shutil.rmtree(places.workdir, ignore_errors=True)  # the access log and nginx's temp files
    return records


def invalid_reason(record: dict) -> str | None:
    """Why a measured run cannot count: a wrong answer to the check, non-2xx responses, or nothing answered."""
    if record["check"] != "ok":
        return f"check failed: {record['check']}"
    if record["non_2xx"]:
        return f"{record['non_2xx']:,} non-2xx responses"
    if not record["requests"]:
        return "no request answered"
    return None


def count_lines(path: Path) -> int:
    """Lines in a file; 0 if it is missing."""
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def _log_record(record: dict) -> None:
    if record.get("error"):
        log.info("  %-34s %-16s error: %s", record["server"], record["case"], record["error"])
        return
    extra = f"  INVALID: {record['invalid']}" if record.get("invalid") else ""
    if record.get("slowloris_ratio") is not None:
        extra += f"  {record['slowloris_ratio']:.2f}× own ({record['slowloris_open']} slow conns open)"
    log.info("  %-34s %-16s %9.0f req/s  p99 %8.2f ms  non-2xx %d  socket errors %d%s", record["server"],
             record["case"], record["rps"], record["p99_ms"] or 0.0, record["non_2xx"], record["socket_errors"],
             extra)


def run(args: argparse.Namespace) -> None:
    """The whole proxy benchmark, then the outputs."""
    for tool in ("wrk", nginx_binary()):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (bash bench/run.sh installs it)")
    started = time.monotonic()
    command = ["python", "bench/proxy.py"] if args.sessions else ["bash", "bench/run.sh", "--proxy"]
    meta = {
        "command": shlex.join([*command, *sys.argv[1:]]),
        "settings": {"quick": args.quick, "repeats": args.repeats, "duration": args.duration,
                     "sessions": args.sessions or "all"},
        "machine": machine.describe(),
        "versions": proxy_report.versions(),
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in LOG_DIR.glob("*.log"):
        old_log.unlink()
    unavailable: dict[str, str] = {}
    records: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="wsgistack-proxy-bench-"))
    try:
        static_dir, script = work / "static", work / "upload.lua"
        write_static_files(static_dir)
        write_upload_script(script)
        for index, session in enumerate(SESSIONS):
            if args.sessions and session.app not in args.sessions:
                continue
            for repeat in range(args.repeats):
                log.info("%s, repeat %d/%d", session.app, repeat + 1, args.repeats)
                shift = (index + repeat) % len(session.stacks)
                for stack in session.stacks[shift:] + session.stacks[:shift]:
                    if stack.name in unavailable:
                        continue
                    try:
                        records += measure(stack, session, repeat, args.duration, work, static_dir, script)
                    except StartFailed as exc:
                        unavailable[stack.name] = str(exc)
                        log.info("  %-34s n/a from now on: %s", stack.name, exc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta["elapsed_minutes"] = (time.monotonic() - started) / 60
    meta["unavailable"] = unavailable
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    if args.sessions:
        for line in proxy_report.goal_lines(proxy_report.ProxySummary(records)):
            log.info("%s", line)
        log.info("done in %.1f min: %s (a partial run: the page is left as it was)", meta["elapsed_minutes"],
                 RESULTS)
        return
    write_outputs(meta, records)
    log.info("done in %.1f min: %s, %s", meta["elapsed_minutes"], proxy_report.PAGE, RESULTS)


def write_outputs(meta: dict, records: list[dict]) -> None:
    """The section of docs/benchmarks.md, and the goals on the terminal."""
    summary = proxy_report.ProxySummary(records)
    proxy_report.write_section(proxy_report.render(meta, summary))
    for line in proxy_report.goal_lines(summary):
        log.info("%s", line)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `bench/.venv/bin/python bench/proxy.py [--quick]`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # SIGTERM must unwind like Ctrl-C does, so the servers are stopped by their finally blocks and atexit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.report_only:
        if not RESULTS.exists():
            sys.exit(f"bench: no {RESULTS.relative_to(BENCH_DIR.parent)} yet: run `bash bench/run.sh --proxy`")
        saved = json.loads(RESULTS.read_text())
        if saved["meta"]["settings"].get("sessions", "all") != "all":
            sys.exit(f"bench: {RESULTS.relative_to(BENCH_DIR.parent)} holds a partial run (--sessions): "
                     "the page is written from whole runs only")
        write_outputs(saved["meta"], saved["records"])
        return
    run(args)


if __name__ == "__main__":
    main()
