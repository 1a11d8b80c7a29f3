"""The proxy benchmark's medians, ratios to nginx and goals, and its section of docs/benchmarks.md."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cases import SLOWLORIS_CONNECTIONS
from proxy_setups import (
    LOADS,
    NGINX,
    PROXY_WORKERS,
    SESSIONS,
    STACK_INLINE,
    STACK_NGINX,
    STACK_SYNC,
    STACK_UP,
    STACK_UP_INLINE,
    STACKS,
    UP_PROXY_WORKERS,
    UPSTREAM_KEEPALIVE,
    WSGISTACK_PROXY,
    Places,
    Stack,
    nginx_binary,
    nginx_config,
    up_config,
    wsgistack_config,
)
from report import NA, _ms, _num, _ratio, _table
from servers import BENCH_DIR, WORKERS
from summary import Summary

PAGE = BENCH_DIR.parent / "docs" / "benchmarks.md"
START, END = "<!-- proxy-bench:start -->", "<!-- proxy-bench:end -->"
PACKAGES = ("wsgistack", "gunicorn", "Flask", "Werkzeug", "httptools", "uvloop")


@dataclass(frozen=True)
class ProxyGoal:
    """A target for one wsgistack stack on one case: a factor of a reference stack's median, or of its own."""

    text: str
    case: str
    stack: str
    metric: str
    factor: float
    reference: str  # a stack; for slowloris_ratio shown beside, not divided by


GOALS: tuple[ProxyGoal, ...] = (
    ProxyGoal("proxy_hello: wsgistack proxy ≥ 0.6× nginx", "proxy_hello", WSGISTACK_PROXY.name, "rps", 0.6,
              NGINX.name),
    ProxyGoal("static_10k: wsgistack proxy ≥ 0.8× nginx", "static_10k", WSGISTACK_PROXY.name, "rps", 0.8,
              NGINX.name),
    ProxyGoal("static_1m: wsgistack proxy ≥ 1.0× nginx", "static_1m", WSGISTACK_PROXY.name, "rps", 1.0,
              NGINX.name),
    ProxyGoal(f"stack_flask: {STACK_INLINE.name} ≥ 1.5× {STACK_NGINX.name}", "stack_flask", STACK_INLINE.name,
              "rps", 1.5, STACK_NGINX.name),
    ProxyGoal(f"stack_flask, like for like: {STACK_SYNC.name} ≥ 1.5× {STACK_NGINX.name}", "stack_flask",
              STACK_SYNC.name, "rps", 1.5, STACK_NGINX.name),
    ProxyGoal(f"stack_flask, one wsgistack.toml: {STACK_UP_INLINE.name} ≥ 1.5× {STACK_NGINX.name}",
              "stack_flask", STACK_UP_INLINE.name, "rps", 1.5, STACK_NGINX.name),
    ProxyGoal(f"stack_flask, one wsgistack.toml, like for like: {STACK_UP.name} ≥ 1.5× {STACK_NGINX.name}",
              "stack_flask", STACK_UP.name, "rps", 1.5, STACK_NGINX.name),
    ProxyGoal(f"stack_flask ({STACK_INLINE.name}) with {SLOWLORIS_CONNECTIONS} slowloris ≥ 0.9× its own req/s "
              "without", "stack_slowloris", STACK_INLINE.name, "slowloris_ratio", 0.9, STACK_NGINX.name),
    ProxyGoal(f"stack_flask ({STACK_SYNC.name}) with {SLOWLORIS_CONNECTIONS} slowloris ≥ 0.9× its own req/s "
              "without", "stack_slowloris", STACK_SYNC.name, "slowloris_ratio", 0.9, STACK_NGINX.name),
)


def versions() -> dict[str, str]:
    """nginx's version and the installed version of each Python package in the stacks."""
    try:
        done = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=10, check=False)
        found = {"nginx": (done.stderr or done.stdout).strip().removeprefix("nginx version: nginx/")}
    except OSError:
        found = {"nginx": "not installed"}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


class ProxySummary:
    """Medians over the valid runs (non-2xx, failed checks and empty runs excluded), and ratios to nginx."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records
        self.stacks = [stack for stack in STACKS if any(r["server"] == stack.name for r in records)]
        self.valid = Summary([r for r in records if not r.get("invalid")], [s.name for s in self.stacks],
                             [s.name for s in self.stacks if s.wsgistack])
        self.reference = {load.key: session.reference for session in SESSIONS for load in session.loads}
        self.case_stacks = {load.key: session.stacks for session in SESSIONS for load in session.loads}

    def value(self, stack: str, case: str, metric: str) -> float | None:
        """The median of a metric over the valid runs."""
        return self.valid.value(stack, case, metric)

    def ratio(self, stack: str, case: str, metric: str = "rps") -> float | None:
        """A stack's median ÷ the case's reference stack's (nginx in front)."""
        mine, theirs = self.value(stack, case, metric), self.value(self.reference[case], case, metric)
        return mine / theirs if mine is not None and theirs else None

    def measured(self, stack: str, case: str) -> list[dict]:
        """Every run that produced wrk figures, valid or not."""
        return [r for r in self.records if r["server"] == stack and r["case"] == case and "rps" in r]

    def total(self, stack: str, case: str, field: str) -> int | None:
        """A count (non_2xx, socket_errors) summed over every measured run."""
        runs = self.measured(stack, case)
        return sum(r.get(field, 0) for r in runs) if runs else None

    def problems(self, stack: str, case: str) -> list[str]:
        """Why runs of this stack and case are invalid or measured nothing."""
        return [r.get("invalid") or r["error"] for r in self.records
                if r["server"] == stack and r["case"] == case and (r.get("invalid") or r.get("error"))]

    def check(self, goal: ProxyGoal) -> tuple[float | None, float | None, float | None, str]:
        """A goal's value, reference figure, ratio, and verdict: PASS, FAIL, INVALID or n/a."""
        value = self.value(goal.stack, goal.case, goal.metric)
        reference = self.value(goal.reference, goal.case, goal.metric)
        ratio = value if goal.metric == "slowloris_ratio" else self.ratio(goal.stack, goal.case, goal.metric)
        if self.problems(goal.stack, goal.case) or self.problems(goal.reference, goal.case):
            return value, reference, ratio, "INVALID"
        if ratio is None:
            return value, reference, ratio, NA
        return value, reference, ratio, "PASS" if ratio >= goal.factor else "FAIL"


def _figure(metric: str, value: float | None) -> str:
    return _ratio(value) if metric == "slowloris_ratio" else f"{_num(value)} req/s"


def goal_lines(summary: ProxySummary) -> list[str]:
    """One line per goal for the terminal: verdict, figures, ratio and target."""
    lines = []
    for goal in GOALS:
        value, reference, ratio, verdict = summary.check(goal)
        lines.append(f"{verdict:7} {goal.text}: {_figure(goal.metric, value)} vs {goal.reference} "
                     f"{_figure(goal.metric, reference)} → {_ratio(ratio)} (goal ≥ {goal.factor:.2f}×)")
    return lines


def render(meta: dict, summary: ProxySummary) -> str:
    """The proxy section, markers excluded."""
    machine, settings = meta["machine"], meta["settings"]
    out = [
        "## Proxy: `wsgistack proxy` against nginx",
        "",
        (f"Measured {machine['date']} with `{meta['command']}` (repeats: {settings['repeats']}, "
         f"{settings['duration']:g} s per wrk run, {meta['elapsed_minutes']:.0f} min in all). Raw records: "
         "`bench/results/proxy.json`; `bash bench/run.sh --proxy --report-only` rewrites this section from it."),
        "",
    ]
    if settings["quick"]:
        out += [(f"> **Quick run**: {settings['repeats']} repeat(s) of {settings['duration']:g} s runs, a check "
                 "that the harness works. The figures are indicative only; `bash bench/run.sh --proxy` is the "
                 "one to quote."), ""]
    out += [(f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory']}, {machine['os']}, "
             f"{machine['kernel']}, Python {machine['python']}, {machine['wrk']}; load average at start "
             f"{machine['load_average']}."), ""]
    out += _method(meta)
    out += _goals(summary)
    out += _cases(summary, meta.get("unavailable", {}))
    if meta.get("unavailable"):
        out += ["Not available in this run:", ""]
        out += [f"- {name}: {reason[:300]}" for name, reason in meta["unavailable"].items()] + [""]
    return "\n".join(out)


METHOD = """\
### Method

- Each stack is a front on 127.0.0.1 and an app server with {workers} workers on a unix socket behind it.
  The fronts run as they ship: nginx with {workers} worker processes (`auto` on this machine), `wsgistack
  proxy` with {proxy_workers} (its default; a second one measured slower on 2 cores shared with the app
  server and wrk). wrk (`wrk -t1 --latency`) and the slowloris crowd run on the same machine and talk to
  the front only.
- Both fronts: keep-alive to the upstream ({keepalive} idle connections), the same headers set upstream
  (Host, X-Forwarded-For/-Proto/-Host/-Port, X-Request-ID, which is also added to the response), an access
  log to a file in combined format, a 2 MiB body limit, and `/static/` served from a folder
  of generated files (nginx with `sendfile on`). Everything else is each front's default: nginx buffers a
  1 MiB upload to a temp file, `wsgistack proxy` keeps bodies up to 1 MiB in memory.
- `{up}` is one process tree instead: `wsgistack up -c wsgistack.toml` runs the app server
  ([serve]: the same app, worker class `sync`, {workers} workers, on a unix socket in its private run
  folder) and, once that is ready, the proxy ([proxy]: {up_proxy_workers} workers, as nginx has, and the
  fronts' setup below); it is ready when its port answers 200.
- Each stack start: wait until the app server answers on its socket and the front answers 200, 1 s of
  warm-up load, then for each case one request checked by hand (status 200 and the expected body or
  length) and the measured wrk run. A run with a failed check, any non-2xx response, or no response is
  **invalid**: shown, never counted in a median or a goal.
- The slowloris run follows stack_flask on the same processes: {slowloris} connections to the front each
  send one byte of a never-ending request head every 0.5 s; its ratio is to that stack's own req/s just
  before.
- Interleaved: for each case and each of the {repeats} repeat(s), every stack runs once, in an order
  rotated per repeat. Tables show medians over the valid runs; non-2xx responses and socket errors are
  summed over all runs.
- Versions: {versions}.

The stacks (`SOCK` is a unix socket in the run's temp folder; each front reads the config below, written
for each start with a free port):
"""


def _method(meta: dict) -> list[str]:
    text = METHOD.format(workers=WORKERS, proxy_workers=PROXY_WORKERS, up=STACK_UP.name,
                         up_proxy_workers=UP_PROXY_WORKERS, keepalive=UPSTREAM_KEEPALIVE,
                         slowloris=SLOWLORIS_CONNECTIONS,
                         repeats=meta["settings"]["repeats"],
                         versions=", ".join(f"{name} {version}" for name, version in meta["versions"].items()))
    places = Places(Path("/tmp/RUN/STACK"), Path("/tmp/RUN/static"))
    return [
        *text.splitlines(), "",
        *_table(["stack", "front", "app server", "cases"], [_stack_row(stack) for stack in STACKS]), "",
        "<details><summary>The fronts' configs, as written for each start</summary>", "",
        "```nginx", nginx_config(places, 8080).rstrip(), "```", "",
        "```toml", wsgistack_config(places, 8080).rstrip(), "```", "",
        f"`{STACK_UP.name}` (all of it, for the Flask hello):", "",
        "```toml", up_config("flask_hello", places, 8080).rstrip(), "```", "", "</details>", "",
    ]


def _stack_row(stack: Stack) -> list[str]:
    sessions = [session for session in SESSIONS if stack in session.stacks]
    apps = ",".join(session.app for session in sessions)
    cases = ", ".join(load.key for session in sessions for load in session.loads)
    if stack.whole is not None:
        return [stack.name, "`wsgistack up -c wsgistack.toml`: its [proxy]",
                f"its [serve]: `apps:{apps}`, {stack.whole_serve}, {WORKERS} workers", cases]
    argv = stack.upstream(f"{{{apps}}}" if len(sessions) > 1 else apps, Path("SOCK"))
    argv[0] = Path(argv[0]).name
    front = "`wsgistack proxy -c wsgistack.toml`" if stack.wsgistack else "`nginx -c nginx.conf`"
    name = stack.name + (" (informative)" if stack.informative else "")
    return [name, front, f"`{' '.join(argv)}`", cases]


def _goals(summary: ProxySummary) -> list[str]:
    rows = []
    for goal in GOALS:
        value, reference, ratio, verdict = summary.check(goal)
        rows.append([goal.text, _figure(goal.metric, value), f"{goal.reference}: {_figure(goal.metric, reference)}",
                     _ratio(ratio), f"≥ {goal.factor:.2f}×", f"**{verdict}**" if verdict == "PASS" else verdict])
    return ["### Goals", "",
            "The slowloris goal's ratio is the stack's own; nginx + gunicorn sync's own ratio is beside it.", "",
            *_table(["goal", "wsgistack", "reference", "ratio", "target", "verdict"], rows), ""]


def _cases(summary: ProxySummary, unavailable: dict[str, str]) -> list[str]:
    out = ["### Results per case", ""]
    for load in LOADS:
        reference = summary.reference[load.key]
        header = ["stack", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors", f"÷ {reference}"]
        if load.slowloris:
            header.append("÷ own req/s without")
        header.append("invalid or failed runs")
        rows = []
        for stack in summary.case_stacks[load.key]:
            name = stack.name + (" (informative)" if stack.informative else "")
            if stack not in summary.stacks:
                if stack.name in unavailable:
                    rows.append([name, *[NA] * (len(header) - 2), "not available (below)"])
                continue
            non_2xx, sockets = summary.total(stack.name, load.key, "non_2xx"), summary.total(
                stack.name, load.key, "socket_errors")
            row = [f"**{name}**" if stack.wsgistack else name,
                   _num(summary.value(stack.name, load.key, "rps")),
                   _ms(summary.value(stack.name, load.key, "p50_ms")),
                   _ms(summary.value(stack.name, load.key, "p99_ms")),
                   NA if non_2xx is None else f"{non_2xx:,}", NA if sockets is None else f"{sockets:,}",
                   _ratio(summary.ratio(stack.name, load.key))]
            if load.slowloris:
                row.append(_ratio(summary.value(stack.name, load.key, "slowloris_ratio")))
            row.append("; ".join(problem[:120] for problem in summary.problems(stack.name, load.key)) or "none")
            rows.append(row)
        out += [f"#### {load.title}", "", *_table(header, rows), ""]
    return out


def write_section(section: str) -> None:
    """Replace what is between the markers in docs/benchmarks.md (appending them if absent); nothing else."""
    page = PAGE.read_text() if PAGE.exists() else "# Benchmarks\n"
    block = f"{START}\n{section.rstrip()}\n{END}"
    start, end = page.find(START), page.find(END)
    if start != -1 and end > start:
        page = page[:start] + block + page[end + len(END):]
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(page)
