"""Before/after: the same wsgistack cases from two source trees, interleaved, as medians and ratios.

    git worktree add /tmp/before <commit>      # or: git archive <commit> | tar -x -C /tmp/before
    python bench/ab.py --before /tmp/before [--repeats 3] [--duration 5] [--cases serve_event,proxy_hello]

Each case starts wsgistack from one tree (PYTHONPATH puts that tree's package first), measures it with wrk,
stops it, then does the same with the other tree; the order alternates from one repeat to the next so a
drift of the machine falls on both sides. Prints one row per case (median req/s of each tree, after ÷
before) and writes bench/results/ab.json. A run with non-2xx answers or socket errors is reported, not
counted. Everything binds 127.0.0.1 or a unix socket in a temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from load import run_wrk  # noqa: E402
from procs import free_port  # noqa: E402

REPO_DIR = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "ab.json"
READY_SECONDS = 20.0


@dataclass(frozen=True)
class Case:
    """One measured setup: an app server, optionally the proxy in front of it, and wrk's concurrency."""

    name: str
    serve: tuple[str, ...]  # `wsgistack serve` arguments after the app
    app: str
    proxy: bool
    connections: int


CASES = {
    case.name: case for case in (
        Case("serve_event", ("-k", "event", "-w", "2", "--threads", "1"), "plain", False, 64),
        Case("serve_thread", ("-k", "thread", "-w", "2"), "plain", False, 64),
        Case("serve_sync", ("-k", "sync", "-w", "2"), "plain", False, 64),
        Case("proxy_hello", ("-k", "event", "-w", "1", "--threads", "1"), "plain", True, 64),
        Case("proxy_big", ("-k", "event", "-w", "1", "--threads", "1"), "flask_big", True, 16),
        Case("stack_sync", ("-k", "sync", "-w", "2"), "flask_hello", True, 64),
    )
}


class Setup:
    """The processes of one case from one tree, in their own sessions, always stopped."""

    def __init__(self, case: Case, tree: Path, work: Path) -> None:
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(tree))
        python = [sys.executable, "-m", "wsgistack"]
        log = open(work / "log.txt", "ab")
        socket = work / "app.sock"
        bind = f"unix:{socket}" if case.proxy else f"127.0.0.1:{self.port}"
        self._spawn([*python, "serve", f"apps:{case.app}", *case.serve, "-b", bind, "--log-level", "warning"],
                    env, log)
        if case.proxy:
            self._wait(lambda: socket.exists())
            config = work / "wsgistack.toml"
            config.write_text(
                f'[proxy]\nlisten = ["127.0.0.1:{self.port}"]\nworkers = 1\n'
                f'access_log = "{work / "access.log"}"\nlog_level = "warning"\n'
                f'[proxy.upstreams.app]\nservers = ["unix:{socket}"]\nkeepalive = 64\n'
                f'[[proxy.routes]]\npath = "/"\nupstream = "app"\n')
            self._spawn([*python, "proxy", "-c", str(config)], env, log)
        self._wait(self._answers)

    def _spawn(self, argv: list[str], env: dict, log) -> None:
        self.procs.append(subprocess.Popen(argv, cwd=BENCH_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def _answers(self) -> bool:
        import http.client
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def _wait(self, ready) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not ready():
            if any(proc.poll() is not None for proc in self.procs) or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("a process exited or did not get ready; see the log in the work folder")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def measure(case: Case, tree: Path, seconds: float) -> dict:
    """One start, one warm-up second, one measured wrk run, one stop."""
    with tempfile.TemporaryDirectory(prefix="ab-") as folder:
        setup = Setup(case, tree, Path(folder))
        try:
            run_wrk(setup.port, case.connections, 1)
            result = run_wrk(setup.port, case.connections, seconds)
        finally:
            setup.stop()
    return result.as_dict()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/ab.py", description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree of the earlier version")
    parser.add_argument("--after", type=Path, default=REPO_DIR, help="source tree of the later one (this one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    records = []
    for repeat in range(args.repeats):
        for name in names:
            order = ["before", "after"] if (repeat + names.index(name)) % 2 == 0 else ["after", "before"]
            for side in order:
                record = dict(case=name, side=side, repeat=repeat, **measure(CASES[name], trees[side],
                                                                             args.duration))
                records.append(record)
                print(f"{name:14} {side:6} #{repeat}: {record['rps']:9.0f} req/s"
                      f"{'  INVALID' if record['non_2xx'] or record['socket_errors'] else ''}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "records": records},
                                  indent=1))
    print(f"\n{'case':14} {'before':>9} {'after':>9} {'after/before':>13}")
    for name in names:
        medians = {}
        for side in trees:
            valid = [r["rps"] for r in records if r["case"] == name and r["side"] == side
                     and not r["non_2xx"] and not r["socket_errors"]]
            medians[side] = statistics.median(valid) if valid else float("nan")
        print(f"{name:14} {medians['before']:9.0f} {medians['after']:9.0f} "
              f"{medians['after'] / medians['before']:12.2f}×")


if __name__ == "__main__":
    main()
