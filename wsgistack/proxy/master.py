"""Running `wsgistack proxy`: one process, or (`workers = N`) a master and N proxy processes on the same
listening sockets, as nginx's worker_processes.

The master binds, forks the workers, and then only waits for signals: it checks a reloaded config itself
before passing HUP on (so a broken file is refused once, with one message), forwards USR1 and the stop
signals, and replaces a worker that died. Limits (limit_req, limit_conn, max_connections) are counted per
worker, as they would be in nginx without a shared-memory zone; with one worker they are exact. The workers
share the listen queue fairly: each has a slot of the master's accept board (server/accept_share.py).

It sleeps in a selector: signal handlers only queue the signal and wake it through a pipe (as the server's
arbiter does), so the same loop answers /metrics (`metrics_bind`) without ever waiting on a scraper. Each
worker gets a slot of shared memory made before its fork (proxy/metrics.py); the master folds it into its
totals when it reaps the worker.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.observe.errorlog import setup_error_log
from wsgistack.observe.metrics.endpoint import SelectorEndpoint, where
from wsgistack.process import describe_exit, die_with_parent, notify, notify_reloading, reap_children
from wsgistack.proxy.metrics import ProxyMetrics, ProxyRecorder, close_endpoint, open_endpoint
from wsgistack.proxy.server import STOP_GRACE, ProxyServer, serve_forever
from wsgistack.proxy.settings import ProxySettings
from wsgistack.server.accept_share import AcceptBoard

log = logging.getLogger("wsgistack.proxy")
_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
RESPAWN_PAUSE = 1.0  # a worker that dies at once is not restarted in a tight loop


class ProxyMaster:
    """Keeps `count` worker processes serving the sockets of `server`."""

    def __init__(self, server: ProxyServer, count: int, metrics_sock: socket.socket | None = None):
        self.server = server
        self.count = count
        self.workers: dict[int, float] = {}  # pid -> start time
        self.accept_board = AcceptBoard()  # every worker's open connections: fair shares of the listen queue
        self.board_slots: dict[int, int | None] = {}  # pid -> its slot of the board
        self.stopping = False
        self.pid = os.getpid()
        server.announces = False  # the master speaks to systemd, its workers do not
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []  # queued by the handlers, acted on by the loop
        self.wakeup_r = self.wakeup_w = -1
        self.metrics: ProxyMetrics | None = None
        self.endpoint: SelectorEndpoint | None = None
        self._metrics_name: Any = None
        if metrics_sock is not None:
            self.metrics = ProxyMetrics(lambda: self.server.state)
            self.endpoint = SelectorEndpoint(self.selector, metrics_sock, self.metrics.render)
            self._metrics_name = metrics_sock.getsockname()

    def run(self) -> int:
        """Fork the workers and supervise them until a stop signal; returns the exit code."""
        self._init_signals()
        for _ in range(self.count):
            self.spawn()
        if self.endpoint is not None:
            log.info("metrics at %s", where(self.endpoint.sock))
        # the sockets listen since bind(): the kernel queues connections until a worker's loop accepts them
        notify("READY=1", self.status())
        while self.workers or not self.stopping:
            for signum in self.wait(1.0):
                if self.stopping:
                    break  # stop() saw the workers out: what came meanwhile has nobody to go to
                if signum == signal.SIGCHLD:
                    self.reap()
                elif signum == signal.SIGHUP:
                    self.reload()
                elif signum == signal.SIGUSR1:
                    self.server.access_log.reopen()
                    self.forward(signal.SIGUSR1)
                else:
                    self.stop()
        self._close_endpoint()
        self.server.close_listeners()
        log.info("stopped")
        return 0

    # -- signals and the selector -------------------------------------------------------------------------

    def _init_signals(self) -> None:
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, None)
        for signum in _SIGNALS:
            signal.signal(signum, self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def wait(self, timeout: float) -> list[int]:
        """Sleep until a signal (or `timeout`), answering scrapers meanwhile; the signals that came, in order."""
        if not self.signals:
            for key, events in self.selector.select(timeout):
                if key.data is None:
                    try:
                        while os.read(self.wakeup_r, 4096):
                            pass
                    except OSError:
                        pass
                elif self.endpoint is not None:
                    self.endpoint.handle(key, events)
        if self.endpoint is not None:
            self.endpoint.expire()
        signals, self.signals = self.signals, []
        return signals

    def _close_endpoint(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
            close_endpoint(self.endpoint.sock, self._metrics_name)
            self.endpoint = None

    def _forget_in_child(self) -> None:
        """What is the master's alone: its signal handlers and pipe, its selector and scrapers, the other
        workers' slots."""
        signal.set_wakeup_fd(-1)
        for signum in _SIGNALS:  # still blocked: the worker's loop sets its own handlers, then unblocks them
            signal.signal(signum, signal.SIG_DFL)
        if self.endpoint is not None:  # closed here only: unregistering would change the master's epoll set
            for exchange in self.endpoint.exchanges.values():
                exchange.sock.close()
            self.endpoint.sock.close()
            self.endpoint = None
        self.selector.close()
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)
        if self.metrics is not None:
            self.metrics.close_in_child()

    # -- workers --------------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start one worker on the master's sockets (and, with metrics_bind, its slot made before the fork)."""
        slot = self.metrics.new_slot() if self.metrics is not None else None
        board_slot = self.accept_board.claim()
        # until the worker's loop has its handlers, a signal for it must wait: it is blocked across the fork
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        finally:
            if os.getpid() == self.pid:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if pid == 0:
            code = 1
            try:
                self._forget_in_child()
                self.server.master_pid = self.pid  # a TERM to this worker alone leaves the listeners open
                self.server.accept_share = self.accept_board.share(board_slot)
                if slot is not None:
                    self.server.count_into(ProxyRecorder(slot))
                die_with_parent(signal.SIGTERM)  # no worker outlives a killed master
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
                code = serve_forever(self.server)  # unblocks the others once it handles them
            finally:
                os._exit(code)
        self.workers[pid] = time.monotonic()
        self.board_slots[pid] = board_slot
        if self.metrics is not None and slot is not None:
            self.metrics.worker_started(pid, slot)
        log.info("worker %d started", pid)

    def reap(self) -> None:
        """Collect dead workers (what they counted joins the totals); replace them unless stopping."""
        for pid, status in reap_children():
            started = self.workers.pop(pid, None)
            self._release_slot(pid)
            if self.metrics is not None:
                self.metrics.worker_gone(pid)
            if started is None or self.stopping:
                continue
            log.error("worker %d died (%s); starting another", pid, describe_exit(status))
            if time.monotonic() - started < RESPAWN_PAUSE:
                time.sleep(RESPAWN_PAUSE)  # it died at once: do not spin
            self.spawn()

    def _release_slot(self, pid: int) -> None:
        board_slot = self.board_slots.pop(pid, None)
        if board_slot is not None:
            self.accept_board.release(board_slot)

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
            self.wait(0.2)  # only the workers' exits matter now (and scrapers are still answered)
            self.reap()
        self.forward(signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            self.workers.pop(pid, None)
            if self.metrics is not None:
                self.metrics.worker_gone(pid)


def run_proxy(settings: ProxySettings, cli: dict | None = None) -> int:
    """Run the proxy in the foreground: one process, or this master and `workers` processes."""
    setup_error_log(settings.error_log or "-", settings.log_level)
    server = ProxyServer(settings, cli)
    server.bind()
    try:
        metrics_sock = open_endpoint(settings.metrics_bind)
    except ConfigError:
        server.close_listeners()
        raise
    if settings.workers == 1:
        if metrics_sock is not None:
            server.serve_metrics(metrics_sock)
        return serve_forever(server)
    return ProxyMaster(server, settings.workers, metrics_sock).run()
