"""`wsgistack top`: a live view of a stack's metrics in the terminal, refreshed once a second.

It scrapes one metrics endpoint (the supervisor's under `wsgistack up`, or a lone server's or proxy's
`--metrics-bind`), lets observe/summary.py turn two scrapes into numbers, and draws them with rich: a header,
then tables of apps, workers, upstreams and programs. `q` quits. The terminal is put in cbreak mode (keys
arrive one by one, unechoed, Ctrl-C still interrupts) and given back as it was on every way out. Without a
terminal it prints one summary and exits, for scripts.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from wsgistack.config.addresses import Address
from wsgistack.config.errors import ConfigError
from wsgistack.config.toml_file import read_toml_file
from wsgistack.observe.metrics.settings import read_metrics_listen
from wsgistack.observe.summary import (
    MetricsError,
    Snapshot,
    Summary,
    fetch_metrics,
    metrics_address,
    parse_snapshot,
    summarise,
)

DEFAULT_INTERVAL = 1.0
QUIT_KEYS = b"qQ"
# what a scrape may take: the supervisor's endpoint waits up to 3 s for its programs' own, so a shorter wait
# would call a whole stack unreachable for one slow program; keys wait meanwhile (a q is read after it)
SCRAPE_TIMEOUT = 5.0


def metrics_listen(path: str | Path) -> Address:
    """The `[metrics] listen` address of a wsgistack.toml, read as the supervisor reads it; ConfigError if none.

    A relative unix:PATH is used as written, as the supervisor binds it: relative to the current folder.
    """
    toml_file = read_toml_file(path)
    listen = read_metrics_listen(toml_file.document.get("metrics"), str(path), toml_file.lines_of("metrics"))
    if listen is None:
        raise ConfigError(f"{path}: no [metrics] table with listen = \"HOST:PORT\" (or give --url ADDR)")
    return metrics_address(listen)


def run_top(address: Address, interval: float = DEFAULT_INTERVAL, stdin: IO[str] | None = None,
            console: Console | None = None) -> int:
    """Show the live view until `q` (exit code 0); without a terminal, print one summary (MetricsError if none)."""
    stdin = sys.stdin if stdin is None else stdin
    console = Console() if console is None else console
    if not (stdin.isatty() and console.is_terminal):
        snapshot = _scrape(address, interval)
        console.print(render(summarise(snapshot), address))
        return 0
    with _cbreak(stdin.fileno()), _term_as_interrupt():
        _live(address, interval, stdin.fileno(), console)
    return 0


def render(summary: Summary | None, address: Address, interval: float | None = None,
           error: str | None = None) -> RenderableType:
    """The whole screen: header, the error of the last scrape if it failed, and a table per kind of thing.

    `interval` is the live view's (its header says how to quit); None for the one summary printed without a terminal.
    """
    header = Text(f"wsgistack top  {_address(address)}", style="bold")
    if summary is not None:
        header.append(f"  {time.strftime('%H:%M:%S', time.localtime(summary.wall))}")
        header.append(f"  up {_duration(summary.uptime_seconds)}")
    if interval is not None:
        header.append(f"  every {interval:g}s, q quits", style="dim")
    parts: list[RenderableType] = [header]
    if error is not None:
        retry = "" if interval is None else f"; retrying every {interval:g}s"
        parts.append(Text(f"cannot read metrics: {error}{retry}", style="bold red"))
    if summary is not None:
        tables = [table for table in (_apps(summary), _workers(summary), _upstreams(summary), _programs(summary))
                  if table.row_count]
        for table in tables:
            parts += [Text(""), table]  # a blank line above each title
        if not tables:
            parts.append(Text(f"no wsgistack metrics at {_address(address)} yet", style="yellow"))
    return Group(*parts)


def _live(address: Address, interval: float, fd: int, console: Console) -> None:
    previous: Snapshot | None = None
    summary: Summary | None = None
    with Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            started = time.monotonic()
            error = None
            try:
                snapshot = _scrape(address, interval)
                summary = summarise(snapshot, previous)
                previous = snapshot
            except MetricsError as exc:
                error = str(exc)  # the last good tables stay under the message
            live.update(render(summary, address, interval, error), refresh=True)
            if _quit_pressed(fd, started + interval):
                return


def _scrape(address: Address, interval: float) -> Snapshot:
    text = fetch_metrics(address, timeout=max(interval, SCRAPE_TIMEOUT))
    return parse_snapshot(text, at=time.monotonic(), wall=time.time())


def _quit_pressed(fd: int, deadline: float) -> bool:
    """Wait until the deadline for keys; True as soon as a quit key (or the terminal's end) comes."""
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            keys = os.read(fd, 64)
            if not keys or any(key in QUIT_KEYS for key in keys):
                return True
    return False


@contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """Keys one at a time and unechoed; the terminal's own settings back on every way out."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the screen and the terminal are given back (the default would just die)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1))
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 or column in ("server", "state", "app") else "right")
    return table


def _apps(summary: Summary) -> Table:
    table = _table("apps", "app", "req/s", "p50", "p95", "p99", "5xx/s", "5xx", "active")
    for app in summary.apps:
        table.add_row(app.program or "app", _rate(app.requests_per_second), _seconds(app.p50), _seconds(app.p95),
                      _seconds(app.p99), _rate(app.errors_per_second), _count(app.errors_total),
                      _count(app.active_requests), style="red" if app.errors_per_second else None)
    return table


def _workers(summary: Summary) -> Table:
    table = _table("workers", "app", "pid", "requests", "req/s", "busy", "rss", "uptime")
    for worker in summary.workers:
        table.add_row(worker.program or "app", worker.pid, _count(worker.requests_total),
                      _rate(worker.requests_per_second), "busy" if worker.busy else "idle", _bytes(worker.rss_bytes),
                      _duration(worker.uptime_seconds))
    return table


def _upstreams(summary: Summary) -> Table:
    table = _table("upstreams", "upstream", "server", "state", "req/s", "failures", "active")
    for upstream in summary.upstreams:
        table.add_row(upstream.upstream, upstream.server, upstream.state or "?", _rate(upstream.requests_per_second),
                      _count(upstream.failures_total), _count(upstream.active_connections),
                      style="red" if upstream.state == "down" else None)
    return table


def _programs(summary: Summary) -> Table:
    table = _table("programs", "program", "state", "restarts", "uptime")
    for program in summary.programs:
        healthy = (program.state or "").lower() in ("running", "starting", "stopping", "stopped", "exited")
        table.add_row(program.program, program.state or "?", _count(program.restarts_total),
                      _duration(program.uptime_seconds), style=None if healthy else "red")
    return table


def _address(address: Address) -> str:
    return str(address).removeprefix("http://")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"  # not reached


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    seconds = int(value)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
