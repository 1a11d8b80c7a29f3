"""`wsgistack proxy`: the listeners, the event loop, the signals, and reloads without a dropped request.

One process, one uvloop loop. The listening sockets are bound before the loop starts (so a bad address is
a one-line error), and never closed by a reload: HUP builds a new `ProxyState` from the re-read file and
swaps it in; requests in flight finish with the state they started with. A file that does not load is
refused with its error and the old state keeps serving.

Connections are counted here: per client address (`max_connections_per_ip`) and in all. At the global cap
the oldest idle connection (kept alive between requests, or open without a byte of a request) is closed
for the new one, as nginx reuses connections when worker_connections run out, so a crowd of idle
connections cannot lock new clients out; 503 only when none is idle. The cap is also kept below what
RLIMIT_NOFILE allows (each client connection may need an upstream one too), so that running out of
descriptors does not happen: connections would wait in the listen queue meanwhile.

Connections are accepted on the loop by server/loop_acceptor.py, as in the event worker: with `workers = N`
the processes share the listen queue fairly (each publishes its open connections to its siblings), where
the loop's own server let the first to wake take a whole burst of keep-alive connects.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.event_loop import new_event_loop
from wsgistack.observe.errorlog import reopen_error_log
from wsgistack.observe.metrics.endpoint import serve_asyncio, where
from wsgistack.process import listen_fds, notify, notify_reloading
from wsgistack.proxy import static_reply
from wsgistack.proxy.accesslog import open_access_log
from wsgistack.proxy.config import load_proxy_settings
from wsgistack.proxy.connection import ClientConnection
from wsgistack.proxy.health import HealthChecker
from wsgistack.proxy.metrics import ProxyMetrics, ProxyRecorder, close_endpoint
from wsgistack.proxy.routing import ProxyState
from wsgistack.proxy.settings import ListenSettings, ProxySettings
from wsgistack.server.accept_share import AcceptShare
from wsgistack.server.loop_acceptor import LoopAcceptor
from wsgistack.server.sockets import Listener, accept_backlog, bind, inherited_listeners, unread_bytes

log = logging.getLogger("wsgistack.proxy")
BACKLOG = 2048
_HANDLED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
TLS_TIMEOUT = 5.0  # a TLS handshake or close_notify that takes longer is given up (the peer may never answer)
TICK = 0.25  # resolution of the client timeouts
STOP_GRACE = 10.0  # seconds requests in flight get on SIGTERM/SIGINT/SIGQUIT before the proxy exits
# descriptors kept for what is not a client connection or its upstream one: listeners, logs, the loop,
# health checks, idle upstream pools, static files being sent, a burst of connections accepted in one go
FD_RESERVE = 64


class ProxyServer:
    """The running proxy: its state (swapped on reload), connections, access log and listeners."""

    # handed to client connections as their `ConnectionHost`: connection.py cannot import static_reply,
    # which names ClientConnection (an import cycle)
    static = static_reply

    def __init__(self, settings: ProxySettings, cli: dict | None = None):
        self.settings = settings
        self.cli = cli or {}
        self.state = ProxyState(settings)
        self.access_log = open_access_log(settings)
        self.connections: set[ClientConnection] = set()
        # idle connections, oldest first (a dict keeps insertion order and removes in O(1))
        self.idle: dict[ClientConnection, None] = {}
        self.per_address: dict[str, int] = {}
        self.connection_cap = connection_cap(settings.max_connections)
        self.listeners: list[tuple[ListenSettings, Listener]] = []
        # per listening socket, how a connection accepted on it is served: the protocol factory, TLS options
        self.accepting: dict[socket.socket, tuple[Any, dict]] = {}
        self.acceptor: LoopAcceptor | None = None
        self.accept_share: AcceptShare | None = None  # a worker of `workers = N`: its slot of the master's board
        self.adopting: set[asyncio.Task] = set()  # accepted sockets on their way to a transport (TLS: handshake)
        self.health: HealthChecker | None = None
        self.stopping = False
        # whether a response may keep its client's connection: not those handed to a sibling (accept_share.py)
        self.keeps_connection: Callable[[], bool] = lambda: True
        self._stopped: asyncio.Event | None = None
        self.announces = True  # tells systemd of its state (Type=notify); not a worker of `workers = N`
        self.master_pid: int | None = None  # a worker of `workers = N`: its master's pid
        self.metrics: ProxyRecorder | None = None  # what this process counts into (metrics_bind)
        # one process alone: the /metrics listener it serves on its loop, and the scrape behind it
        self.metrics_sock: socket.socket | None = None
        self._metrics_name: Any = None  # its address, kept: the loop's server may take the socket over
        self.scrape: ProxyMetrics | None = None
        self._metrics_server: asyncio.AbstractServer | None = None

    def count_into(self, recorder: ProxyRecorder) -> None:
        """From now on this process counts into `recorder` (its slot): the requests, the upstreams' health."""
        self.metrics = recorder
        self.state.metrics = recorder  # a reload's state takes it over from its previous one

    def serve_metrics(self, sock: socket.socket) -> None:
        """One process alone (workers = 1): count into its own memory and serve /metrics on its loop."""
        self.scrape = ProxyMetrics(lambda: self.state)
        slot = self.scrape.new_slot()
        self.scrape.worker_started(os.getpid(), slot)
        self.count_into(ProxyRecorder(slot))
        self.scrape.recorder = self.metrics
        self.metrics_sock = sock
        self._metrics_name = sock.getsockname()

    def bind(self) -> None:
        """Bind every listener (before the loop runs); ConfigError names the address. When systemd passed
        sockets (socket activation) they are used instead, one per `listen` entry, in order (its options,
        such as ssl, apply to that socket)."""
        activated = listen_fds()  # the variables leave the environment: no child takes these sockets
        if activated:
            listens = self.settings.listen
            if len(activated) != len(listens):
                raise ConfigError(f"socket activation: systemd passed {len(activated)} socket(s) but proxy.listen "
                                  f"has {len(listens)} entr{'y' if len(listens) == 1 else 'ies'}: give one entry "
                                  f"per socket, in the order of the unit's ListenStream= lines")
            self.listeners = list(zip(listens, inherited_listeners(activated)))
            log.info("socket activation: serving the %d socket%s systemd passed; the listen addresses are "
                     "not bound", len(activated), "" if len(activated) == 1 else "s")
            return
        try:
            for listen in self.settings.listen:
                self.listeners.append((listen, bind(listen.address, BACKLOG)))
        except ConfigError as exc:
            self.close_listeners()
            # sockets.bind speaks of the server's --bind; here the setting is proxy.listen / --listen
            raise ConfigError(str(exc).replace("--bind ", "listen ", 1)) from None
        except BaseException:
            self.close_listeners()
            raise

    # -- counting connections -------------------------------------------------------------------------

    def admit(self, connection: ClientConnection) -> str | None:
        """Count a new connection in (closing an idle one at the cap); why it is refused, or None."""
        state = self.state
        address = connection.client_ip
        per_ip = state.settings.max_connections_per_ip
        if per_ip and address != "unix" and not state.trust.trusts(address):
            count = self.per_address.get(address, 0)
            if count >= per_ip:
                if self.metrics is not None:
                    self.metrics.rejected("max_connections", "per_ip")
                log.warning("max_connections_per_ip (%d) reached: refusing a connection from %s",
                            per_ip, address)
                return "Too many connections from this address"
            self.per_address[address] = count + 1
            connection.counted_address = True
        if len(self.connections) >= self.connection_cap:
            if not self.idle:
                if self.metrics is not None:
                    self.metrics.rejected("max_connections", "total")
                log.warning("max_connections (%d) reached and none idle: refusing a connection from %s",
                            self.connection_cap, address)
                self.forget(connection)
                return "Too many connections"
            next(iter(self.idle)).shed()
        self.connections.add(connection)
        self.enter_idle(connection)
        return None

    def enter_idle(self, connection: ClientConnection) -> None:
        """The connection waits for a request: it may be closed for a new one at the cap (newest last)."""
        self.idle[connection] = None
        connection.idle = True

    def leave_idle(self, connection: ClientConnection) -> None:
        """A byte of a request arrived."""
        del self.idle[connection]
        connection.idle = False

    def forget(self, connection: ClientConnection) -> None:
        """The connection is closed (or refused, or shed): it counts no more. Safe to call twice."""
        if connection in self.connections:
            self.connections.discard(connection)
            if self.acceptor is not None:
                self.acceptor.closed_one()  # the siblings see this process with one fewer
        if connection.idle:
            self.leave_idle(connection)
        if connection.counted_address:
            connection.counted_address = False
            address = connection.client_ip
            count = self.per_address[address] - 1
            if count:
                self.per_address[address] = count
            else:
                del self.per_address[address]

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.settings.certfile, self.settings.keyfile)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"proxy: cannot load certfile/keyfile: {exc}") from None
        context.set_alpn_protocols(["http/1.1"])
        return context

    async def serve(self) -> None:
        """Accept connections until stopped."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        tls = self._tls_context() if any(listen.tls for listen, _ in self.listeners) else None
        for listen, listener in self.listeners:
            scheme = "https" if listen.tls else "http"
            sockname = listener.sock.getsockname()
            port = str(sockname[1]) if isinstance(sockname, tuple) else ""
            tls_options = {"ssl": tls, "ssl_handshake_timeout": TLS_TIMEOUT,
                           "ssl_shutdown_timeout": TLS_TIMEOUT} if listen.tls else {}
            factory = functools.partial(ClientConnection, self, scheme, port)
            listener.sock.setblocking(False)
            self.accepting[listener.sock] = (factory, tls_options)
            log.info("listening at %s", _describe(listen, listener))
        # never listen() again: a socket systemd passed keeps its Backlog=
        self.acceptor = LoopAcceptor(loop, list(self.accepting), self._adopt,
                                     lambda: len(self.connections) + len(self.adopting), self.accept_share)
        self.acceptor.start()
        self.keeps_connection = self.acceptor.keeps_connection
        for signum, handler in ((signal.SIGHUP, self.reload), (signal.SIGUSR1, self.reopen_logs),
                                (signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                                (signal.SIGQUIT, self.stop)):
            loop.add_signal_handler(signum, handler)
        # a worker of `workers = N` starts with these blocked, so one sent before the handlers existed
        # (a HUP right after a start) waits for them instead of killing the process
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        self._start_health()
        if self.metrics_sock is not None and self.scrape is not None:
            self._metrics_server = await serve_asyncio(self.metrics_sock, self.scrape.render_async)
            log.info("metrics at %s", where(self.metrics_sock))
        sweeper = loop.create_task(self._sweep())
        log.info("proxy ready: %d route%s, %d upstream%s", len(self.state.routes),
                 "" if len(self.state.routes) == 1 else "s", len(self.state.upstreams),
                 "" if len(self.state.upstreams) == 1 else "s")
        if self.announces:
            notify("READY=1", self.status())
        await self._stopped.wait()
        sweeper.cancel()
        await self._drain()

    def _adopt(self, sock: socket.socket, listening: socket.socket) -> None:
        """A transport and a connection for a socket taken from `listening`'s queue."""
        factory, tls_options = self.accepting[listening]
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(factory, sock, **tls_options))
        self.adopting.add(task)  # the loop holds tasks weakly; a stop waits for these too
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task) -> None:
        self.adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # a TLS handshake that failed or timed out, a peer gone before its transport existed: the client's
            # matter, not the proxy's (and never a traceback)
            log.debug("connection not taken up: %s", task.exception())

    def _start_health(self) -> None:
        if self.health is not None:
            self.health.stop()
        self.health = HealthChecker(list(self.state.upstreams.values()))
        self.health.start()

    async def _sweep(self) -> None:
        """Four times a second: client timeouts and the upstreams' health for the metrics; once a second: idle
        upstream connections, and the balance of client connections with the siblings."""
        ticks = 0
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_deadline(now)
            if self.metrics is not None:
                self.metrics.publish_upstreams(self.state.server_states(now))
            ticks += 1
            if ticks % 4 == 0:
                if self.acceptor is not None:
                    self.acceptor.rebalance()
                for server in self.state.all_servers():
                    server.pool.sweep()

    def status(self) -> str:
        """One line for systemd's STATUS=."""
        return (f"proxying: {len(self.state.routes)} route(s), {len(self.state.upstreams)} upstream(s), "
                f"{len(self.connections)} connection(s)")

    def reload(self) -> None:
        """SIGHUP: read the config again; apply it whole, or keep the old one and say why."""
        if self.announces:
            notify_reloading("reloading the configuration")
        if self.apply_config():
            self._start_health()
            log.info("reloaded %s: %d routes, %d upstreams", self.settings.config_file or "the command line",
                     len(self.state.routes), len(self.state.upstreams))
            if self.announces:
                notify("READY=1", self.status())
        elif self.announces:
            notify("READY=1", "reload refused (the old configuration keeps serving); " + self.status())

    def apply_config(self) -> bool:
        """Load the config file again and swap in its state; False (and the error logged) if it does not load."""
        try:
            settings = load_proxy_settings(self.settings.config_file, self.cli)
            state = ProxyState(settings, previous=self.state)
            access_log = open_access_log(settings) if _log_changed(settings, self.settings) else None
        except ConfigError as exc:
            log.error("reload refused, the old config keeps serving: %s", exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a reload must never take the proxy down
            log.exception("reload refused, the old config keeps serving: %s", exc)
            return False
        if settings.listen != self.settings.listen:
            log.warning("reload: listen addresses changed; they take effect at the next restart")
        old = self.state
        self.settings, self.state = settings, state
        self.connection_cap = connection_cap(settings.max_connections)
        old.retire(state)
        if access_log is not None:
            self.access_log.flush()
            self.access_log = access_log
        return True

    def reopen_logs(self) -> None:
        """SIGUSR1: reopen the access and error logs (after logrotate moved them)."""
        self.access_log.reopen()
        reopen_error_log()
        log.info("logs reopened")

    def stop(self) -> None:
        """SIGTERM/SIGINT/SIGQUIT: stop accepting, let requests in flight finish, then exit."""
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping: no new connections, %d open", len(self.connections))
        if self.announces:
            notify("STOPPING=1", f"stopping: {len(self.connections)} connection(s) finishing")
        self._empty_listen_queues()
        assert self._stopped is not None
        self._stopped.set()

    def _empty_listen_queues(self) -> None:
        """Stop accepting without losing a connection the kernel already queued (closing a listener with
        connections in its queue resets them): no new client gets in (the unix socket's file goes, if it is
        still ours; TCP drops new SYNs), what waits is accepted until the queue is empty, then the servers
        close. With `workers = N` the master shut the door already when the whole proxy stops; a worker stopped
        alone (its master still there) must not shut it: the listeners are shared, and its siblings and
        replacement serve on. A worker whose master died shuts it, as the last one out."""
        alone = self.master_pid is not None and os.getppid() == self.master_pid
        if self.acceptor is not None:
            self.acceptor.stop()
        for _, listener in self.listeners:
            if not alone:
                done = listener.shut()  # in a worker of `workers = N`, once more: no more than the master did
                if self.announces:
                    log.info("stopping: %s: %s", listener.name(), done)
        for listening in self.accepting:
            for sock, _ in accept_backlog(listening):
                self._adopt(sock, listening)
            listening.close()  # this process's copy, at once: what queues now is for a sibling or none

    def shut_listeners(self) -> None:
        """Let no new client in, keeping the queued connections (the master of `workers = N`, first)."""
        for _, listener in self.listeners:
            log.info("stopping: %s: %s", listener.name(), listener.shut())

    async def _drain(self) -> None:
        if self.health is not None:
            self.health.stop()
        deadline = asyncio.get_running_loop().time() + STOP_GRACE
        while (self.connections or self.adopting) and asyncio.get_running_loop().time() < deadline:
            for connection in list(self.connections):
                if not _request_bytes_waiting(connection):
                    connection.close_if_idle()
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()
        for upstream in self.state.upstreams.values():
            upstream.close()
        self.access_log.flush()
        self.close_metrics()  # last: a scraper sees the drain through
        self.close_listeners()
        log.info("stopped")

    def close_metrics(self) -> None:
        """Stop serving /metrics (one process alone; a master closes its own endpoint)."""
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self.metrics_sock is not None:
            close_endpoint(self.metrics_sock, self._metrics_name)
            self.metrics_sock = None

    def close_listeners(self) -> None:
        """Close the listening sockets (and remove unix socket files)."""
        for listen, listener in self.listeners:
            listener.close(unlink=listen.address.kind == "unix")
        self.listeners = []


def _request_bytes_waiting(connection: ClientConnection) -> bool:
    """The kernel holds bytes the connection has not read yet (a request on its way in): closing it now
    would reset it, so it is not idle, whatever its parser says (one just taken from the listen queue)."""
    transport = connection.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.fileno() >= 0 and unread_bytes(sock.fileno()) > 0


def _describe(listen: ListenSettings, listener: Listener) -> str:
    name = listener.sock.getsockname()
    if isinstance(name, tuple):
        host = f"[{name[0]}]" if ":" in name[0] else name[0]
        return f"{'https' if listen.tls else 'http'}://{host}:{name[1]}"
    return f"unix:{name}"


def _log_changed(new: ProxySettings, old: ProxySettings) -> bool:
    return (new.access_log, new.access_log_format, new.access_log_rotate) != \
        (old.access_log, old.access_log_format, old.access_log_rotate)


def connection_cap(max_connections: int) -> int:
    """max_connections, lowered (with a warning) to what the file-descriptor limit allows.

    The soft limit is first raised towards the hard one as far as max_connections needs (systemd's default
    soft limit is 1024 under a hard one of 524288). Each client connection may hold an upstream connection
    too, hence two descriptors each, and FD_RESERVE more for everything else.
    """
    wanted = 2 * max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if raised > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (OSError, ValueError) as exc:
                log.warning("cannot raise the open-file limit to %d: %s", raised, exc)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    cap = max(1, (soft - FD_RESERVE) // 2)
    # a cap within a tenth of the setting (the default 10,000 under a hard limit of 20,000) is no news to
    # the operator at every start
    level = logging.WARNING if cap < 0.9 * max_connections else logging.DEBUG
    log.log(level, "max_connections %d needs %d file descriptors, the limit is %d: at most %d client "
                "connections (raise it: ulimit -n, or LimitNOFILE= in a systemd unit)",
                max_connections, wanted, soft, cap)
    return cap


def serve_forever(server: ProxyServer) -> int:
    """Run one proxy process's loop until a stop signal; returns the exit code."""
    # what exists now lives as long as the process: keep it out of every garbage collection
    gc.collect()
    gc.freeze()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.serve())
    finally:
        server.close_metrics()
        server.close_listeners()
        loop.close()
    return 0
