"""The supervisor's own metrics: every program's state, restarts, uptime, exits by cause and the log output
it had to drop. Read from the processes at each scrape; nothing is counted on the side.

stack/metrics.py adds these to what the app servers and the proxy report, for `[metrics] listen`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from wsgistack.config.addresses import parse_address
from wsgistack.observe.metrics.families import COUNTER, GAUGE, Family
from wsgistack.observe.metrics.registry import new_metric, render
from wsgistack.supervisor.process import Process
from wsgistack.supervisor.runtime import Supervisor
from wsgistack.supervisor.states import ProcessState

log = logging.getLogger("wsgistack.supervisor")

PROGRAM_STATE = Family("wsgistack_program_state", GAUGE, "1 for the program's current state, 0 for the others.",
                       ("program", "state"))
PROGRAM_RESTARTS = Family("wsgistack_program_restarts", COUNTER,
                          "Times the supervisor started the program again after it exited on its own.", ("program",))
PROGRAM_UPTIME = Family("wsgistack_program_uptime_seconds", GAUGE, "Seconds since the program started (0 when it "
                        "is not running).", ("program",))
PROGRAM_EXITS = Family("wsgistack_program_exits", COUNTER, "Exits by cause: stopped (asked), exited (code 0), "
                       "failed (another code), killed (a signal nobody here sent).", ("program", "cause"))
PROGRAM_DROPPED = Family("wsgistack_program_log_dropped_lines", COUNTER,
                         "Output lines lost because the disk refused them or fell too far behind.",
                         ("program", "stream"))
_STATES = tuple(state.name for state in ProcessState if state != ProcessState.UNKNOWN)
_CAUSES = ("stopped", "exited", "failed", "killed")
_RUNNING = (ProcessState.RUNNING, ProcessState.STOPPING)


def program_names(supervisor: Supervisor) -> list[tuple[str, Process]]:
    """Each process with the name its series carry: the program's own ("app", "web_01"), or group:name when
    two groups hold the same name."""
    counts: dict[str, int] = {}
    for process in supervisor.processes.values():
        counts[process.settings.name] = counts.get(process.settings.name, 0) + 1
    return sorted(((process.settings.name if counts[process.settings.name] == 1 else process.name, process)
                   for process in supervisor.processes.values()), key=lambda pair: pair[0])


def program_metrics(supervisor: Supervisor) -> list[Metric]:
    """The program families, as the processes are now."""
    state, restarts, uptime = new_metric(PROGRAM_STATE), new_metric(PROGRAM_RESTARTS), new_metric(PROGRAM_UPTIME)
    exits, dropped = new_metric(PROGRAM_EXITS), new_metric(PROGRAM_DROPPED)
    now = time.time()
    for name, process in program_names(supervisor):
        for known in _STATES:
            state.add_metric([name, known.lower()], 1.0 if process.state.name == known else 0.0)
        restarts.add_metric([name], process.restarts)
        running = process.state in _RUNNING and process.started_at
        uptime.add_metric([name], round(now - process.started_at, 3) if running else 0.0)
        for cause in _CAUSES:
            exits.add_metric([name, cause], process.exits.get(cause, 0))
        dropped.add_metric([name, "stdout"], process.stdout.dropped_lines)
        if process.stderr is not process.stdout:
            dropped.add_metric([name, "stderr"], process.stderr.dropped_lines)
    return [state, restarts, uptime, exits, dropped]


# -- the whole stack: the programs above, and every running program that serves its own /metrics --------

SCRAPE_UP = Family("wsgistack_program_scrape_up", GAUGE,
                   "1 when the program's own /metrics answered this scrape, 0 when it did not.", ("program",))
METRICS_FLAG = "--metrics-bind"
FETCH_TIMEOUT = 3.0  # seconds a program's endpoint gets to answer; a slow one costs its series, not the scrape
FETCH_LIMIT = 32 << 20


def metrics_address(command: tuple[str, ...]) -> str | None:
    """The --metrics-bind address a program was started with (a wsgistack serve or proxy), or None."""
    for number, word in enumerate(command):
        if word == METRICS_FLAG and number + 1 < len(command):
            return command[number + 1]
        if word.startswith(METRICS_FLAG + "="):
            return word[len(METRICS_FLAG) + 1:]
    return None


class StackMetrics:
    """What `[metrics] listen` serves: the supervisor's program families, and the families of every running
    program started with --metrics-bind (the app servers and the proxy under `up`, or any wsgistack serve in
    [programs]), each series labelled with its program's name."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor

    async def render(self, accept: str) -> tuple[str, bytes]:
        """A scrape: (content type, body)."""
        metrics = await self.collect()
        return render(lambda: metrics, accept)

    async def text(self) -> str:
        """The Prometheus text of a scrape (the dashboard's charts read it)."""
        return (await self.render(""))[1].decode()

    async def collect(self) -> list[Metric]:
        """Every family, the programs' endpoints asked now, side by side."""
        sources = [(name, address) for name, process in program_names(self.supervisor)
                   if process.state in _RUNNING and (address := metrics_address(process.settings.command))]
        answers = await asyncio.gather(*(fetch_text(address) for _, address in sources), return_exceptions=True)
        up = new_metric(SCRAPE_UP)
        merged: dict[str, Metric] = {}
        for (name, _), answer in zip(sources, answers):
            if isinstance(answer, BaseException):
                log.debug("metrics of %s: %s", name, answer)
                up.add_metric([name], 0.0)
                continue
            up.add_metric([name], 1.0)
            for family in text_string_to_metric_families(answer):
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    target.add_sample(sample.name, {"program": name, **sample.labels}, sample.value)
        return [*program_metrics(self.supervisor), up, *merged.values()]


async def fetch_text(address: str) -> str:
    """GET /metrics from a program's endpoint (unix:PATH or HOST:PORT); the body, or OSError."""
    parsed = parse_address(address)

    async def exchange() -> bytes:
        if parsed.kind == "unix":
            reader, writer = await asyncio.open_unix_connection(parsed.path)
        else:
            reader, writer = await asyncio.open_connection(parsed.host or "127.0.0.1", parsed.port)
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n")
            data = bytearray()
            while len(data) <= FETCH_LIMIT:  # the endpoint answers once and closes
                piece = await reader.read(65536)
                if not piece:
                    return bytes(data)
                data += piece
            raise OSError(f"{address}: more than {FETCH_LIMIT} bytes")
        finally:
            writer.close()

    try:
        data = await asyncio.wait_for(exchange(), FETCH_TIMEOUT)
    except TimeoutError:
        raise OSError(f"{address}: no answer within {FETCH_TIMEOUT:g}s") from None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise OSError(f"{address}: answered {head[:40]!r}")
    return body.decode("utf-8", "replace")
