"""Run the benchmark: every server on every case, interleaved and repeated; write the JSON, page and chart."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import signal
import sys
import time

import chart
import machine
import report
from cases import SESSIONS, SLOWLORIS_CONNECTIONS, Session
from load import Slowloris, run_wrk
from procs import NotReady, ServerProcess, StartFailed
from servers import BENCH_DIR, SERVERS, Server, threads_for
from summary import Summary

log = logging.getLogger("bench")

RESULTS = BENCH_DIR / "results" / "latest.json"
PARTIAL = BENCH_DIR / "results" / "partial.json"  # a run of some servers or cases: not the page's figures
LOG_DIR = BENCH_DIR / "results" / "logs"
PAGE = BENCH_DIR.parent / "docs" / "benchmarks.md"
IMAGE = BENCH_DIR.parent / "docs" / "img" / "benchmarks.png"
WARMUP_SECONDS = 1.0
SETTLE_SECONDS = 1.0
# between two wrk runs: the server closes the last run's connections before the next run connects. A worker
# still closing 64 of them looks loaded to its siblings (wsgistack's accept shares, docs/workers.md), and
# the run after the warm-up would land on whichever sibling was not (all 64 when the warm-up's connections
# were all on one worker, as when the other booted after the first answer).
QUIET_SECONDS = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of `bash bench/run.sh`."""
    parser = argparse.ArgumentParser(prog="bash bench/run.sh", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s runs: checks the harness.")
    parser.add_argument("--repeats", type=int, help="Runs of each server on each case (default 3; quick 1).")
    parser.add_argument("--duration", type=float, help="Seconds per wrk run (default 5; quick 2).")
    parser.add_argument("--servers", help="Comma-separated server names to run (default: all), e.g. "
                                          "'wsgistack thread,granian'. A partial run writes only "
                                          "bench/results/partial.json, never the page.")
    parser.add_argument("--sessions", help="Comma-separated apps to run (default: all), e.g. "
                                           "'plain,flask_json'. A partial run too.")
    parser.add_argument("--report-only", action="store_true",
                        help="Rewrite the page and chart from bench/results/latest.json without running.")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    if args.repeats < 1 or args.repeats > 20 or args.duration <= 0 or args.duration > 60:
        parser.error("--repeats must be 1..20 and --duration 0..60 s")
    return args


def selected_servers(names: str | None) -> list[Server]:
    """The servers to run, in their table order."""
    if not names:
        return list(SERVERS)
    wanted = [name.strip() for name in names.split(",")]
    unknown = set(wanted) - {server.name for server in SERVERS}
    if unknown:
        sys.exit(f"bench: unknown server(s): {', '.join(sorted(unknown))}; "
                 f"known: {', '.join(server.name for server in SERVERS)}")
    return [server for server in SERVERS if server.name in wanted]


def selected_sessions(names: str | None) -> list[Session]:
    """The sessions (apps) to run, in their table order."""
    if not names:
        return list(SESSIONS)
    wanted = {name.strip() for name in names.split(",")}
    unknown = wanted - {session.app for session in SESSIONS}
    if unknown:
        sys.exit(f"bench: unknown session(s): {', '.join(sorted(unknown))}; "
                 f"known: {', '.join(session.app for session in SESSIONS)}")
    return [session for session in SESSIONS if session.app in wanted]


def rotated(servers: list[Server], by: int) -> list[Server]:
    """The servers in an order shifted by `by`, so no server always runs first (or last) in a repeat."""
    shift = by % len(servers)
    return servers[shift:] + servers[:shift]


def measure(server: Server, session: Session, repeat: int, seconds: float) -> list[dict]:
    """Start one server on the session's app, run its loads, stop it; one record per load.

    Raises StartFailed if the server exits before serving: that server is not available here.
    """
    slug = server.name.replace(" ", "-")
    base = {"server": server.name, "repeat": repeat, "app": session.app}
    records = [{**base, "case": load.key} for load in session.loads]
    with ServerProcess(server, session.app, threads_for(session.app),
                       LOG_DIR / f"{slug}-{session.app}-{repeat}.log") as proc:
        try:
            proc.wait_ready()
        except NotReady as exc:
            for record in records:
                record["error"] = str(exc)
            return records
        memory = {}
        if session.memory:
            time.sleep(SETTLE_SECONDS)
            memory = {"rss_idle_kib": proc.rss_kib(), "processes": proc.process_count()}
        first = session.loads[0]
        try:
            run_wrk(proc.port, first.connections, WARMUP_SECONDS, post=first.post)
        except RuntimeError as exc:
            log.warning("%s: warm-up failed: %s", server.name, exc)
        baseline: float | None = None
        for load, record in zip(session.loads, records, strict=True):
            time.sleep(QUIET_SECONDS)
            try:
                if load.slowloris:
                    with Slowloris(proc.port, SLOWLORIS_CONNECTIONS, max_seconds=seconds + 30) as crowd:
                        time.sleep(1.0)  # let every connection start its head before the load begins
                        result = run_wrk(proc.port, load.connections, seconds)
                        record.update(slowloris_open=crowd.open_count(),
                                      slowloris_reconnects=crowd.reconnects,
                                      slowloris_failed_connects=crowd.failed_connects)
                    record.update(baseline_rps=baseline,
                                  slowloris_ratio=result.rps / baseline if baseline else None)
                else:
                    result = run_wrk(proc.port, load.connections, seconds, post=load.post)
                    baseline = result.rps
                record.update(result.as_dict())
            except RuntimeError as exc:
                record["error"] = str(exc)
            if proc.proc.poll() is not None:
                for unmeasured in records[records.index(record):]:
                    unmeasured["error"] = f"server exited during the load: {proc.log_tail()}"
                _log_record(record)
                break
            if load is first and memory:
                record.update(memory, rss_load_kib=proc.rss_kib())
            _log_record(record)
    return records


def _log_record(record: dict) -> None:
    if record.get("error"):
        log.info("  %-18s %-14s error: %s", record["server"], record["case"], record["error"])
        return
    extra = ""
    if record.get("slowloris_ratio") is not None:
        extra = f"  {record['slowloris_ratio']:.2f}× own ({record['slowloris_open']} slow conns open)"
    if record.get("rss_load_kib"):
        extra = f"  RSS {record['rss_idle_kib'] / 1024:.0f} → {record['rss_load_kib'] / 1024:.0f} MiB"
    errors = record["non_2xx"] + record["socket_errors"]
    log.info("  %-18s %-14s %9.0f req/s  p99 %8.2f ms  errors %d%s", record["server"], record["case"],
             record["rps"], record["p99_ms"] or 0.0, errors, extra)


def run(args: argparse.Namespace) -> None:
    """The whole benchmark, then the outputs."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (bash bench/run.sh installs it)")
    servers = selected_servers(args.servers)
    sessions = selected_sessions(args.sessions)
    partial = len(servers) < len(SERVERS) or len(sessions) < len(SESSIONS)
    started = time.monotonic()
    meta = {
        "command": shlex.join(["bash", "bench/run.sh", *sys.argv[1:]]),
        "settings": {"quick": args.quick, "repeats": args.repeats, "duration": args.duration},
        "machine": machine.describe(),
        "versions": machine.versions(),
    }
    # Logs of an earlier run would pass for this one's when a server is looked into afterwards.
    for old_log in LOG_DIR.glob("*.log"):
        old_log.unlink()
    unavailable: dict[str, str] = {}
    records: list[dict] = []
    for index, session in enumerate(sessions):
        for repeat in range(args.repeats):
            log.info("%s, repeat %d/%d", session.app, repeat + 1, args.repeats)
            for server in rotated(servers, index + repeat):
                if server.name in unavailable or not server.serves(session.app):
                    continue
                try:
                    records += measure(server, session, repeat, args.duration)
                except StartFailed as exc:
                    unavailable[server.name] = str(exc)
                    log.info("  %-18s n/a from now on: %s", server.name, exc)
    meta["elapsed_minutes"] = (time.monotonic() - started) / 60
    meta["unavailable"] = unavailable
    out = PARTIAL if partial else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    if partial:
        log.info("done in %.1f min: %s (a partial run: the page is not rewritten)", meta["elapsed_minutes"], out)
        return
    write_outputs(meta, records, [server.name for server in servers])
    log.info("done in %.1f min: %s, %s, %s", meta["elapsed_minutes"], PAGE, IMAGE, RESULTS)


def write_outputs(meta: dict, records: list[dict], names: list[str]) -> None:
    """docs/benchmarks.md and docs/img/benchmarks.png from the records."""
    wsgistack = [server.name for server in SERVERS if server.wsgistack and server.name in names]
    single = [server.name for server in SERVERS if server.single_process]
    references = [server.name for server in SERVERS if server.reference]
    summary = Summary(records, names, wsgistack, single, references)
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    # the sections other benchmarks write between their markers (bench/proxy.py's) stay as they are
    kept = ""
    if PAGE.exists():
        old = PAGE.read_text()
        first_marker = old.find("<!-- ")
        kept = "\n" + old[first_marker:] if first_marker != -1 else ""
    PAGE.write_text(report.render(meta, summary, meta["unavailable"]) + kept)
    subtitle = f"{meta['machine']['cpus']} CPUs, {meta['machine']['date']}"
    if meta["settings"]["quick"]:
        subtitle += " (quick run)"
    chart.draw(summary, IMAGE, subtitle)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `bench/.venv/bin/python bench/run.py [--quick]`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # SIGTERM must unwind like Ctrl-C does, so the servers are stopped by their finally blocks and atexit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.report_only:
        saved = json.loads(RESULTS.read_text())
        names = list(dict.fromkeys(record["server"] for record in saved["records"]))
        names += [name for name in saved["meta"]["unavailable"] if name not in names]
        write_outputs(saved["meta"], saved["records"], [s.name for s in SERVERS if s.name in names])
        return
    run(args)


if __name__ == "__main__":
    main()
