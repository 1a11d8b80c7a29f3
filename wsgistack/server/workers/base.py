"""What every worker model shares: boot after the fork, signals, heartbeat, app loading, the request context.

A worker reports its boot to the master through a pipe ("ok", or "error <one line>"), beats its heartbeat
while it is healthy, and exits on its own once its parent is gone, so no worker is ever orphaned.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import gc
import grp
import logging
import os
import pwd
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.config.settings import ServeSettings
from wsgistack.http.parser import Limits
from wsgistack.http.trust import ProxyTrust
from wsgistack.observe.accesslog import AccessLog
from wsgistack.observe.errorlog import ErrorStream, error_log_fd, reopen_error_log
from wsgistack.observe.metrics.requests import RequestRecorder
from wsgistack.observe.metrics.slot import MetricSlot
from wsgistack.process import die_with_parent
from wsgistack.server.accept_share import AcceptShare
from wsgistack.server.context import ServeContext
from wsgistack.server.heartbeat import Heartbeat
from wsgistack.server.protocols.choose import probe_exchange
from wsgistack.server.reloader import Reloader
from wsgistack.server.sockets import Listener
from wsgistack.server.stop_flag import StopFlag
from wsgistack.wsgi.loader import AppLoadError, load_app
from wsgistack.wsgi.mounts import load_mounts

log = logging.getLogger("wsgistack.server")

EXIT_BOOT_ERROR = 3
EXIT_APP_LOAD_ERROR = 4
SELF_CHECK_TIMEOUT = 5.0  # seconds a new worker's answer to its own health check may take (report_booted)
STOP_GRACE_IDLE = 1.0  # on a graceful stop, idle keep-alive connections get this long for a last request

# blocked by the master across fork() and unblocked by the worker once its own handlers are in place: a TERM
# sent to a worker that is still booting then waits for the worker instead of reaching the master's handler
# the child inherited (which queued it in the child's copy of the master: the worker never stopped)
FORK_BLOCKED_SIGNALS = frozenset({
    signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGTTIN, signal.SIGTTOU,
    signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD,
})


def set_process_title(title: str) -> None:
    """Name the process in ps/top when setproctitle is installed (it is optional)."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)


class Worker:
    """Base of the worker models; a subclass implements `run()`."""

    multithread = False
    keeps_alive = True

    def __init__(self, age: int, ppid: int, listeners: list[Listener], settings: ServeSettings,
                 heartbeat: Heartbeat, boot_fd: int, app: Callable[..., Any] | None,
                 server_stop: StopFlag | None = None, metrics_slot: MetricSlot | None = None,
                 accept_share: AcceptShare | None = None):
        self.age = age
        self.ppid = ppid
        self.listeners = listeners
        self.settings = settings
        self.heartbeat = heartbeat
        self.boot_fd = boot_fd
        self.app = app
        self.alive = True
        self.requests = 0
        jitter = random.randint(0, settings.max_requests_jitter) if settings.max_requests_jitter else 0
        self.max_requests = settings.max_requests + jitter if settings.max_requests else 0
        self.access_log: AccessLog | None = None
        self.wakeup_r = self.wakeup_w = -1
        self.server_stop = server_stop
        self.metrics_slot = metrics_slot  # with --metrics-bind: this worker's shared memory (server/metrics.py)
        self.accept_share = accept_share  # its load beside its siblings' (server/accept_share.py)
        self.ctx: ServeContext | None = None
        self.draining = False  # a graceful stop (TERM) began: the health endpoint says so
        self.empty_backlog = False  # ... of the whole server: accept what the kernel queued before closing

    # -- boot ------------------------------------------------------------------------------------------

    def boot(self) -> None:
        """Runs in the child right after fork; never returns (the process exits from here)."""
        code = 0
        try:
            code = self._boot_and_run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %s crashed", os.getpid())
            code = 1
        finally:
            logging.shutdown()
        os._exit(code)

    def _boot_and_run(self) -> int:
        settings = self.settings
        self.before_boot()
        set_process_title(f"wsgistack: worker [{settings.title}]")
        self._init_signals()
        try:
            # opened before dropping privileges, like the master's error log, so root-owned logs work
            self.access_log = AccessLog(settings.access_log, settings.access_log_format)
        except ConfigError as exc:
            self._report_boot(f"error {exc}")
            return EXIT_BOOT_ERROR
        self._drop_privileges()
        reloader = Reloader() if settings.reload else None
        if self.app is None:
            try:
                self.app = load_mounts(settings.apps) if settings.apps else load_app(settings.app or "")
            except AppLoadError as exc:
                if exc.details:
                    log.debug("%s", exc.details)
                stamps = reloader.snapshot(exc.details) if reloader is not None else {}
                self._report_boot(f"error {exc}")
                if reloader is not None:
                    # development: wait for the broken file to be fixed instead of failing again every second
                    reloader.wait_for_change(stamps)
                    return 0
                return EXIT_APP_LOAD_ERROR
        if reloader is not None:
            reloader.start(on_change=self._reload_on_change)
        # What the app's import made lives as long as the worker: out of the garbage collector's sight, or
        # every full collection walks it again with the GIL held (a Flask app: ~40k objects, 15-30 ms each
        # time, about once a second under load). Cycles made from now on are collected as ever.
        gc.collect()
        gc.freeze()
        self.run()  # says "ok" through report_booted() once it can serve
        return 0

    def before_boot(self) -> None:
        """A worker class's first step in the child, before signals, logs and the app (gevent patches here)."""

    def report_booted(self) -> None:
        """Tell the master this worker serves ("ok": at start, "listening at"; on HUP, the old generation may
        retire), once it answered its own health check: the health endpoint's request, sent over a socket
        pair through this worker class's own connection code (its loop, its protocol), so a worker whose
        serving machinery fails after the app imported keeps the old generation serving. Exits when not."""
        problem = self._failed_self_check()
        if problem is not None:
            self._report_boot(f"error worker {os.getpid()} failed its self-check: {problem}")
            raise SystemExit(EXIT_BOOT_ERROR)
        self._report_boot("ok")
        log.info("worker %s booted (%s)", os.getpid(), self.settings.worker_class)

    def _failed_self_check(self) -> str | None:
        path = self.settings.health_path
        if not path or self.draining or self.ctx is None:
            return None  # no endpoint to ask; or told to stop already (it would say 503): nothing to gate
        # the probe is no request of the worker's: not in its access log, not counted for --max-requests
        ctx = dataclasses.replace(self.ctx, access_log=AccessLog(None, self.settings.access_log_format),
                                  on_request=lambda: None, metrics=None)
        request, read_answer = probe_exchange(self.settings.protocol, path)
        try:
            answer = self.answer_self_check(ctx, request)
            status, body = read_answer(answer)
        except Exception as exc:  # noqa: BLE001 - whatever broke is the one line the master logs
            return f"{type(exc).__name__}: {exc}"
        if self.draining:
            return None  # told to stop while it checked: its 503 is right, and no boot failure
        if status != 200 or not body.endswith(b"ready\n"):
            return f"the health endpoint answered {answer[:40]!r}"
        return None

    def answer_self_check(self, ctx: ServeContext, request: bytes) -> bytes:
        """Serve `request` on one end of a socket pair the way this class serves a client; the bytes that
        came back on the other end, up to its close (see report_booted)."""
        raise NotImplementedError

    def _report_boot(self, message: str) -> None:
        """Tell the master: "ok" (the pipe stays open for "retiring"), or "error <one line>" (closed)."""
        self._report(message, close=message != "ok")

    def _report(self, message: str, close: bool) -> None:
        if self.boot_fd < 0:
            return
        try:
            os.write(self.boot_fd, (message.replace("\n", " ") + "\n").encode("utf-8", "replace"))
            if close:
                os.close(self.boot_fd)
                self.boot_fd = -1
        except OSError:
            pass

    def _reload_on_change(self, path: str) -> None:
        log.info("%s changed: restarting worker %s", path, os.getpid())
        self.alive = False
        self.wake()

    def _drop_privileges(self) -> None:
        settings = self.settings
        if settings.group is not None:
            gid = int(settings.group) if settings.group.isdigit() else grp.getgrnam(settings.group).gr_gid
            os.setgroups([gid])
            os.setgid(gid)
        if settings.user is not None:
            uid = int(settings.user) if settings.user.isdigit() else pwd.getpwnam(settings.user).pw_uid
            os.setuid(uid)

    # -- signals ---------------------------------------------------------------------------------------

    def _init_signals(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self._handle_term)
        # a master killed with SIGKILL tells nobody: the kernel's TERM starts the drain at once, and health
        # says "draining" from then on. An orphan that served on until its next look at getppid answered a
        # restarted server's readiness check for it, while that server could not bind its address
        die_with_parent(signal.SIGTERM)
        signal.signal(signal.SIGINT, self._handle_quit)
        signal.signal(signal.SIGQUIT, self._handle_quit)
        signal.signal(signal.SIGUSR1, self._handle_usr1)
        self._register_stack_dump()
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED_SIGNALS)  # what arrived meanwhile runs now

    def _register_stack_dump(self) -> None:
        # faulthandler writes every thread's stack from the C signal handler, whatever the main thread is
        # stuck in, then lets the signal kill the process: the master's SIGABRT for a timed-out worker
        # (and a segfault in an extension) leaves its stacks in the error log
        faulthandler.enable(file=error_log_fd(), all_threads=True)

    def _handle_term(self, signum: int, frame: Any) -> None:
        # the whole server stops when the master says so (the stop flag), or when the master is gone (its
        # death's TERM): nobody else will take what waits in the listen queue
        whole = self.server_stop is not None and self.server_stop.is_set() or not self.parent_alive()
        self.begin_draining(whole_server=whole)
        self.wake()

    def begin_draining(self, whole_server: bool) -> None:
        """A graceful stop begins (TERM, or the master is gone): the health endpoint says "draining" from
        now on, before any listener closes. When the whole server stops nobody else will accept what waits
        in the kernel's listen queue, so this worker empties it before closing its sockets; when it retires
        alone, the other workers take it."""
        self.alive = False
        self.draining = True
        self.empty_backlog = self.empty_backlog or whole_server
        if self.ctx is not None:
            self.ctx.draining = True

    def _handle_quit(self, signum: int, frame: Any) -> None:
        os._exit(0)

    def _handle_usr1(self, signum: int, frame: Any) -> None:
        reopen_error_log()
        self._register_stack_dump()
        if self.access_log is not None:
            self.access_log.reopen()

    def wake(self) -> None:
        """Wake the worker's main loop from another thread."""
        try:
            os.write(self.wakeup_w, b"\0")
        except OSError:
            pass

    def drain_wakeups(self) -> None:
        """Empty the wake-up pipe after the loop woke."""
        try:
            while os.read(self.wakeup_r, 4096):
                pass
        except OSError:
            pass

    # -- running ---------------------------------------------------------------------------------------

    def parent_alive(self) -> bool:
        """False once the master is gone: the worker then stops instead of living on as an orphan."""
        return os.getppid() == self.ppid

    def check_parent(self) -> bool:
        """A main loop's look at its master: once it is gone, stop as on TERM (said once); `self.alive`."""
        if self.alive and not self.parent_alive():
            log.warning("worker %s: the master is gone; stopping", os.getpid())
            self.begin_draining(whole_server=True)  # no new worker will come to take the queue
        return self.alive

    def count_request(self) -> None:
        """Called at each request; asks for a graceful restart once --max-requests is reached."""
        self.requests += 1
        if self.max_requests and self.requests >= self.max_requests and self.alive:
            log.info("worker %s reached %s requests: restarting", os.getpid(), self.requests)
            self.alive = False
            self.wake()
            self.report_retiring()

    def report_retiring(self) -> None:
        """Tell the master this worker stopped accepting and will exit, so its replacement starts now."""
        self._report("retiring", close=True)

    def serve_context(self, keep_alive: Callable[[], bool], on_request: Callable[[], None],
                      beat: Callable[[], None]) -> ServeContext:
        """The context every connection of this worker shares."""
        settings = self.settings
        assert self.app is not None and self.access_log is not None
        self.ctx = ServeContext(
            app=self.app,
            limits=Limits(settings.limit_request_line, settings.limit_request_fields,
                          settings.limit_request_field_size, settings.max_body_size),
            client_timeout=settings.client_timeout or 3600.0,
            access_log=self.access_log,
            trust=ProxyTrust(settings.forwarded_allow_ips),
            errors=ErrorStream(),
            multithread=self.multithread,
            keep_alive=keep_alive,
            on_request=on_request,
            beat=beat,
            keep_alive_timeout=settings.keep_alive,
            health_path=settings.health_path,
            protocol=settings.protocol,
            gateway_peers=None if settings.protocol == "http" else ProxyTrust(settings.protocol_allow_from),
            # threads (app threads beside a loop, a thread per connection) share it: a lock around each count
            metrics=None if self.metrics_slot is None else RequestRecorder(
                self.metrics_slot, threaded=settings.worker_class != "sync"),
        )
        self.ctx.draining = self.draining  # a TERM that came before the context existed
        return self.ctx

    def run(self) -> None:
        """The worker's main loop; returns when the worker should exit."""
        raise NotImplementedError

    @staticmethod
    def beat_interval(settings: ServeSettings) -> float:
        """How often the main loop wakes to beat and look around."""
        return min(1.0, settings.timeout / 4) if settings.timeout else 1.0

    def close_listeners(self) -> None:
        """Close this worker's copies of the listening sockets (the master and the other workers keep
        theirs)."""
        for listener in self.listeners:
            listener.sock.close()

    def deadline_passed(self, since: float) -> bool:
        """True once --graceful-timeout has passed since `since` (monotonic)."""
        return time.monotonic() - since > self.settings.graceful_timeout

