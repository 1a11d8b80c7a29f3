"""docs/benchmarks.md: the machine, the method, the goal checks, the ratios and one table per case."""

from __future__ import annotations

from pathlib import Path

from apps import IO_WAIT_SECONDS
from cases import LOADS, SLOWLORIS_CONNECTIONS
from servers import BENCH_DIR, FLOOR, IO_THREADS, SERVERS, THREADS, WORKERS, Server
from summary import HIGHER_IS_BETTER, GoalCheck, Summary

NA = "n/a"
METRIC_NAMES = {
    "rps": "req/s",
    "p99_ms": "p99 latency",
    "rss_idle_kib": "RSS idle",
    "rss_load_kib": "RSS after load",
    "slowloris_ratio": "req/s with slowloris ÷ without",
}


def _num(value: float | None, digits: int = 0) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def _mib(kib: float | None) -> str:
    return NA if kib is None else f"{kib / 1024:,.0f}"


def _ratio(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}×"


def _figure(metric: str, value: float | None) -> str:
    if metric.endswith("_kib"):
        return f"{_mib(value)} MiB"
    if metric.endswith("_ms"):
        return f"{_ms(value)} ms"
    if metric == "slowloris_ratio":
        return _ratio(value)
    return f"{_num(value)} req/s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _command_line(server: Server) -> str:
    argv = server.argv("APP", 8000, THREADS)
    argv[0] = Path(argv[0]).name  # the venv's path says nothing to a reader
    return " ".join(arg.replace(str(BENCH_DIR), "bench") for arg in argv)


def render(meta: dict, summary: Summary, unavailable: dict[str, str]) -> str:
    """The whole page, from the run's metadata and its summary."""
    machine, settings = meta["machine"], meta["settings"]
    out = [
        "# Benchmarks",
        "",
        (f"Measured {machine['date']} with `{meta['command']}` (repeats: {settings['repeats']}, "
        f"{settings['duration']:g} s per wrk run, {meta['elapsed_minutes']:.0f} min in all). "
        "Regenerate this page, the chart and `bench/results/latest.json` with the same command; "
        "`bash bench/run.sh --help` lists the options."),
        "",
    ]
    if settings["quick"]:
        out += [(f"> **Quick run**: {settings['repeats']} repeat(s) of {settings['duration']:g} s runs, a "
                 "check that the harness works. The figures are indicative only; the full run "
                 "(`bash bench/run.sh`) is the one to quote."), ""]
    out += ["![median req/s per case and server](img/benchmarks.png)", ""]
    out += _machine_section(meta)
    out += _method_section(settings)
    out += _goal_section(summary)
    out += _ratio_section(summary)
    out += _case_sections(summary)
    out += _server_section(meta, summary, unavailable)
    return "\n".join(out) + "\n"


def _machine_section(meta: dict) -> list[str]:
    machine, versions = meta["machine"], meta["versions"]
    rows = [
        ["date (UTC)", machine["date"]],
        ["CPUs (`nproc`)", machine["cpus"]],
        ["CPU", machine["cpu"]],
        ["memory", machine["memory"]],
        ["OS, kernel", f"{machine['os']}, {machine['kernel']}"],
        ["Python", machine["python"]],
        ["wrk", machine["wrk"]],
        ["load average at start", machine["load_average"]],
    ]
    rows += [[name, version] for name, version in versions.items()]
    return ["## Machine", "", *_table(["", ""], rows), ""]


METHOD = """\
## Method

- Every server runs the same apps (`bench/apps.py`) with {workers} worker processes on 127.0.0.1; wrk
  (`wrk -t1 --latency`) runs on the same machine, so client and servers share its cores.
- Thread pools: {threads} threads per worker for wsgistack's pool classes, gunicorn gthread, granian's
  blocking threads and uWSGI; {io_threads} per worker for the 20 ms case (its 64 connections over {workers}
  workers all in flight: 64 / 20 ms = 3,200 req/s), kept at {io_threads} for c256. waitress, a single
  process, gets the threads of both workers.
- Each server start: wait for `GET /` to answer 200, 1 s of warm-up load, then the measured runs of that
  app. The plain hello is followed, on the same process, by the same load with {slowloris} slowloris
  connections open (each sends one byte of a never-ending request head every 0.5 s); its ratio is to that
  server's own throughput just before.
- Memory: VmRSS summed over the server's whole process tree, 1 s after it is ready (idle) and right after
  the Flask hello run (after load). Shared pages count once per process, for every server alike.
- Interleaved: for each case and each of the {repeats} repeat(s), every server runs once, in an order
  rotated per repeat, so slow drift of a noisy machine spreads over all of them. Tables show medians over
  the repeats; errors (non-2xx responses and socket errors) are summed.
- The 20 ms case also runs its floor (`bench/floor.py`): no WSGI and no app, a 20 ms loop timer per
  request in {workers} processes. It is no peer, only a yardstick: what this machine allows that case.
- Ratios compare each wsgistack worker class with the best peer (every server not wsgistack) of the same
  run. For req/s higher is better; for latency and memory lower is better, so there a ratio below 1.00×
  means wsgistack is ahead. Memory compares only with peers that run a master and {workers} workers (not
  waitress).
"""

CAVEATS = """\
- **waitress** is a single process with a thread pool: its throughput is one core's worth of Python, and
  its memory is one process's.
- **wsgistack sync** and **gunicorn sync** close the connection after each response (they are meant to sit
  behind a buffering proxy), so wrk reconnects for every request; a slowloris connection holds a whole
  worker.
- **uWSGI** speaks HTTP itself with `--http11-socket`: the keep-alive variant of `--http-socket`, whose
  plain form answers HTTP/1.1 without keep-alive and without `Connection: close`, which wrk counts as read
  errors. It gets `--listen 1024`, since its default backlog of 100 refuses the slowloris case.
- **waitress** gets `--connection-limit 1000` (default 100), the same as wsgistack's and gunicorn gevent's
  limits, so the c256 and slowloris cases are not refused by a default.
- **granian** does HTTP in Rust and runs the WSGI app in its blocking threads; `--blocking-threads` is the
  thread count above.
- The 20 ms route sleeps with `time.sleep`; gevent workers monkey-patch it into a cooperative sleep.
"""


def _method_section(settings: dict) -> list[str]:
    text = METHOD.format(workers=WORKERS, threads=THREADS, io_threads=IO_THREADS,
                         slowloris=SLOWLORIS_CONNECTIONS, repeats=settings["repeats"])
    return [*text.splitlines(), ""]


def _goal_section(summary: Summary) -> list[str]:
    rows = [_goal_row(check) for check in summary.checks()]
    return ["## Goals", "", "For wsgistack's best worker class on each metric, or for the defaults where the goal "
            "says so (`wsgistack serve APP -w 2` against `granian --interface wsgi --workers 2`).", "",
            *_table(["goal", "wsgistack best", "reference", "ratio", "met"], rows), "", *_floor_lines(summary)]


def _floor_lines(summary: Summary) -> list[str]:
    """What the 20 ms case's floor reached in this run, against the limits its goals name."""
    if FLOOR not in summary.references:
        return []
    reached = []
    for load in LOADS:
        value = summary.value(FLOOR, load.key, "rps")
        if load.key.startswith("flask_io") and value is not None:
            limit = load.connections / IO_WAIT_SECONDS
            reached.append(f"{_num(value)} req/s at c{load.connections} ({value / limit:.2f} of {_num(limit)})")
    if not reached:
        return []
    return [(f"The 20 ms case's floor in the same run (`bench/floor.py`: no WSGI and no app, a 20 ms loop timer "
             f"per request, {WORKERS} processes) reached {' and '.join(reached)}: the most this machine "
             "allows those cases, with wrk on the same cores."), ""]


def _goal_row(check: GoalCheck) -> list[str]:
    goal = check.goal
    best = NA if check.best_class is None else f"{check.best_class.removeprefix('wsgistack ')}: " \
        f"{_figure(goal.metric, check.value)}"
    if goal.peer:
        reference = f"{goal.peer}: {_figure(goal.metric, check.reference)}"
    else:
        reference = "own, without slowloris" if goal.metric == "slowloris_ratio" else _figure(goal.metric,
                                                                                             goal.fixed)
    verdict = NA if check.met is None else ("**met**" if check.met else "not met")
    return [goal.text, best, reference, _ratio(check.ratio), verdict]


def _ratio_section(summary: Summary) -> list[str]:
    classes = [name.removeprefix("wsgistack ") for name in summary.wsgistack]
    rows = []
    for load in LOADS:
        for metric in ("rps", "p99_ms"):
            rows.append(_ratio_row(summary, load.title, load.key, metric))
    for metric in ("rss_idle_kib", "rss_load_kib"):
        rows.append(_ratio_row(summary, "Flask hello", "flask_hello", metric))
    return ["## wsgistack relative to the best peer", "",
            "Median of the wsgistack class ÷ median of the best peer on that row.", "",
            *_table(["case", "metric", *classes, "best peer"], rows), ""]


def _ratio_row(summary: Summary, title: str, case: str, metric: str) -> list[str]:
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    peer, best = summary.best(summary.peers_for(metric), case, metric)
    cells = [_ratio(summary.ratio_to_best_peer(name, case, metric)) for name in summary.wsgistack]
    best_cell = NA if peer is None else f"{peer} ({_figure(metric, best)})"
    return [title, f"{METRIC_NAMES[metric]} ({better} is better)", *cells, best_cell]


def _case_sections(summary: Summary) -> list[str]:
    out = ["## Results per case", ""]
    for load in LOADS:
        header = ["server", "req/s", "p50 ms", "p99 ms", "errors"]
        if load.slowloris:
            header.append("÷ own req/s without")
        rows = []
        for name in summary.servers:
            if name in summary.references and not (summary.ok(name, load.key) or summary.failures(name, load.key)):
                continue  # a yardstick of other cases
            row = [_bold(name, summary), _num(summary.value(name, load.key, "rps")),
                   _ms(summary.value(name, load.key, "p50_ms")), _ms(summary.value(name, load.key, "p99_ms")),
                   _errors(summary, name, load.key)]
            if load.slowloris:
                row.append(_ratio(summary.value(name, load.key, "slowloris_ratio")))
            rows.append(row)
        out += [f"### {load.title}", "", *_table(header, rows), ""]
    rows = [[_bold(name, summary), _num(summary.value(name, "flask_hello", "processes")),
             _mib(summary.value(name, "flask_hello", "rss_idle_kib")),
             _mib(summary.value(name, "flask_hello", "rss_load_kib"))] for name in summary.servers
            if name not in summary.references]
    out += ["### Memory (Flask hello app)", "",
            *_table(["server", "processes", "RSS idle MiB", "RSS after load MiB"], rows), ""]
    return out


def _bold(name: str, summary: Summary) -> str:
    return f"**{name}**" if name in summary.wsgistack else name


def _errors(summary: Summary, name: str, case: str) -> str:
    failures = summary.failures(name, case)
    if not summary.ok(name, case):
        return NA
    count = f"{summary.errors(name, case):,}"
    return f"{count} ({len(failures)} failed runs)" if failures else count


def _server_section(meta: dict, summary: Summary, unavailable: dict[str, str]) -> list[str]:
    rows = []
    for server in SERVERS:
        if server.name not in summary.servers:
            continue
        note = server.caveat
        if server.name in unavailable:
            note = f"not available: {unavailable[server.name]}"
        rows.append([_bold(server.name, summary), f"`{_command_line(server)}`", note])
    out = ["## Servers and caveats", "",
           (f"Commands as run (`APP` is the case's app, the port is a free one; `--threads` or its "
            f"equivalent is {THREADS}, or {IO_THREADS} for the 20 ms case)."), "",
           *_table(["server", "command", "caveat"], rows), ""]
    out += CAVEATS.splitlines()
    failed = [(name, load.title, error) for name in summary.servers for load in LOADS
              for error in summary.failures(name, load.key) if name not in unavailable]
    if failed:
        out += ["", "Failed runs (no figure recorded):", ""]
        out += [f"- {name}, {title}: {error[:200]}" for name, title, error in failed[:20]]
    return out + [""]
