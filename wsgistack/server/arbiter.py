"""The master process: binds the sockets, forks the workers and keeps their number right.

It sleeps in a selector on a self-pipe woken by signals and by workers' boot reports; it never runs app
code after the fork (unless --preload). Signals have gunicorn's meanings: TERM graceful stop, INT/QUIT fast
stop, HUP reload (new workers first, then the old ones retire), TTIN/TTOU one worker more/less, USR1 reopen
logs. A worker silent past --timeout gets its stacks dumped (SIGABRT, faulthandler) and is killed.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsgistack import __version__
from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.config.settings import ServeSettings
from wsgistack.observe.errorlog import reopen_error_log, setup_error_log
from wsgistack.observe.metrics.endpoint import SelectorEndpoint, where
from wsgistack.observe.metrics.endpoint import listen as listen_for_metrics
from wsgistack.process import (
    daemonize,
    describe_exit_verb,
    exit_code,
    exit_signal,
    listen_fds,
    notify,
    notify_reloading,
    reap_children,
)
from wsgistack.server.accept_share import AcceptBoard
from wsgistack.server.heartbeat import Heartbeat
from wsgistack.server.metrics import ServerMetrics
from wsgistack.server.sockets import Listener, bind_all, inherited_listeners
from wsgistack.server.stop_flag import StopFlag
from wsgistack.server.workers import worker_class
from wsgistack.server.workers.base import (
    EXIT_APP_LOAD_ERROR,
    EXIT_BOOT_ERROR,
    FORK_BLOCKED_SIGNALS,
    set_process_title,
)
from wsgistack.wsgi.loader import AppLoadError, load_app
from wsgistack.wsgi.mounts import load_mounts

log = logging.getLogger("wsgistack.server")

SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")
ABORT_GRACE = 2.0  # seconds between the stack-dump signal and SIGKILL for a timed-out worker
RESPAWN_BACKOFF = 1.0


@dataclass
class WorkerProcess:
    """The master's view of one worker."""

    pid: int
    age: int
    generation: int
    heartbeat: Heartbeat
    boot_fd: int
    board_slot: int | None = None  # its place on the accept board
    booted: bool = False
    stopping_since: float | None = None
    # why the master replaces it, for the restarts counter: max_requests, timeout, reload, scale_down (None:
    # not replaced, or a crash when it exits without being asked)
    stop_cause: str | None = None
    aborted_at: float | None = None
    boot_buffer: bytearray = field(default_factory=bytearray)


class HaltServer(Exception):
    """Stop the master with a message and an exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Arbiter:
    """Owns the listeners and the workers; `run()` returns the process exit code."""

    def __init__(self, settings: ServeSettings, reload_settings: Callable[[], ServeSettings] | None = None):
        self.settings = settings
        self.reload_settings = reload_settings
        self.num_workers = settings.workers
        self.workers: dict[int, WorkerProcess] = {}
        self.listeners: list[Listener] = []
        self.generation = 0
        self.worker_age = 0
        self.signals: list[int] = []
        self.stopping: str | None = None  # None, "graceful" or "fast"
        self.stop_started = 0.0
        self.ready = False  # a first worker booted: "listening" was logged
        self.reloading = False  # a HUP's generation is booting: systemd hears READY=1 once it has
        self.server_stop = StopFlag()  # shared with every worker: a TERM means "empty the listen queue"
        self.accept_board = AcceptBoard()  # every worker's open connections: fair shares of the queue
        self.next_spawn = 0.0
        self.app: Any = None
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        self.wakeup_r = self.wakeup_w = -1
        self.metrics: ServerMetrics | None = None  # with --metrics-bind
        self.metrics_endpoint: SelectorEndpoint | None = None

    # -- start and stop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Start, serve until told to stop, clean up; the exit code."""
        settings = self.settings
        if settings.umask is not None:
            os.umask(settings.umask)
        self.listeners = self._open_listeners()  # a busy port is still told to the terminal
        if settings.daemon:
            daemonize()
            self.pid = os.getpid()
        try:
            self._write_pidfile()
            if settings.preload:
                try:
                    self.app = load_mounts(settings.apps) if settings.apps else load_app(settings.app or "")
                except AppLoadError as exc:
                    raise HaltServer(str(exc), EXIT_APP_LOAD_ERROR) from None
            set_process_title(f"wsgistack: master [{settings.title}]")
            self._import_worker_class()
            self._init_signals()
            self._open_metrics()
            log.debug("wsgistack %s master %s starting %s worker(s) of class %s", __version__, self.pid,
                      self.num_workers, settings.worker_class)
            return self._loop()
        except HaltServer as exc:
            log.error("%s", exc)
            self._stop_workers(fast=True)
            self._wait_for_workers(deadline=time.monotonic() + 5.0)
            return exc.code
        finally:
            self._cleanup()

    def _open_metrics(self) -> None:
        """--metrics-bind: the scrape endpoint, served from this loop (see server/metrics.py)."""
        if self.settings.metrics_bind is None:
            return
        try:
            sock = listen_for_metrics(parse_address(self.settings.metrics_bind))
        except OSError as exc:
            raise HaltServer(f"--metrics-bind {self.settings.metrics_bind}: {exc.strerror or exc}", 2) from None
        self.metrics = ServerMetrics(lambda: self.listeners)
        self.metrics_endpoint = SelectorEndpoint(self.selector, sock, self.metrics.render)
        log.info("metrics at %s", where(sock))

    def _open_listeners(self) -> list[Listener]:
        """systemd's sockets when it passed some (socket activation: LISTEN_PID is ours), else --bind's."""
        activated = listen_fds()  # the variables leave the environment: no child takes these sockets
        if not activated:
            return bind_all(self.settings.bind, self.settings.backlog)
        log.info("socket activation: serving the %d socket%s systemd passed (%s); --bind is not used",
                 len(activated), "" if len(activated) == 1 else "s", ", ".join(name for _, name in activated))
        return inherited_listeners(activated)

    def _status(self) -> str:
        """One line for systemd's STATUS=."""
        booted = sum(w.booted and w.stopping_since is None for w in self.workers.values())
        return (f"serving: {booted} {self.settings.worker_class} worker{'' if booted == 1 else 's'} "
                f"(generation {self.generation})")

    def _import_worker_class(self) -> None:
        """Import the worker class's modules here once, so a fork starts with them instead of importing them
        again (tens of milliseconds per worker: it matters with --max-requests and on reloads)."""
        try:
            worker_class(self.settings.worker_class)
        except Exception:  # noqa: BLE001 - the worker reports the same error in one line when it starts
            log.debug("worker class %s not importable in the master", self.settings.worker_class,
                      exc_info=True)

    def _loop(self) -> int:
        self._manage_workers()
        while True:
            self._sleep()
            self._handle_signals()
            self._reap_workers()
            if self.stopping:
                if not self.workers:
                    log.info("master %s stopped", self.pid)
                    return 0
                self._enforce_stop_deadline()
                continue
            self._murder_workers()
            self._retire_old_generation()
            self._manage_workers()

    def _wait_for_workers(self, deadline: float) -> None:
        """Reap the workers of a halted master, killing those that outlive the deadline."""
        while self.workers:
            for pid, _ in reap_children():
                self.workers.pop(pid, None)
            if not self.workers:
                return
            if time.monotonic() > deadline:
                self._signal_workers(signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.05)

    def _cleanup(self) -> None:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
            self.metrics_endpoint = None
            address = parse_address(self.settings.metrics_bind or "")
            if address.kind == "unix":
                try:
                    os.unlink(address.path)
                except OSError:
                    pass
        for listener in self.listeners:
            listener.close(unlink=True)
        self.listeners = []
        pidfile = self.settings.pid
        if pidfile:
            try:
                with open(pidfile) as handle:
                    mine = handle.read().strip() == str(self.pid)
                if mine:
                    os.unlink(pidfile)
            except OSError:
                pass

    def _write_pidfile(self) -> None:
        if not self.settings.pid:
            return
        try:
            with open(self.settings.pid, "w") as handle:
                handle.write(f"{self.pid}\n")
        except OSError as exc:
            raise HaltServer(f"--pid {self.settings.pid}: {exc.strerror}", 2) from None

    # -- signals ---------------------------------------------------------------------------------------

    def _init_signals(self) -> None:
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, None)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _sleep(self) -> None:
        for key, events in self.selector.select(1.0):
            if key.data is self.metrics_endpoint and key.data is not None:
                self.metrics_endpoint.handle(key, events)
            elif key.data is None:
                try:
                    while os.read(self.wakeup_r, 4096):
                        pass
                except OSError:
                    pass
            elif key.data in self.workers:
                self._read_boot_report(self.workers[key.data])
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.expire()

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name
            handler = getattr(self, f"handle_{name[3:].lower()}", None)
            if handler is not None:
                if signum != signal.SIGCHLD:
                    log.info("master %s got %s", self.pid, name)
                handler()

    def handle_chld(self) -> None:
        """A child exited: reaping happens right after the signals."""

    def handle_term(self) -> None:
        """Graceful stop: workers finish their requests within --graceful-timeout."""
        self._begin_stop("graceful")

    def handle_int(self) -> None:
        """Fast stop."""
        self._begin_stop("fast")

    handle_quit = handle_int

    def handle_hup(self) -> None:
        """Reload settings and app code: start a new generation of workers, then retire the old one."""
        if self.stopping:
            return
        notify_reloading(f"reloading: starting generation {self.generation + 1}")
        if self.reload_settings is not None:
            try:
                new = self.reload_settings()
            except ConfigError as exc:
                log.error("reload refused, keeping the current settings: %s", exc)
                notify("READY=1", f"reload refused (the current workers keep serving): {exc}")
                return
            if new.bind != self.settings.bind:
                log.warning("reload: a change of --bind takes a restart; still listening at the old addresses")
                new = new.replace(bind=self.settings.bind)
            if (new.error_log, new.log_level) != (self.settings.error_log, self.settings.log_level):
                setup_error_log(new.error_log, new.log_level)
            self.settings = new
            self.num_workers = new.workers
            self._import_worker_class()
        self.generation += 1
        self.reloading = True
        log.info("reload: starting generation %s (%s workers)", self.generation, self.num_workers)

    def handle_ttin(self) -> None:
        """One worker more."""
        self.num_workers += 1
        log.info("workers: %s", self.num_workers)

    def handle_ttou(self) -> None:
        """One worker less (never fewer than one)."""
        self.num_workers = max(1, self.num_workers - 1)
        log.info("workers: %s", self.num_workers)

    def handle_usr1(self) -> None:
        """Reopen log files (after logrotate) here and in every worker."""
        reopen_error_log()
        self._signal_workers(signal.SIGUSR1)

    def handle_winch(self) -> None:
        """Not used outside daemon mode (as in gunicorn): ignored."""

    def handle_usr2(self) -> None:
        """Binary upgrade is not supported yet: say so rather than ignore it silently."""
        log.warning("USR2 (upgrade in place) is not supported; use HUP to reload")

    def _begin_stop(self, mode: str) -> None:
        if self.stopping == "fast" or self.stopping == mode:
            return
        self.stopping = mode
        self.stop_started = time.monotonic()
        notify("STOPPING=1", f"stopping ({mode}): {len(self.workers)} worker(s) finishing")
        if mode == "graceful":
            self._shut_the_door()
        self._stop_workers(fast=mode == "fast")
        if mode == "graceful":
            # the workers hold their own copies: the queue lives on until the last of them closes
            for listener in self.listeners:
                listener.close(unlink=False)
            self.listeners = []

    def _shut_the_door(self) -> None:
        """A graceful stop's first step, before any worker hears of it: no new client can get in (a unix
        socket's file is removed if it is still ours; a TCP socket drops new SYNs), and the shared flag tells
        the workers to accept what already waits in the kernel's queue before they close (gunicorn #3397:
        closing a listener with connections queued resets them)."""
        self.server_stop.set()
        for listener in self.listeners:
            log.info("stopping: %s: %s", listener.name(), listener.shut())

    def _stop_workers(self, fast: bool) -> None:
        for worker in self.workers.values():
            self._stop_worker(worker, fast)

    def _stop_worker(self, worker: WorkerProcess, fast: bool = False) -> None:
        if worker.stopping_since is None or fast:
            worker.stopping_since = worker.stopping_since or time.monotonic()
            self._kill(worker.pid, signal.SIGQUIT if fast else signal.SIGTERM)

    def _enforce_stop_deadline(self) -> None:
        limit = self.settings.graceful_timeout if self.stopping == "graceful" else min(
            self.settings.graceful_timeout, 5.0)
        if time.monotonic() - self.stop_started > limit:
            for worker in self.workers.values():
                log.warning("worker %s did not stop within %.0fs: killing it", worker.pid, limit)
                self._kill(worker.pid, signal.SIGKILL)
            self.stop_started = float("inf")  # once

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers.values():
            self._kill(worker.pid, signum)

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    # -- workers ---------------------------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        self.worker_age += 1
        heartbeat = Heartbeat()
        boot_r, boot_w = os.pipe2(os.O_CLOEXEC)
        app = self.app
        slot = self.metrics.new_slot() if self.metrics is not None else None
        board_slot = self.accept_board.claim()
        # until the child has its own handlers, a signal for it must wait (see FORK_BLOCKED_SIGNALS)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED_SIGNALS)
        # the child's collections never walk what it inherits (a preloaded app): its pages stay shared
        gc.freeze()
        try:
            pid = os.fork()
        finally:
            if os.getpid() == self.pid:
                gc.unfreeze()  # the master's own garbage is collected as ever
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if pid == 0:  # the child: whatever happens, it never returns into the master's code
            try:
                os.close(boot_r)
                self._forget_in_child()
                worker = worker_class(self.settings.worker_class)(
                    self.worker_age, self.pid, self.listeners, self.settings, heartbeat, boot_w, app,
                    self.server_stop, slot, self.accept_board.share(board_slot))
                worker.boot()
            except BaseException:
                log.exception("worker %s could not start", os.getpid())
            finally:
                os._exit(EXIT_BOOT_ERROR)
        os.close(boot_w)
        os.set_blocking(boot_r, False)
        self.workers[pid] = WorkerProcess(pid, self.worker_age, self.generation, heartbeat, boot_r, board_slot)
        if self.metrics is not None and slot is not None:
            self.metrics.worker_started(pid, slot)
        self.selector.register(boot_r, selectors.EVENT_READ, pid)

    def _forget_in_child(self) -> None:
        """Drop what belongs to the master only."""
        signal.set_wakeup_fd(-1)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)
        if self.metrics_endpoint is not None:  # its sockets are the master's: a worker must not hold them
            for exchange in self.metrics_endpoint.exchanges.values():
                exchange.sock.close()
            self.metrics_endpoint.sock.close()
        self.selector.close()
        for fd in (self.wakeup_r, self.wakeup_w):
            os.close(fd)
        for worker in self.workers.values():
            if worker.boot_fd >= 0:
                os.close(worker.boot_fd)

    def _read_boot_report(self, worker: WorkerProcess) -> None:
        """A worker's reports, one a line: "ok" once booted, then "retiring"; or "error <one line>"."""
        if worker.boot_fd < 0:
            return
        try:
            data = os.read(worker.boot_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        worker.boot_buffer += data
        while b"\n" in worker.boot_buffer:
            line, _, rest = bytes(worker.boot_buffer).partition(b"\n")
            worker.boot_buffer = bytearray(rest)
            self._worker_reported(worker, line.decode("utf-8", "replace").strip())
        if not data:
            self._close_boot_pipe(worker)
            if worker.boot_buffer.strip():  # a last line without its newline
                report = worker.boot_buffer.decode("utf-8", "replace").strip()
                worker.boot_buffer = bytearray()
                self._worker_reported(worker, report)

    def _worker_reported(self, worker: WorkerProcess, report: str) -> None:
        if report == "retiring":
            worker.stop_cause = worker.stop_cause or "max_requests"
            # it stopped accepting (--max-requests) and exits once its connections are answered: its
            # replacement boots now, not after the exit, so the sockets are never long without a worker
            if worker.stopping_since is None:
                worker.stopping_since = time.monotonic()
            self._close_boot_pipe(worker)
        elif report == "ok":
            worker.booted = True
            if not self.ready:
                self.ready = True
                for listener in self.listeners:
                    log.info("listening at %s (%s worker, %s process%s)", listener.name(),
                             self.settings.worker_class, self.num_workers, "es" if self.num_workers > 1 else "")
                notify("READY=1", self._status())
        elif report.startswith("error "):
            self._boot_failed(worker, report[6:])

    def _close_boot_pipe(self, worker: WorkerProcess) -> None:
        if worker.boot_fd >= 0:
            self.selector.unregister(worker.boot_fd)
            os.close(worker.boot_fd)
            worker.boot_fd = -1

    def _boot_failed(self, worker: WorkerProcess, message: str) -> None:
        if self.settings.reload:
            log.error("%s (waiting for a change to the code)", message)
            return
        if not self.ready:
            raise HaltServer(message, EXIT_APP_LOAD_ERROR)
        if worker.generation == self.generation and worker.generation != 0 and not self._generation_booted():
            log.error("reload failed, the previous workers keep serving: %s", message)
            for other in self.workers.values():
                if other.generation == self.generation:
                    self._stop_worker(other, fast=True)
            self.generation -= 1
            if self.reloading:
                self.reloading = False
                notify("READY=1", f"reload failed (the previous workers keep serving): {message}")
            return
        log.error("a new worker could not boot: %s (retrying)", message)
        self.next_spawn = time.monotonic() + RESPAWN_BACKOFF

    def _generation_booted(self) -> bool:
        return any(w.booted for w in self.workers.values() if w.generation == self.generation)

    def _reap_workers(self) -> None:
        for pid, status in reap_children():
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            worker.heartbeat.close()
            if worker.board_slot is not None:
                self.accept_board.release(worker.board_slot)
            self._log_exit(worker, status)
            # a report written just before exiting is still in the pipe
            self._read_boot_report(worker)
            self._close_boot_pipe(worker)
            if self.metrics is not None:  # after the report: "retiring" is the restart's cause (max_requests)
                self.metrics.worker_gone(pid, self._restart_cause(worker, status))
            if not worker.booted:
                self.next_spawn = time.monotonic() + RESPAWN_BACKOFF  # no tight loop of failing boots
            if not worker.booted and not self.ready and not self.settings.reload and not self.stopping:
                raise HaltServer(f"worker {pid} failed to boot ({describe_exit_verb(status)})", EXIT_BOOT_ERROR)

    def _restart_cause(self, worker: WorkerProcess, status: int) -> str | None:
        """Why a reaped worker is replaced (None when the server stops and nothing replaces it)."""
        if self.stopping:
            return None
        if worker.stop_cause is not None:
            return worker.stop_cause
        if worker.stopping_since is None and self.settings.reload and exit_code(status) == 0:
            return "reload"  # --reload: it saw a file change and left
        return "crash"

    def _log_exit(self, worker: WorkerProcess, status: int) -> None:
        cause = describe_exit_verb(status)
        expected = worker.stopping_since is not None
        signum = exit_signal(status)
        if signum is not None:
            expected = expected and signum != signal.SIGKILL
        else:
            expected = expected or exit_code(status) == 0
        if expected:
            log.info("worker %s %s", worker.pid, cause)
        else:
            log.warning("worker %s %s unexpectedly; replacing it", worker.pid, cause)

    def _murder_workers(self) -> None:
        """Kill workers silent for longer than --timeout, after dumping their stacks to the error log."""
        timeout = self.settings.timeout
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.aborted_at is not None:
                if now - worker.aborted_at > ABORT_GRACE:
                    self._kill(worker.pid, signal.SIGKILL)
                continue
            if worker.stopping_since is not None:
                if now - worker.stopping_since > self.settings.graceful_timeout + ABORT_GRACE:
                    log.warning("worker %s did not stop within --graceful-timeout: killing it", worker.pid)
                    self._kill(worker.pid, signal.SIGKILL)
                    worker.aborted_at = now
                continue
            if timeout and worker.heartbeat.silent_for() > timeout:
                log.error("worker %s timed out (silent for more than %gs): its stacks follow, then it is killed",
                          worker.pid, timeout)
                worker.aborted_at = now
                worker.stopping_since = now
                worker.stop_cause = "timeout"
                self._kill(worker.pid, signal.SIGABRT)

    def _retire_old_generation(self) -> None:
        """Once the new generation has booted in full, old workers stop gracefully."""
        current = [w for w in self.workers.values() if w.generation == self.generation and w.stopping_since is None]
        if sum(w.booted for w in current) < min(self.num_workers, len(current)) or not current:
            return
        for worker in self.workers.values():
            if worker.generation < self.generation and worker.stopping_since is None:
                worker.stop_cause = "reload"
                self._stop_worker(worker)
        if self.reloading:
            self.reloading = False
            notify("READY=1", self._status())

    def _manage_workers(self) -> None:
        """Spawn missing workers; retire the oldest extras (after TTOU)."""
        current = sorted((w for w in self.workers.values()
                          if w.generation == self.generation and w.stopping_since is None), key=lambda w: w.age)
        excess = len(current) - self.num_workers
        for worker in current[:max(0, excess)]:
            worker.stop_cause = "scale_down"
            self._stop_worker(worker)
        if excess >= 0 or time.monotonic() < self.next_spawn:
            return
        for _ in range(-excess):
            self._spawn_worker()


def serve(settings: ServeSettings, reload_settings: Callable[[], ServeSettings] | None = None) -> int:
    """Run `wsgistack serve` in this process until it is stopped; returns the exit code."""
    setup_error_log(settings.error_log, settings.log_level)
    try:
        return Arbiter(settings, reload_settings).run()
    except OSError as exc:
        if exc.errno == errno.EINTR:
            return 0
        raise
