"""The gateway benchmark: nginx in front of `wsgistack serve --protocol uwsgi|fastcgi` and of the peers that
speak those protocols (uWSGI, flup), Flask's hello, wrk through nginx; interleaved repeats, medians, ratios.
Writes bench/results/gateway.json and prints the tables (Markdown) and the goals."""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path

import machine
from apps import HELLO
from gateway_setups import APP, CONNECTIONS, SESSIONS, GatewayStack, Session, nginx_front
from load import run_wrk
from procs import READY_SECONDS, NotReady, ServerProcess, StartFailed, TreeProcess, process_tree, signal_group
from proxy_setups import nginx_binary
from servers import BENCH_DIR, Server

log = logging.getLogger("bench.gateway")

RESULTS = BENCH_DIR / "results" / "gateway.json"
LOG_DIR = BENCH_DIR / "results" / "logs" / "gateway"
WARMUP_SECONDS = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# "CPU ratio": the reference's app CPU per request ÷ this stack's, which drifts less than req/s when others
# load the machine
TABLE_HEAD = ("| app server | keep_conn | req/s | ratio | p99 ms | valid runs | app CPU ms/req | CPU ratio | "
              "nginx CPU ms/req |\n|---|---|---|---|---|---|---|---|---|")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of `bash bench/run.sh --gateway`."""
    parser = argparse.ArgumentParser(prog="bash bench/run.sh --gateway", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s runs: checks the harness.")
    parser.add_argument("--repeats", type=int, help="Runs of each stack (default 3; quick 1).")
    parser.add_argument("--duration", type=float, help="Seconds per wrk run (default 5; quick 2).")
    parser.add_argument("--report-only", action="store_true", help="Print the tables from gateway.json.")
    parser.add_argument("--sessions", metavar="PROTOCOL[,PROTOCOL]",
                        help=f"Only these protocols ({', '.join(s.protocol for s in SESSIONS)}).")
    args = parser.parse_args(argv)
    known = {session.protocol for session in SESSIONS}
    args.sessions = [name for name in (args.sessions or "").split(",") if name]
    if set(args.sessions) - known:
        parser.error(f"--sessions: unknown {sorted(set(args.sessions) - known)} (known: {', '.join(known)})")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    if args.repeats < 1 or args.repeats > 20 or args.duration <= 0 or args.duration > 60:
        parser.error("--repeats must be 1..20 and --duration 0..60 s")
    return args


def check_answer(port: int) -> str | None:
    """GET / once through nginx; None if it is a 200 with the hello body, else what is wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"GET /: {exc!r}"
    finally:
        conn.close()
    if response.status != 200:
        return f"GET / answered {response.status}"
    if body != HELLO:
        return f"GET /: body {body[:40]!r} is not {HELLO!r}"
    return None


def wait_socket(proc: ServerProcess, path: Path, timeout: float = READY_SECONDS) -> None:
    """Return once the app server's unix socket exists; StartFailed if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise StartFailed(f"exited with {proc.proc.returncode}: {proc.log_tail()}")
        if path.exists():
            return
        time.sleep(0.05)
    raise NotReady(f"no socket after {timeout:.0f} s: {proc.log_tail()}")


def wait_answering(front: ServerProcess, upstream: ServerProcess, timeout: float = READY_SECONDS) -> None:
    """Return once nginx answers GET / right (the app server's workers are up); StartFailed if either exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for proc in (upstream, front):
            if proc.proc.poll() is not None:
                raise StartFailed(f"{proc.server.name} exited with {proc.proc.returncode}: {proc.log_tail()}")
        last = check_answer(front.port) or ""
        if not last:
            return
        time.sleep(0.1)
    raise NotReady(f"not answering after {timeout:.0f} s ({last}): {upstream.log_tail()}")


def cpu_ticks(pid: int) -> int:
    """User and system clock ticks of a process and its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total


class AppServerProcess(TreeProcess):
    """An app server whose stop reaches every process of its tree: flup's pre-forked children put themselves in
    process groups of their own, so the group's SIGTERM misses them, and their parent then waits 10 s for
    them before it exits (and is killed). The parent is told first: told after, it would fork new children
    in place of the ones that exited."""

    def stop(self) -> None:
        descendants = process_tree(self.proc.pid)[1:]
        signal_group(self.proc.pid, signal.SIGTERM)
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        super().stop()


def measure(stack: GatewayStack, repeat: int, seconds: float, work: Path) -> dict:
    """Start the app server, then nginx; check the answer, warm up, run wrk once; stop both."""
    slug = f"{re.sub(r'[^a-z0-9]+', '-', stack.name.lower()).strip('-')}-{repeat}"
    workdir = work / slug
    workdir.mkdir()
    socket_path = workdir / "app.sock"
    record: dict = {"server": stack.name, "protocol": stack.protocol, "repeat": repeat,
                    "load_average": round(os.getloadavg()[0], 2)}
    upstream = Server(f"{stack.name} (app server)", lambda app, port, threads: stack.upstream(socket_path))
    front = Server(f"nginx → {stack.name}",
                   lambda app, port, threads: nginx_front(workdir, socket_path, port, stack))
    with ExitStack() as running:
        app_server = running.enter_context(AppServerProcess(upstream, APP, 0, LOG_DIR / f"{slug}-app.log"))
        try:
            wait_socket(app_server, socket_path)
            # Stopped in reverse: nginx first, so it never answers 502 for an app server already gone.
            nginx = running.enter_context(ServerProcess(front, APP, 0, LOG_DIR / f"{slug}-nginx.log"))
            wait_answering(nginx, app_server)
        except NotReady as exc:
            record["error"] = str(exc)
            return record
        record["processes"] = app_server.process_count()
        try:
            run_wrk(nginx.port, CONNECTIONS, WARMUP_SECONDS)
        except RuntimeError as exc:
            log.warning("%s: warm-up failed: %s", stack.name, exc)
        record["check"] = check_answer(nginx.port) or "ok"
        app_before, nginx_before = cpu_ticks(app_server.proc.pid), cpu_ticks(nginx.proc.pid)
        try:
            result = run_wrk(nginx.port, CONNECTIONS, seconds)
        except RuntimeError as exc:
            record["error"] = str(exc)
            return record
        app_cpu = (cpu_ticks(app_server.proc.pid) - app_before) / CLOCK_TICKS
        nginx_cpu = (cpu_ticks(nginx.proc.pid) - nginx_before) / CLOCK_TICKS
        record.update(result.as_dict())
        if result.requests:
            record["app_cpu_ms_per_request"] = app_cpu * 1000 / result.requests
            record["nginx_cpu_ms_per_request"] = nginx_cpu * 1000 / result.requests
        record["app_cpu_share"] = app_cpu / seconds  # of one core
        exited = [p.server.name for p in (app_server, nginx) if p.proc.poll() is not None]
        if exited:
            record["error"] = f"{', '.join(exited)} exited during the load"
        record["invalid"] = invalid_reason(record)
    shutil.rmtree(workdir, ignore_errors=True)
    return record


def invalid_reason(record: dict) -> str | None:
    """Why a run cannot count: a wrong answer to the check, non-2xx responses, socket errors, or nothing."""
    if record["check"] != "ok":
        return f"check failed: {record['check']}"
    if record["non_2xx"]:
        return f"{record['non_2xx']:,} non-2xx responses"
    if record["socket_errors"]:
        return f"{record['socket_errors']:,} socket errors ({record['error_detail']})"
    if not record["requests"]:
        return "no request answered"
    return None


def log_record(record: dict) -> None:
    """One line per run on the terminal."""
    if record.get("error"):
        log.info("  %-38s error: %s", record["server"], record["error"])
        return
    extra = f"  INVALID: {record['invalid']}" if record.get("invalid") else ""
    log.info("  %-38s %8.0f req/s  p99 %7.2f ms  app CPU %.3f ms/req (%.2f cores)  non-2xx %d  "
             "socket errors %d%s", record["server"], record["rps"], record["p99_ms"] or 0.0,
             record.get("app_cpu_ms_per_request") or 0.0, record["app_cpu_share"], record["non_2xx"],
             record["socket_errors"], extra)


def versions() -> dict[str, str]:
    """nginx's version, the packages', and the checkout's commit."""
    done = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=10, check=False)
    found = {"nginx": (done.stderr or done.stdout).strip().removeprefix("nginx version: nginx/")}
    for name in ("wsgistack", "uWSGI", "flup", "Flask", "Werkzeug"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    commit = subprocess.run(["git", "-C", str(BENCH_DIR.parent), "log", "-1", "--format=%h %cI"],
                            capture_output=True, text=True, timeout=10, check=False)
    found["checkout"] = commit.stdout.strip() or "?"
    return found


def run(args: argparse.Namespace) -> dict:
    """Every session: repeat → stacks in rotated order, a fresh start of each for each run."""
    for tool in ("wrk", nginx_binary()):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (bash bench/run.sh installs it)")
    started = time.monotonic()
    meta = {
        # run.sh passes --quick, --repeats, --duration and --report-only on; --sessions is this script's own
        "command": shlex.join([*(["python", "bench/gateway.py"] if args.sessions else
                                 ["bash", "bench/run.sh", "--gateway"]), *sys.argv[1:]]),
        "settings": {"quick": args.quick, "repeats": args.repeats, "duration": args.duration,
                     "connections": CONNECTIONS, "app": APP, "sessions": args.sessions or "all"},
        "machine": machine.describe(),
        "versions": versions(),
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in LOG_DIR.glob("*.log"):
        old_log.unlink()
    sessions = [s for s in SESSIONS if not args.sessions or s.protocol in args.sessions]
    unavailable: dict[str, str] = {}
    records: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="wsgistack-gateway-bench-"))
    try:
        for repeat in range(args.repeats):
            for index, session in enumerate(sessions):
                log.info("%s, repeat %d/%d", session.protocol, repeat + 1, args.repeats)
                shift = (index + repeat) % len(session.stacks)
                for stack in session.stacks[shift:] + session.stacks[:shift]:
                    if stack.name in unavailable:
                        continue
                    try:
                        record = measure(stack, repeat, args.duration, work)
                    except StartFailed as exc:
                        unavailable[stack.name] = str(exc)
                        log.info("  %-38s n/a from now on: %s", stack.name, exc)
                        continue
                    records.append(record)
                    log_record(record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta["elapsed_minutes"] = (time.monotonic() - started) / 60
    meta["unavailable"] = unavailable
    saved = {"meta": meta, "records": records}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    log.info("done in %.1f min: %s", meta["elapsed_minutes"], RESULTS)
    return saved


def median(records: list[dict], stack: str, field: str) -> float | None:
    """The median of a field over a stack's valid runs."""
    values = [r[field] for r in records if r["server"] == stack and not r.get("error") and not r.get("invalid")
              and r.get(field) is not None]
    return statistics.median(values) if values else None


def reference_value(records: list[dict], session: Session) -> tuple[str | None, float | None]:
    """The best of the session's reference peers: its name and median req/s."""
    medians = [(median(records, name, "rps"), name) for name in session.reference]
    measured = [(value, name) for value, name in medians if value is not None]
    if not measured:
        return None, None
    value, name = max(measured)
    return name, value


def render(saved: dict) -> str:
    """The Markdown tables, one per protocol, and the goal lines."""
    records, meta = saved["records"], saved["meta"]
    loads = sorted(r["load_average"] for r in records if "load_average" in r)
    spread = f" (1-minute load at the runs' starts {loads[0]:g}–{loads[-1]:g})" if loads else ""
    lines = [f"`{meta['command']}`, {meta['machine']['date']}, load average {meta['machine']['load_average']}{spread}, "
             f"{meta['settings']['repeats']} × {meta['settings']['duration']:g} s, c{CONNECTIONS}; "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    goals = []
    for session in SESSIONS:
        stacks = [s for s in session.stacks if any(r["server"] == s.name for r in records)
                  or s.name in meta["unavailable"]]
        if not stacks:
            continue
        ref_name, ref_value = reference_value(records, session)
        ref_cpu = median(records, ref_name, "app_cpu_ms_per_request") if ref_name else None
        title = (f"nginx → {session.protocol} (unix socket), medians of valid runs; ratios to "
                 f"{ref_name or 'the peer (not measured)'}:")
        lines += [title, "", TABLE_HEAD]
        for stack in stacks:
            lines.append(_row(records, meta, stack, ref_value, ref_cpu))
        lines.append("")
        goal_value = median(records, session.goal_stack, "rps")
        ratio = goal_value / ref_value if goal_value is not None and ref_value else None
        verdict = "n/a" if ratio is None else ("met" if ratio >= session.goal_factor else "NOT met")
        goals.append(f"goal {session.goal_stack} ≥ {session.goal_factor:g}× {ref_name or 'peer'}: "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}×'} ({verdict})")
    return "\n".join(lines + goals) + "\n"


def _row(records: list[dict], meta: dict, stack: GatewayStack, ref_value: float | None,
         ref_cpu: float | None) -> str:
    runs = [r for r in records if r["server"] == stack.name]
    valid = [r for r in runs if not r.get("error") and not r.get("invalid")]
    rps = median(records, stack.name, "rps")
    cpu = median(records, stack.name, "app_cpu_ms_per_request")
    name = stack.name + (" (informative)" if stack.informative else "")
    if stack.name in meta["unavailable"]:
        return f"| {name} | | n/a: {meta['unavailable'][stack.name][:120]} | | | | | | |"
    problems = sorted({r.get("invalid") or r.get("error") for r in runs if r not in valid})
    cells = [name, "on" if stack.keep_conn else "off", f"{rps:,.0f}" if rps is not None else "n/a",
             f"{rps / ref_value:.2f}×" if rps is not None and ref_value else "",
             _fmt(median(records, stack.name, "p99_ms"), 2),
             f"{len(valid)}/{len(runs)}" + (f" ({'; '.join(problems)[:160]})" if problems else ""),
             _fmt(cpu, 3), f"{ref_cpu / cpu:.2f}×" if cpu and ref_cpu else "",
             _fmt(median(records, stack.name, "nginx_cpu_ms_per_request"), 3)]
    return "| " + " | ".join(cells) + " |"


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    """Entry point: `bench/.venv/bin/python bench/gateway.py [--quick]`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # SIGTERM must unwind like Ctrl-C does, so the servers are stopped by their exit paths and atexit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.report_only:
        if not RESULTS.exists():
            sys.exit(f"bench: no {RESULTS.relative_to(BENCH_DIR.parent)} yet: run `bash bench/run.sh --gateway`")
        saved = json.loads(RESULTS.read_text())
    else:
        saved = run(args)
    print(render(saved))


if __name__ == "__main__":
    main()
