"""Running `wsgistack proxy`: one process, or (`workers = N`) a master and N proxy processes on the same
listening sockets, as nginx's worker_processes.

The master binds, forks the workers, and then only waits for signals: it checks a reloaded config itself
before passing HUP on (so a broken file is refused once, with one message), forwards USR1 and the stop
signals, and replaces a worker that died. Limits (limit_req, limit_conn, max_connections) are counted per
worker, as they would be in nginx without a shared-memory zone; with one worker they are exact.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from wsgistack.observe.errorlog import setup_error_log
from wsgistack.process import describe_exit, die_with_parent, notify, notify_reloading, reap_children
from wsgistack.proxy.server import STOP_GRACE, ProxyServer, serve_forever
from wsgistack.proxy.settings import ProxySettings

log = logging.getLogger("wsgistack.proxy")
_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
RESPAWN_PAUSE = 1.0  # a worker that dies at once is not restarted in a tight loop


class ProxyMaster:
    """Keeps `count` worker processes serving the sockets of `server`."""

    def __init__(self, server: ProxyServer, count: int):
        self.server = server
        self.count = count
        self.workers: dict[int, float] = {}  # pid -> start time
        self.stopping = False
        server.announces = False  # the master speaks to systemd, its workers do not

    def run(self) -> int:
        """Fork the workers and supervise them until a stop signal; returns the exit code."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        for _ in range(self.count):
            self.spawn()
        # the sockets listen since bind(): the kernel queues connections until a worker's loop accepts them
        notify("READY=1", self.status())
        while self.workers or not self.stopping:
            info = signal.sigtimedwait(_SIGNALS, 1.0)
            if info is None:
                continue
            signum = info.si_signo
            if signum == signal.SIGCHLD:
                self.reap()
            elif signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGUSR1:
                self.server.access_log.reopen()
                self.forward(signal.SIGUSR1)
            elif not self.stopping:
                self.stop()
        self.server.close_listeners()
        log.info("stopped")
        return 0

    def spawn(self) -> None:
        """Start one worker on the master's sockets."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.server.master_pid = os.getppid()  # a TERM to this worker alone leaves the listeners open
                die_with_parent(signal.SIGTERM)  # no worker outlives a killed master
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
                code = serve_forever(self.server)  # unblocks the others once it handles them
            finally:
                os._exit(code)
        self.workers[pid] = time.monotonic()
        log.info("worker %d started", pid)

    def reap(self) -> None:
        """Collect dead workers; replace them unless stopping."""
        for pid, status in reap_children():
            started = self.workers.pop(pid, None)
            if started is None or self.stopping:
                continue
            log.error("worker %d died (%s); starting another", pid, describe_exit(status))
            if time.monotonic() - started < RESPAWN_PAUSE:
                time.sleep(RESPAWN_PAUSE)  # it died at once: do not spin
            self.spawn()

    def status(self) -> str:
        """One line for systemd's STATUS=."""
        return f"proxying: {len(self.workers)} worker process(es)"

    def reload(self) -> None:
        """Load the config here first (so workers started later get it too); pass HUP on only when it loads."""
        notify_reloading("reloading the configuration")
        if self.server.apply_config():
            self.forward(signal.SIGHUP)
            notify("READY=1", self.status())
        else:
            notify("READY=1", "reload refused (the old configuration keeps serving); " + self.status())

    def forward(self, signum: int) -> None:
        """Send a signal to every worker."""
        for pid in list(self.workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Graceful stop of every worker; SIGKILL for those still there after the grace period."""
        self.stopping = True
        log.info("stopping %d workers", len(self.workers))
        notify("STOPPING=1", f"stopping: {len(self.workers)} worker process(es) finishing")
        # no new client first; then the workers empty the listen queues, and the master's copies go at once,
        # so the queues end with the workers' last accept, not with the master's exit
        self.server.shut_listeners()
        self.forward(signal.SIGTERM)
        self.server.close_listeners()
        deadline = time.monotonic() + STOP_GRACE + 5
        while self.workers and time.monotonic() < deadline:
            signal.sigtimedwait([signal.SIGCHLD], 0.2)
            self.reap()
        self.forward(signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            self.workers.pop(pid, None)


def run_proxy(settings: ProxySettings, cli: dict | None = None) -> int:
    """Run the proxy in the foreground: one process, or this master and `workers` processes."""
    setup_error_log(settings.error_log or "-", settings.log_level)
    server = ProxyServer(settings, cli)
    server.bind()
    if settings.workers == 1:
        return serve_forever(server)
    return ProxyMaster(server, settings.workers).run()
