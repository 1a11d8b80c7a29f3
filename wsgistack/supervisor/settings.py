"""Typed settings of the supervisor: one set of dataclasses behind both config formats.

supervisord's INI (`supervisor/ini.py`) and our TOML tables (`supervisor/toml_config.py`) both produce a
SupervisorConfig; nothing past the readers knows which format a setting came from.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from wsgistack.observe.dashboard.settings import DashboardSettings


@dataclass(frozen=True)
class LogSettings:
    """Where one stream of a program goes: a file (rotated), NONE, AUTO or /dev/stdout."""

    path: str | None  # None for NONE (discard); "AUTO" resolved by the reader to a file in childlogdir
    maxbytes: int = 50 * 1024 * 1024  # 0: never rotate
    backups: int = 10


@dataclass(frozen=True)
class ReadyCheck:
    """What must succeed before a program counts as RUNNING (beyond supervisord: startsecs alone)."""

    kind: str  # "tcp", "http", "unix" or "command"; "uwsgi" or "fastcgi": an http check in that protocol
    target: str  # host:port, URL, socket path or a command line
    timeout: float = 30.0


@dataclass(frozen=True)
class ProgramSettings:
    """One process to run (a program with numprocs=3 gives three of these, process_name expanded)."""

    name: str  # the process name (process_name expanded), unique within its group
    program: str  # the [program:x] section name
    group: str  # the group it belongs to (the program's own name unless a [group:x] lists it)
    command: tuple[str, ...]  # argv; a shell only when the config asks for one ("sh -c ...")
    directory: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    umask: int | None = None
    autostart: bool = True
    autorestart: str = "unexpected"  # "true", "false" or "unexpected"
    exitcodes: tuple[int, ...] = (0,)
    startsecs: float = 1.0
    startretries: int = 3
    stopsignal: int = signal.SIGTERM
    stopwaitsecs: float = 10.0
    stopasgroup: bool = False
    killasgroup: bool = False
    priority: int = 999
    redirect_stderr: bool = False
    stdout: LogSettings = field(default_factory=lambda: LogSettings("AUTO"))
    stderr: LogSettings = field(default_factory=lambda: LogSettings("AUTO"))
    # beyond supervisord
    depends_on: tuple[str, ...] = ()
    ready: ReadyCheck | None = None
    backoff_max: float = 30.0  # cap of the exponential back-off between restarts, seconds
    max_restarts: int = 0  # restarts allowed per restart_window before FATAL ("flapping"); 0: no limit
    restart_window: float = 60.0
    pass_fds: tuple[int, ...] = ()  # descriptors the program inherits (systemd's sockets, under `up`)
    note: str = ""  # shown after a running process's pid and uptime: what a layer above says of it ("generation 3")


@dataclass(frozen=True)
class ControlSettings:
    """The supervisor's control endpoints: a unix socket ([unix_http_server]) and optionally TCP."""

    unix_path: str | None = None
    unix_mode: int = 0o600
    unix_owner: str | None = None
    inet_host: str | None = None
    inet_port: int | None = None
    username: str | None = None
    password: str | None = None
    # what the client side of the same file ([supervisorctl]) says to send; `wsgistack ctl -c` uses them
    ctl_username: str | None = None
    ctl_password: str | None = None


@dataclass(frozen=True)
class SupervisorSettings:
    """The daemon itself ([supervisord] / [supervisor])."""

    logfile: str | None = None
    logfile_maxbytes: int = 50 * 1024 * 1024
    logfile_backups: int = 10
    loglevel: str = "info"
    pidfile: str | None = None
    nodaemon: bool = True  # wsgistack.toml: the foreground unless it says false; supervisord.conf: false unless said
    childlogdir: str = "/tmp"
    directory: str | None = None
    umask: int = 0o022
    identifier: str = "supervisor"


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything a config file says, after expansion: processes in start order."""

    source: str  # the file it came from
    supervisor: SupervisorSettings
    control: ControlSettings
    programs: tuple[ProgramSettings, ...]
    groups: dict[str, tuple[str, ...]]  # group name -> process names, in priority order
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)  # wsgistack.toml's [dashboard]
    metrics_listen: str | None = None  # wsgistack.toml's [metrics] listen: the stack's /metrics

    def find(self, name: str) -> list[ProgramSettings]:
        """Processes named `name`, `group:name` or `group:*` (supervisorctl's forms)."""
        if ":" in name:
            group, _, process = name.partition(":")
            return [p for p in self.programs if p.group == group and process in ("*", p.name)]
        return [p for p in self.programs if p.name == name or (p.group == name and p.group != p.name)]
