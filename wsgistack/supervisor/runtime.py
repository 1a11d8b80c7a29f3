"""The supervisor's core on an event loop: its processes, the SIGCHLD reaper, start and stop in order.

The control socket, the XML-RPC facade and the daemon's signals sit on top of this class; it knows nothing
of them. It reaps every child, including orphans that were re-parented to it when it runs as PID 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any, NamedTuple

from wsgistack.process import reap_children
from wsgistack.supervisor import leftovers
from wsgistack.supervisor.load import load_config
from wsgistack.supervisor.options import signal_number
from wsgistack.supervisor.process import Process
from wsgistack.supervisor.readiness import spawn_check
from wsgistack.supervisor.settings import ProgramSettings, SupervisorConfig
from wsgistack.supervisor.states import STOPPED_STATES, ProcessState
from wsgistack.supervisor.watchdog import Watchdog

log = logging.getLogger("wsgistack.supervisor")


class Tail(NamedTuple):
    """What `Supervisor.tail` read: the text, the stream's offset after it, whether older output was left out."""

    data: str
    offset: int  # bytes the process has written to the stream so far
    overflow: bool


class Supervisor:
    """Owns one Process per configured process; reaps children; starts and stops them by priority."""

    def __init__(self, config: SupervisorConfig, loop: asyncio.AbstractEventLoop, watchdog: Watchdog | None = None,
                 mark: str | None = None):
        self.config = config
        self.loop = loop
        self.watchdog = watchdog  # kills the programs' leftovers should we be SIGKILLed
        self.mark = mark or leftovers.new_mark()  # in every program's environment, to find what it started
        self.by_pid: dict[int, Process] = {}
        self.watchers: dict[int, asyncio.Future] = {}  # readiness check commands waiting for their exit
        self.processes: dict[str, Process] = {}
        self.waiting: list[Process] = []  # started before what they depend on was RUNNING
        self.load = load_config  # how the config file is read again (`up` reads a whole stack from it)
        # `up`'s deploys, newest last (stack/deploy.py writes them; the dashboard shows them)
        self.deploys: list[dict[str, Any]] = []
        for settings in config.programs:
            process = self._make(settings)
            self.processes[process.name] = process

    def _make(self, settings: ProgramSettings) -> Process:
        return Process(settings, self.loop, on_spawn=self._spawned, on_running=self._running,
                       run_command=self.run_check, mark=self.mark)

    async def run_check(self, argv: list[str]) -> int:
        """Run a readiness check command; its exit status comes through our reaper (waitpid(-1))."""
        try:
            child = spawn_check(argv)
        except OSError:
            return 127
        child.returncode = 0  # Popen must not wait for it itself: the reaper owns every child
        future = self.loop.create_future()
        self.watchers[child.pid] = future
        self.reap()  # it may have exited before we watched it
        try:
            return await asyncio.wait_for(future, 10)
        except TimeoutError:
            return 1

    # -- depends_on ------------------------------------------------------------------------------------

    def _dependencies_running(self, process: Process) -> bool:
        for program in process.settings.depends_on:
            members = [p for p in self.processes.values() if p.settings.program == program]
            if not members or any(p.state != ProcessState.RUNNING for p in members):
                return False
        return True

    def request_start(self, process: Process) -> None:
        """Start now, or as soon as every program it depends on is RUNNING (and ready)."""
        if self._dependencies_running(process):
            process.start()
        elif process not in self.waiting:
            log.info("%s: waiting for %s", process.name, ", ".join(process.settings.depends_on))
            self.waiting.append(process)

    def _running(self, process: Process) -> None:
        for waiting in list(self.waiting):
            if self._dependencies_running(waiting):
                self.waiting.remove(waiting)
                waiting.start()

    # -- children --------------------------------------------------------------------------------------

    def _spawned(self, process: Process) -> None:
        self.by_pid[process.pid] = process
        if self.watchdog is not None:
            self.watchdog.session_started(process.pid)

    def install_reaper(self) -> None:
        """Reap on SIGCHLD (and once now, for children that exited before the handler was in place)."""
        self.loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def remove_reaper(self) -> None:
        """Give SIGCHLD back (at exit, and in tests)."""
        self.loop.remove_signal_handler(signal.SIGCHLD)

    def reap(self) -> None:
        """Collect every exited child; hand ours to their Process, log the others (orphans)."""
        for pid, status in reap_children():
            process = self.by_pid.pop(pid, None)
            watcher = self.watchers.pop(pid, None)
            if process is not None:
                if self.watchdog is not None:
                    self.watchdog.session_ended(pid)
                process.child_exited(status)
            elif watcher is not None:
                if not watcher.done():
                    watcher.set_result(os.waitstatus_to_exitcode(status))
            else:
                log.debug("reaped pid %s, not one of ours (an orphan)", pid)

    # -- lifecycle -------------------------------------------------------------------------------------

    def ordered(self, reverse: bool = False) -> list[Process]:
        """Processes by priority (lower first), as supervisord starts them."""
        return sorted(self.processes.values(), key=lambda p: (p.settings.priority, p.name), reverse=reverse)

    def start_autostart(self) -> None:
        """Start every process marked autostart, in priority order."""
        for process in self.ordered():
            if process.settings.autostart:
                self.request_start(process)

    def select(self, pattern: str) -> list[Process]:
        """Processes matching `name`, a group's name, `group:name`, `group:*` or `all`."""
        processes = self.ordered()
        if pattern == "all":
            return processes
        if ":" in pattern:
            group, _, name = pattern.partition(":")
            return [p for p in processes if p.settings.group == group and name in ("*", p.settings.name)]
        return [p for p in processes if pattern in (p.settings.name, p.settings.group)]

    # -- configuration changes (reread / update) -------------------------------------------------------

    def groups(self) -> dict[str, list[ProgramSettings]]:
        """The running configuration by group."""
        out: dict[str, list[ProgramSettings]] = {}
        for process in self.ordered():
            out.setdefault(process.settings.group, []).append(process.settings)
        return out

    def diff(self, new: SupervisorConfig) -> tuple[list[str], list[str], list[str]]:
        """Group names (added, changed, removed) between what runs and `new`."""
        current = self.groups()
        wanted: dict[str, list[ProgramSettings]] = {}
        for settings in new.programs:
            wanted.setdefault(settings.group, []).append(settings)
        added = sorted(set(wanted) - set(current))
        removed = sorted(set(current) - set(wanted))
        changed = sorted(g for g in set(wanted) & set(current)
                         if sorted(wanted[g], key=lambda s: s.name) != sorted(current[g], key=lambda s: s.name))
        return added, changed, removed

    def add_group(self, new: SupervisorConfig, group: str) -> list[Process]:
        """Create the processes of `group` from `new` and start the autostart ones."""
        created = []
        for settings in new.programs:
            if settings.group == group:
                process = self._make(settings)
                self.processes[process.name] = process
                created.append(process)
        for process in created:
            if process.settings.autostart:
                self.request_start(process)
        return created

    def add_process(self, settings: ProgramSettings) -> Process:
        """A process beside the configured ones (a deploy's new generation), started now."""
        process = self._make(settings)
        if process.name in self.processes:
            raise ValueError(f"{process.name}: already there")
        self.processes[process.name] = process
        process.start()
        return process

    def remove_process(self, process: Process) -> None:
        """Forget a stopped process (a generation that was replaced or refused)."""
        process.close()
        self.processes.pop(process.name, None)

    def rename_process(self, process: Process, settings: ProgramSettings) -> None:
        """Give a running process other settings (a name among them) without touching the child: the new
        generation of a deploy becomes the program once the old one is gone."""
        self.processes.pop(process.name, None)
        process.settings = settings
        self.processes[process.name] = process

    def remove_group(self, group: str) -> bool:
        """Forget a group whose processes are all stopped; False while one still runs."""
        members = [p for p in self.processes.values() if p.settings.group == group]
        if any(p.state not in STOPPED_STATES for p in members):
            return False
        for process in members:
            process.close()
            del self.processes[process.name]
        return True

    async def update(self, new: SupervisorConfig) -> dict[str, str]:
        """Apply `new`: stop and remove what went away, replace what changed, add what is new; leave the
        rest running untouched. Returns what happened to each group."""
        added, changed, removed = self.diff(new)
        outcome: dict[str, str] = {}
        for group in removed + changed:
            members = [p for p in self.processes.values() if p.settings.group == group]
            for process in members:
                process.stop()
            await self.until_stopped(members)
            self.remove_group(group)
            outcome[group] = "stopped and removed" if group in removed else "updated"
        for group in changed + added:
            self.add_group(new, group)
            outcome.setdefault(group, "added")
        self.config = new
        return outcome

    async def reload(self, new: SupervisorConfig) -> None:
        """Stop every process, forget every group, then run `new` from scratch (`ctl reload`, supervisorctl's
        reload: supervisord restarts itself in place)."""
        await self.stop_all()
        for group in list(self.groups()):
            self.remove_group(group)
        self.config = new
        for group in dict.fromkeys(p.group for p in new.programs):
            self.add_group(new, group)

    async def until_stopped(self, processes: list[Process]) -> None:
        """Wait until every one of `processes` is stopped, at most the longest stopwaitsecs and a margin."""
        limit = max([p.settings.stopwaitsecs for p in processes] + [0]) + 5
        deadline = time.monotonic() + limit
        while any(p.state not in STOPPED_STATES for p in processes) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def start_when_stopped(self, process: Process) -> None:
        """Start `process` again as soon as its stop completes (restart)."""
        process.after_stop.append(process.start)

    async def stop_all(self, timeout: float | None = None) -> bool:
        """Stop everything in reverse priority order, each group of a priority before the next; True when
        every process ended within its stopwaitsecs (plus a margin) or `timeout`."""
        self.waiting.clear()
        await self._stop_dependents_first()
        for process in self.ordered(reverse=True):
            process.stop()
        limit = timeout if timeout is not None else max(
            [p.settings.stopwaitsecs for p in self.processes.values()] + [0]) + 5
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if all(p.state in STOPPED_STATES for p in self.processes.values()):
                return True
            await asyncio.sleep(0.02)  # the reaper runs in between; this only waits for it
        return False

    async def _stop_dependents_first(self) -> None:
        """Stop in waves: a program only once nothing still running depends on it (reverse of start)."""
        remaining = [p for p in self.ordered(reverse=True) if p.state not in STOPPED_STATES]
        if not any(p.settings.depends_on for p in remaining):
            return
        while remaining:
            needed = {dep for p in remaining for dep in p.settings.depends_on}
            wave = [p for p in remaining if p.settings.program not in needed] or remaining
            for process in wave:
                process.stop()
            await self.until_stopped(wave)
            remaining = [p for p in remaining if p not in wave]

    def kill_leftovers(self) -> None:
        """At shutdown, after every program stopped: kill what any program started and left running (a
        daemon launched by a program that exited long ago); see leftovers.py."""
        killed = leftovers.kill(self.mark)
        if killed:
            log.info("killed %d process(es) the programs left behind: %s", len(killed),
                     " ".join(map(str, sorted(killed))))

    # -- operations of the control facades (JSON lines and XML-RPC adapt them to their protocols) --------

    def reread(self) -> SupervisorConfig:
        """The config file as it reads now (for reread, update, reload); a ConfigError changes nothing."""
        return self.load(self.config.source)

    def signal(self, processes: list[Process], name: str | int) -> dict[str, bool]:
        """Send signal `name` (HUP, SIGHUP, 1) to processes: {process: delivered}, False for one not running.

        ValueError names a signal that does not exist, before any is sent."""
        signum = signal_number(name)
        return {process.name: process.send_signal(signum) for process in processes}

    def tail(self, process: Process, stream: str, offset: int, length: int | None) -> Tail:
        """What `process` wrote to `stream` (stdout or stderr) after byte `offset`, at most its last `length`
        bytes (None: all), from the output kept in memory; ValueError for another stream."""
        if stream not in ("stdout", "stderr"):
            raise ValueError("the stream is stdout or stderr")
        writer = process.stdout if stream == "stdout" else process.stderr
        kept, total = bytes(writer.recent), writer.written
        if offset >= total:  # nothing new
            return Tail("", total, False)
        start_of_kept = total - len(kept)
        begin = max(offset, start_of_kept) if length is None else max(offset, total - length, start_of_kept)
        overflow = length is not None and offset < total - length
        return Tail(kept[begin - start_of_kept:].decode("utf-8", "replace"), total, overflow)

    def status(self) -> list[dict]:
        """One record per process, in the shape supervisorctl's getAllProcessInfo returns."""
        now = time.time()
        records = []
        for process in self.ordered():
            running = process.state in (ProcessState.RUNNING, ProcessState.STARTING, ProcessState.STOPPING)
            records.append({
                "name": process.settings.name,
                "group": process.settings.group,
                "state": int(process.state),
                "statename": process.state.name,
                "pid": process.pid,
                "start": int(process.started_at),
                "stop": int(process.stopped_at),
                "now": int(now),
                "uptime": int(now - process.started_at) if running and process.started_at else 0,
                "exitstatus": os.waitstatus_to_exitcode(process.exit_status) if process.exit_status is not None
                else 0,
                "spawnerr": process.spawn_error or process.fatal_reason,
                "restarts": process.restarts,
                "log_dropped": process.stdout.dropped + (process.stderr.dropped
                                                         if process.stderr is not process.stdout else 0),
                "stdout_logfile": process.settings.stdout.path or "",
                "stderr_logfile": process.settings.stderr.path or "",
                "note": process.settings.note,
            })
        return records

    def close(self) -> None:
        """Flush and close every log writer."""
        for process in self.processes.values():
            process.close()
