"""One supervised process: spawn, state machine, restarts with back-off, stop with escalation.

Runs on the supervisor's event loop: timers for startsecs, back-off and stopwaitsecs are loop callbacks, the
child's pipes are loop readers, and its exit arrives from the supervisor's SIGCHLD reaper. Every state change
goes through `_become`, which checks the transition table and logs it once with its cause.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable

from wsgistack.process import describe_exit, die_with_parent, exit_code
from wsgistack.supervisor import leftovers
from wsgistack.supervisor.logs import LogWriter
from wsgistack.supervisor.readiness import CommandRunner, attempt
from wsgistack.supervisor.settings import ProgramSettings
from wsgistack.supervisor.states import ProcessState, check_transition

log = logging.getLogger("wsgistack.supervisor")

S = ProcessState


class Process:
    """The supervisor's handle on one ProgramSettings entry and its current child, if any."""

    def __init__(self, settings: ProgramSettings, loop: asyncio.AbstractEventLoop,
                 on_spawn: Callable[[Process], None] | None = None,
                 on_running: Callable[[Process], None] | None = None,
                 run_command: CommandRunner | None = None, mark: str | None = None):
        self.settings = settings
        self.mark = mark  # the supervisor's mark, inherited by everything the program starts (leftovers.py)
        self.loop = loop
        self.on_spawn = on_spawn  # the supervisor maps pid -> process for its reaper
        self.on_running = on_running  # the supervisor starts what depends on us
        self.run_command = run_command  # runs a readiness check command through the supervisor's reaper
        self._not_ready = ""
        self.state = S.STOPPED
        self.pid = 0
        self.started_at = 0.0  # wall clock, for uptime in status
        self.stopped_at = 0.0
        self.exit_status: int | None = None  # the last waitpid status
        self.spawn_error = ""
        self.attempts = 0  # failed starts in a row (for startretries and back-off)
        self.restarts = 0  # times it was started again after it had been running
        self.exits: dict[str, int] = {}  # exits by cause (exit_cause), for the metrics
        self.restart_times: list[float] = []
        self.fatal_reason = ""
        self.stdout = LogWriter(settings.stdout)
        self.stderr = self.stdout if settings.redirect_stderr else LogWriter(settings.stderr)
        self._timer: asyncio.TimerHandle | None = None
        self._popen: subprocess.Popen | None = None
        self._pipes: dict[int, tuple[object, LogWriter]] = {}  # fd -> (pipe file, where its output goes)
        self._stop_requested = False
        self.after_stop: list[Callable[[], None]] = []  # run once the process reaches STOPPED (restart)

    @property
    def name(self) -> str:
        """group:name, as supervisorctl shows it."""
        return f"{self.settings.group}:{self.settings.name}"

    # -- transitions -----------------------------------------------------------------------------------

    def _become(self, new: ProcessState, cause: str) -> None:
        check_transition(self.state, new)
        log.info("%s: %s -> %s (%s)", self.name, self.state.name, new.name, cause)
        self.state = new
        if new == S.STOPPED and self.after_stop:
            callbacks, self.after_stop = self.after_stop, []
            for callback in callbacks:
                self.loop.call_soon(callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, callback)

    # -- starting --------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the program (from STOPPED, EXITED, FATAL or BACKOFF); False if it is already running."""
        if self.state in (S.STARTING, S.RUNNING, S.STOPPING):
            return False
        self._stop_requested = False
        self.attempts = 0
        self.fatal_reason = ""
        self._cancel_timer()
        self._spawn("start requested" if self.state != S.BACKOFF else "start requested during back-off")
        return True

    def _spawn(self, cause: str) -> None:
        settings = self.settings
        self._become(S.STARTING, cause)
        env = dict(os.environ)
        env.update(settings.environment)
        env["SUPERVISOR_PROCESS_NAME"] = settings.name
        env["SUPERVISOR_GROUP_NAME"] = settings.group
        env.pop("NOTIFY_SOCKET", None)  # systemd hears from the supervisor, not from what it runs
        if self.mark:
            env[leftovers.MARK] = self.mark
        try:
            popen = subprocess.Popen(
                # a pipe, as supervisord gives: supervisorctl's fg types into it (send_stdin)
                list(settings.command), cwd=settings.directory, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT if settings.redirect_stderr else subprocess.PIPE,
                start_new_session=True, user=settings.user, umask=-1 if settings.umask is None else settings.umask,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (one C call: SIGKILL when we die)
                close_fds=True, pass_fds=settings.pass_fds,
            )
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            self.spawn_error = f"cannot run {settings.command[0]!r}: {getattr(exc, 'strerror', None) or exc}"
            log.error("%s: %s", self.name, self.spawn_error)
            self._failed_start(self.spawn_error)
            return
        self._popen = popen
        if popen.stdin is not None:
            os.set_blocking(popen.stdin.fileno(), False)
        self.pid = popen.pid
        self.spawn_error = ""
        self.started_at = time.time()
        self.exit_status = None
        for stream, writer in ((popen.stdout, self.stdout), (popen.stderr, self.stderr)):
            if stream is not None:
                fd = stream.fileno()
                os.set_blocking(fd, False)
                self._pipes[fd] = (stream, writer)
                self.loop.add_reader(fd, self._drain, fd)
        if self.on_spawn is not None:
            self.on_spawn(self)
        log.info("%s: spawned pid %s", self.name, self.pid)
        self._later(self.settings.startsecs, self._started)

    def _started(self) -> None:
        self._timer = None
        if self.state != S.STARTING:
            return
        if self.settings.ready is not None:
            self.loop.create_task(self._await_ready(self.pid))
            return
        self._running(f"still alive after startsecs={self.settings.startsecs:g}")

    def _running(self, cause: str) -> None:
        self.attempts = 0
        self._become(S.RUNNING, cause)
        if self.on_running is not None:
            self.on_running(self)

    async def _await_ready(self, pid: int) -> None:
        """Poll the readiness check; RUNNING when it passes, a failed start when it never does."""
        check = self.settings.ready
        assert check is not None
        deadline = time.monotonic() + check.timeout
        while self.state == S.STARTING and self.pid == pid:
            if await attempt(check, self.run_command):
                if self.state == S.STARTING and self.pid == pid:
                    self._running(f"ready ({check.kind} {check.target})")
                return
            if time.monotonic() > deadline:
                self._not_ready = f"not ready after {check.timeout:g}s ({check.kind} {check.target})"
                log.warning("%s: %s: killing it", self.name, self._not_ready)
                self._send(signal.SIGKILL, True)
                return
            await asyncio.sleep(0.1)

    def _drain(self, fd: int) -> bool:
        """Move what is in one pipe to its log; False once nothing more is there right now."""
        stream, writer = self._pipes[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            writer.write(data)
            return True
        self.loop.remove_reader(fd)
        del self._pipes[fd]
        stream.close()  # type: ignore[attr-defined]
        return False

    # -- exits -----------------------------------------------------------------------------------------

    def child_exited(self, status: int) -> None:
        """Called by the supervisor's reaper with the waitpid status of our child."""
        self._cancel_timer()
        for fd in list(self._pipes):  # what the child wrote just before it exited is still in the pipe
            while fd in self._pipes and self._drain(fd):
                pass
        if self._popen is not None:
            self._popen.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from reaping again
            if self._popen.stdin is not None:
                self._popen.stdin.close()
        self.exit_status = status
        self.stopped_at = time.time()
        cause = describe_exit(status)
        kind = exit_cause(status, self.state == S.STOPPING or self._stop_requested)
        self.exits[kind] = self.exits.get(kind, 0) + 1
        pid, self.pid = self.pid, 0
        if self.state == S.STOPPING or self._stop_requested:
            self._kill_leftovers(pid)
            self._become(S.STOPPED, f"stopped: {cause}")
            return
        if self.state == S.STARTING:
            reason, self._not_ready = self._not_ready, ""
            self._failed_start(reason or f"exited too quickly ({cause})")
            return
        code = exit_code(status)
        expected = code is not None and code in self.settings.exitcodes
        self._become(S.EXITED, f"{cause}, {'expected' if expected else 'not expected'}")
        policy = self.settings.autorestart
        if policy == "true" or (policy == "unexpected" and not expected):
            if self._flapping():
                return
            self.restarts += 1
            self._spawn(f"autorestart after {cause}")

    def _flapping(self) -> bool:
        settings = self.settings
        if not settings.max_restarts:
            return False
        now = time.monotonic()
        self.restart_times = [t for t in self.restart_times if now - t < settings.restart_window] + [now]
        if len(self.restart_times) <= settings.max_restarts:
            return False
        self.fatal_reason = (f"restarted {len(self.restart_times) - 1} times in "
                             f"{settings.restart_window:g}s (max_restarts={settings.max_restarts})")
        self._become(S.FATAL, f"flapping: {self.fatal_reason}")
        return True

    def _failed_start(self, cause: str) -> None:
        self.attempts += 1
        self._become(S.BACKOFF, cause)
        if self.attempts > self.settings.startretries:
            self.fatal_reason = f"gave up after {self.attempts} failed starts: {cause}"
            self._become(S.FATAL, self.fatal_reason)
            return
        # beyond supervisord's linear 1, 2, 3 s: doubling delays, capped, so a broken program costs little
        delay = min(self.settings.backoff_max, 2 ** (self.attempts - 1))
        self._later(delay, lambda: self._spawn(f"retry {self.attempts} after {delay:g}s back-off"))

    # -- stopping --------------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Ask the program to stop: stopsignal, then SIGKILL after stopwaitsecs. False if not running."""
        self._stop_requested = True
        if self.state == S.BACKOFF:
            self._cancel_timer()
            self._become(S.STOPPED, "stop requested during back-off")
            return True
        if self.state not in (S.STARTING, S.RUNNING) or not self.pid:
            return False
        self._become(S.STOPPING, f"stop requested, sending {signal.Signals(self.settings.stopsignal).name}")
        self._send(self.settings.stopsignal, self.settings.stopasgroup)
        self._later(self.settings.stopwaitsecs, self._kill)
        return True

    def _kill(self) -> None:
        self._timer = None
        if self.state == S.STOPPING and self.pid:
            log.warning("%s: still alive %gs after the stop signal: SIGKILL", self.name, self.settings.stopwaitsecs)
            self._send(signal.SIGKILL, self.settings.killasgroup or self.settings.stopasgroup)

    def _send(self, signum: int, to_group: bool) -> None:
        try:
            if to_group:
                os.killpg(self.pid, signum)  # the child leads its own session, so its pgid is its pid
            else:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def _kill_leftovers(self, pid: int) -> None:
        """A stopped program takes along what it started: its session, and what carries its mark and names
        (a shell's `cmd &` child, a double-forked daemon), killed once the program itself has exited."""
        killed = leftovers.kill(self.mark, (pid,), (self.settings.group, self.settings.name))
        if killed:
            log.info("%s: killed %d process(es) it left behind: %s", self.name, len(killed),
                     " ".join(map(str, sorted(killed))))

    def send_stdin(self, data: bytes) -> None:
        """Write `data` to the running program's stdin (supervisorctl's fg); OSError when it cannot take it
        now (BlockingIOError: its pipe is full, it does not read) or the program is gone."""
        pipe = self._popen.stdin if self._popen is not None and self.pid else None
        if pipe is None or pipe.closed:
            raise BrokenPipeError("the program is not running")
        view = memoryview(data)
        while view:
            view = view[os.write(pipe.fileno(), view):]

    def send_signal(self, signum: int) -> bool:
        """Deliver a signal to the running child (ctl signal); False when there is none."""
        if not self.pid:
            return False
        self._send(signum, False)
        return True

    def close(self) -> None:
        """Release the log writers (at supervisor exit)."""
        self._cancel_timer()
        self.stdout.close()
        if self.stderr is not self.stdout:
            self.stderr.close()


def exit_cause(status: int, asked: bool) -> str:
    """An exit in one word: "stopped" (we asked), "exited" (code 0), "failed" (another code), "killed" (a
    signal nobody here sent)."""
    if asked:
        return "stopped"
    code = exit_code(status)
    if code is None:
        return "killed"
    return "exited" if code == 0 else "failed"
