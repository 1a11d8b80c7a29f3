"""`wsgistack supervise`: load a config, run its programs, serve the control socket until told to stop.

Detached or in the foreground as the file says (`nodaemon`, see `detaches`), unless --daemon or -n says
otherwise. SIGTERM and SIGINT stop every program in reverse priority order, then the supervisor exits 0,
removing its socket and pid files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.observe.errorlog import reopen_error_log
from wsgistack.observe.metrics.endpoint import listen as listen_for_metrics
from wsgistack.observe.metrics.endpoint import serve_asyncio as serve_metrics
from wsgistack.observe.metrics.endpoint import where
from wsgistack.process import daemonize, notify
from wsgistack.supervisor import leftovers
from wsgistack.supervisor.control import ControlServer
from wsgistack.supervisor.dashboard import DashboardServer, build_dashboard
from wsgistack.supervisor.metrics import StackMetrics
from wsgistack.supervisor.own_log import setup_supervisor_log
from wsgistack.supervisor.runtime import Supervisor
from wsgistack.supervisor.settings import SupervisorConfig
from wsgistack.supervisor.states import ProcessState
from wsgistack.supervisor.watchdog import Watchdog

log = logging.getLogger("wsgistack.supervisor")


async def _update(supervisor: Supervisor) -> None:
    """SIGHUP: re-read the config and apply the difference, as `ctl update` does."""
    try:
        new = supervisor.reread()
    except ConfigError as exc:
        log.error("SIGHUP: the config has an error, nothing changed: %s", exc)
        return
    outcome = await supervisor.update(new)
    log.info("SIGHUP: %s", ", ".join(f"{group} {what}" for group, what in outcome.items()) or "no changes")


def _reopen_logs(supervisor: Supervisor) -> None:
    """SIGUSR2: reopen the supervisor's log and every program's log files (after logrotate)."""
    reopen_error_log()
    for process in supervisor.processes.values():
        process.stdout.reopen()
        if process.stderr is not process.stdout:
            process.stderr.reopen()
    log.info("SIGUSR2: log files reopened")


async def _announce_ready(supervisor: Supervisor) -> None:
    """systemd's Type=notify: READY=1 once every autostart program got its start (none STARTING, none waiting
    for what it depends on), with their states as STATUS=."""
    while any(p.state == ProcessState.STARTING for p in supervisor.processes.values()) or supervisor.waiting:
        await asyncio.sleep(0.05)
    states: dict[str, int] = {}
    for process in supervisor.processes.values():
        states[process.state.name] = states.get(process.state.name, 0) + 1
    notify("READY=1", status=", ".join(f"{count} {state}" for state, count in sorted(states.items())))


def detaches(config: SupervisorConfig, daemon: bool | None) -> bool:
    """Whether to detach: --daemon (True) and -n (False) decide; else the file's `nodaemon`, which means the
    same in both formats. Only its default differs: supervisord.conf detaches unless it says nodaemon=true
    (supervisord's default, so a file moved from supervisord behaves as it did), wsgistack.toml stays in the
    foreground (systemd, containers) unless its [supervisor] says nodaemon = false. The readers set it."""
    return daemon if daemon is not None else not config.supervisor.nodaemon


def supervise(config: SupervisorConfig, daemon: bool | None = None,
              prepare: Callable[[Supervisor, ControlServer | None], None] | None = None,
              metrics_text: Callable[[], Awaitable[str]] | None = None) -> int:
    """Run until stopped; the process exit code. `daemon`: --daemon (True), -n (False), or None (the file).
    `prepare` is called once the supervisor and its control server exist, before anything starts (`up`).
    `metrics_text` answers the stack's Prometheus text, for the dashboard's charts."""
    settings = config.supervisor
    if config.control.inet_port is not None and not config.control.username:
        raise ConfigError(f"{config.source}: [inet_http_server] needs username and password: anyone who can "
                          f"reach the port could otherwise stop every program")
    if detaches(config, daemon):
        daemonize()
    setup_supervisor_log(settings)
    os.umask(settings.umask)
    if settings.directory:
        os.chdir(settings.directory)
    # forked now, while we have no thread and no loop; with the subreaper flag, what a program leaves when
    # it exits is reparented to us (and reaped), and what it leaves when we are killed, the watchdog kills
    mark = leftovers.new_mark()
    watchdog = Watchdog(mark) if os.path.isdir("/proc") else None
    leftovers.become_subreaper()
    # asyncio's own loop, not uvloop: uvloop keeps SIGCHLD for itself, and the supervisor must reap every
    # child (orphans too, as PID 1); its work is a few events a second, where uvloop's speed buys nothing
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    supervisor = Supervisor(config, loop, watchdog=watchdog, mark=mark)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_update(supervisor)))
    loop.add_signal_handler(signal.SIGUSR2, lambda: _reopen_logs(supervisor))
    control = None
    settings_control = config.control
    if settings_control.unix_path or settings_control.inet_port is not None:
        credentials = (settings_control.username, settings_control.password or "") \
            if settings_control.username else None
        inet = (settings_control.inet_host or "127.0.0.1", settings_control.inet_port) \
            if settings_control.inet_port is not None else None
        control = ControlServer(supervisor, settings_control.unix_path, settings_control.unix_mode, stopping.set,
                                credentials, owner=settings_control.unix_owner, inet=inet)
    stack_metrics = StackMetrics(supervisor)
    metrics_text = metrics_text or stack_metrics.text  # the dashboard's charts, with or without [metrics]
    metrics_sock = None
    if config.metrics_listen:
        try:
            metrics_sock = listen_for_metrics(parse_address(config.metrics_listen))
        except OSError as exc:
            raise ConfigError(f"{config.source}: [metrics] listen {config.metrics_listen}: "
                              f"{exc.strerror or exc}") from None
    dashboard = None
    if config.dashboard.listen:
        # the dashboard acts through the control server's commands, even when no control socket is configured
        commands = control or ControlServer(supervisor, None, 0o600, stopping.set)
        dashboard = DashboardServer(config.dashboard, build_dashboard(config.dashboard, commands, metrics_text),
                                    config.source)
    if prepare is not None:
        prepare(supervisor, control)
    if settings.pidfile:
        with open(settings.pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")

    async def main() -> None:
        supervisor.install_reaper()
        metrics_server = None
        if metrics_sock is not None:
            metrics_server = await serve_metrics(metrics_sock, stack_metrics.render)
            log.info("metrics at %s", where(metrics_sock))
        if dashboard is not None:
            await dashboard.start()  # before the control socket: a port in use stops us with nothing started
        if control is not None:
            await control.start()
        log.info("supervisor %s started with %s process(es)%s", os.getpid(), len(supervisor.processes),
                 f", control socket {config.control.unix_path}" if control else "")
        supervisor.start_autostart()
        announcing = loop.create_task(_announce_ready(supervisor)) if os.environ.get("NOTIFY_SOCKET") else None
        await stopping.wait()
        if announcing is not None:
            announcing.cancel()
        notify("STOPPING=1", status="stopping every program")
        if dashboard is not None:
            await dashboard.close()  # first: nobody starts anything through it while everything stops
        log.info("stopping every program")
        await supervisor.stop_all()
        supervisor.kill_leftovers()
        if watchdog is not None:
            watchdog.dismiss()
        if control is not None:
            await control.close()
        if metrics_server is not None:
            metrics_server.close()
            _unlink_unix(config.metrics_listen or "")

    try:
        loop.run_until_complete(main())
    finally:
        supervisor.remove_reaper()
        supervisor.close()
        loop.close()
        if settings.pidfile:
            try:
                os.unlink(settings.pidfile)
            except OSError:
                pass
    log.info("supervisor stopped")
    return 0


def _unlink_unix(address: str) -> None:
    """Remove a unix endpoint's socket file as we leave."""
    if address.startswith("unix:"):
        try:
            os.unlink(parse_address(address).path)
        except OSError:
            pass
