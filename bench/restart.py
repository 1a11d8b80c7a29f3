"""How fast a crashed program runs again: `wsgistack supervise` against supervisord, same config.

The program writes the time it started to a file; the harness kills it with SIGKILL and waits for a new
start time. The latency is new start time − kill time: the supervisor's reaction, fork and exec, and the
program's own start (a shell here, so that is small). Run: `python bench/restart.py [--rounds N]`, with the
`supervisor` package installed for the comparison (bench/run.sh's venv has both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF = """\
[unix_http_server]
file=%(here)s/sup.sock

[supervisord]
logfile=%(here)s/sup.log
pidfile=%(here)s/sup.pid
childlogdir=%(here)s
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:victim]
command=/bin/sh -c 'date +%%s.%%N > %(here)s/started.$$; exec sleep 1000'
startsecs=0
autorestart=true
"""


def wait_for(condition, timeout: float = 10.0):
    """Poll until condition() is truthy, or fail."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        time.sleep(0.001)
    return value


def starts(folder: Path) -> dict[int, float]:
    """pid -> start time, from the files the program writes."""
    found = {}
    for path in folder.glob("started.*"):
        text = path.read_text().strip()
        if text:
            found[int(path.suffix[1:])] = float(text)
    return found


def measure(command: list[str], rounds: int) -> list[float]:
    """Restart latencies in ms for one supervisor command line."""
    folder = Path(tempfile.mkdtemp(prefix="restart-bench-"))
    (folder / "supervisord.conf").write_text(CONF)
    proc = subprocess.Popen([*command, "-c", str(folder / "supervisord.conf")], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    latencies = []
    try:
        wait_for(lambda: starts(folder))
        for _ in range(rounds):
            known = starts(folder)
            pid = max(known, key=known.get)
            time.sleep(0.2)  # let the program settle, as a crash comes at an arbitrary moment
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            new = wait_for(lambda: {p: t for p, t in starts(folder).items() if p not in known})
            latencies.append((min(new.values()) - killed) * 1000)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    return latencies


def main() -> int:
    """Measure both supervisors and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    contenders = {"wsgistack supervise": [sys.executable, "-m", "wsgistack", "supervise"]}
    supervisord = Path(sys.executable).parent / "supervisord"
    if supervisord.exists():
        contenders["supervisord"] = [str(supervisord), "-n"]
    print(f"Restart of a program killed with SIGKILL, {args.rounds} rounds each "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)\n")
    print("| supervisor | median ms | p90 ms | max ms |\n|---|---|---|---|")
    for name, command in contenders.items():
        values = sorted(measure(command, args.rounds))
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"| {name} | {statistics.median(values):.1f} | {p90:.1f} | {values[-1]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
