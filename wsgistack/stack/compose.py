"""One wsgistack.toml read as a whole stack: its app servers, its proxy and its programs, as the supervisor's
programs (`wsgistack up`).

`[serve]` (or several `[serve.NAME]`) become app server programs, `[proxy]` the proxy program, which waits for
them (depends_on) and reaches them over private unix sockets in the stack's run folder, and `[programs.NAME]`
stay what `wsgistack supervise` makes of them. Every part is checked here, before anything starts, so a bad
key is one line naming the file and the line.

An app server listens on a socket of its generation (`web.3.sock`); the proxy connects to `web.sock`, a
symbolic link to the generation that serves. A deploy starts the next generation on its own socket and turns
the link when it is ready: new connections go to it at once, and nothing has to tell the proxy.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from wsgistack.config.errors import ConfigError
from wsgistack.config.loader import load_serve_settings, serve_table_names
from wsgistack.config.settings import ServeSettings
from wsgistack.config.toml_file import read_toml_file
from wsgistack.proxy.config import load_proxy_settings
from wsgistack.proxy.server import STOP_GRACE
from wsgistack.proxy.settings import ProxySettings
from wsgistack.supervisor.settings import LogSettings, ProgramSettings, ReadyCheck, SupervisorConfig
from wsgistack.supervisor.toml_config import STACK_APP as APP_SERVER
from wsgistack.supervisor.toml_config import STACK_PROXY as PROXY
from wsgistack.supervisor.toml_config import load_toml, stack_run_dir

_APP_PRIORITY = 100  # app servers first, then the proxy, then the programs (supervisord's default is 999)
_PROXY_PRIORITY = 200
_STOP_MARGIN = 5.0  # seconds beyond an app server's graceful_timeout before the supervisor kills it
_READY_TIMEOUT = 60.0
NGINX_FOLDER = "nginx"  # in the run folder: the config `wsgistack export nginx` writes, nginx's pid and temp files
_NGINX_SEARCH = "/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"  # where distributions put it, off a user's PATH


@dataclass(frozen=True)
class Generation:
    """What one generation of an app server runs: its number, and the interpreter and folder a deploy chose."""

    number: int = 1
    python: str | None = None  # another virtualenv's python (deploy --python); None: ours
    chdir: str | None = None  # the release folder (deploy --chdir); None: the file's setting


@dataclass(frozen=True)
class AppServer:
    """One app server of the stack: its program name, its [serve] table and its settings as checked."""

    name: str
    table: str | None  # the NAME of [serve.NAME]; None for a plain [serve]
    settings: ServeSettings


@dataclass(frozen=True)
class Stack:
    """A wsgistack.toml as `up` runs it."""

    path: str  # absolute
    run_dir: str
    servers: tuple[AppServer, ...]
    proxy: ProxySettings | None
    supervisor: SupervisorConfig  # the [supervisor] and [programs.NAME] tables alone

    def server(self, name: str) -> AppServer:
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(name)

    def socket(self, name: str, generation: int | None = None) -> str:
        """The unix socket the proxy connects to (None), or the one of one generation."""
        suffix = "sock" if generation is None else f"{generation}.sock"
        return os.path.join(self.run_dir, f"{name}.{suffix}")

    def metrics_socket(self, name: str, generation: int | None = None) -> str:
        """Where a program of the stack serves its own /metrics, with [metrics] listen."""
        suffix = "metrics.sock" if generation is None else f"{generation}.metrics.sock"
        return os.path.join(self.run_dir, f"{name}.{suffix}")

    def point_to(self, name: str, generation: int) -> None:
        """Turn `name`'s link to `generation`'s socket, atomically: the next connection goes there."""
        link = self.socket(name)
        temporary = f"{link}.turning"
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        os.symlink(os.path.basename(self.socket(name, generation)), temporary)
        os.replace(temporary, link)

    def app_program(self, server: AppServer, generation: Generation, fds: tuple[int, ...] = ()) -> ProgramSettings:
        """The supervisor's program for one generation of an app server."""
        settings = server.settings
        command = [generation.python or sys.executable, "-m", "wsgistack", "serve", "--config", self.path]
        if server.table is not None:
            command += ["--serve-table", server.table]
        if self.proxy is not None:
            socket = self.socket(server.name, generation.number)
            command += ["--bind", f"unix:{socket}"]
            ready = _health_check(settings, socket)
        elif fds:  # systemd's sockets (socket activation): the app server listens on them itself
            command += [arg for fd in fds for arg in ("--bind", f"fd://{fd}")]
            ready = _fd_check(fds[0], settings)
        else:
            ready = _listen_check(settings.bind[0], settings)
        if generation.chdir is not None:
            command += ["--chdir", generation.chdir]
        if self.supervisor.metrics_listen:  # the supervisor's /metrics asks this one (supervisor/metrics.py)
            command += ["--metrics-bind", f"unix:{self.metrics_socket(server.name, generation.number)}"]
        return ProgramSettings(
            name=server.name, program=server.name, group=server.name, command=tuple(command),
            directory=os.path.dirname(self.path), autorestart="true", startsecs=0.2, startretries=3,
            stopwaitsecs=settings.graceful_timeout + _STOP_MARGIN, killasgroup=True, stopasgroup=False,
            priority=_APP_PRIORITY, redirect_stderr=True, stdout=LogSettings("/dev/stdout"),
            stderr=LogSettings("/dev/stdout"), ready=ready,
            note=f"generation {generation.number}" if self.proxy is not None else "",
            pass_fds=fds if self.proxy is None else ())

    def proxy_program(self, fds: tuple[int, ...] = ()) -> ProgramSettings:
        """The supervisor's program for the proxy: `wsgistack proxy`, or nginx with `[proxy] engine = "nginx"`."""
        assert self.proxy is not None
        if self.proxy.engine == "nginx":
            return self._nginx_program(fds)
        command = [sys.executable, "-m", "wsgistack", "proxy", "--config", self.path]
        for server in self.servers:
            command += ["--stack-upstream", f"{server.name}=unix:{self.socket(server.name)}"]
        # systemd's sockets (socket activation) replace the file's listen addresses
        command += [arg for fd in fds for arg in ("--listen", f"fd://{fd}")]
        if self.supervisor.metrics_listen:  # the supervisor's /metrics asks the proxy too (supervisor/metrics.py)
            command += ["--metrics-bind", f"unix:{self.metrics_socket(PROXY)}"]
        ready = _fd_check(fds[0], None) if fds else _address_check(str(self.proxy.listen[0].address))
        return ProgramSettings(
            name=PROXY, program=PROXY, group=PROXY, command=tuple(command), directory=os.path.dirname(self.path),
            autorestart="true", startsecs=0.2, stopwaitsecs=STOP_GRACE + _STOP_MARGIN, killasgroup=True, priority=_PROXY_PRIORITY,
            redirect_stderr=True, stdout=LogSettings("/dev/stdout"), stderr=LogSettings("/dev/stdout"),
            depends_on=tuple(server.name for server in self.servers), ready=ready, pass_fds=fds)

    def _nginx_program(self, fds: tuple[int, ...]) -> ProgramSettings:
        """nginx in the foreground on the config `wsgistack export nginx` writes into the run folder, written
        afresh at each start of the program (so `ctl restart proxy` takes an edited [proxy]); SIGQUIT is nginx's
        graceful stop (requests in flight finish, within its worker_shutdown_timeout)."""
        assert self.proxy is not None
        if fds:
            raise ConfigError(f"{self.path}: [proxy] engine = \"nginx\" takes no sockets from systemd (socket "
                              f"activation): nginx binds its listen addresses itself")
        folder = os.path.join(self.run_dir, NGINX_FOLDER)
        export = [sys.executable, "-m", "wsgistack", "export", "nginx", "--config", self.path, "-o", folder]
        # the app servers' sockets are in a 0700 folder: as root, the workers must stay root to reach them
        directives = "daemon off; master_process on;" + (" user root root;" if os.geteuid() == 0 else "")
        nginx = [find_nginx(self.path), "-p", f"{folder}/", "-c", os.path.join(folder, "nginx.conf"),
                 "-g", directives]
        command = ("/bin/sh", "-c", f"{shlex.join(export)} >/dev/null && exec {shlex.join(nginx)}")
        return ProgramSettings(
            name=PROXY, program=PROXY, group=PROXY, command=command, directory=os.path.dirname(self.path),
            autorestart="true", startsecs=0.2, stopsignal=signal.SIGQUIT, stopwaitsecs=STOP_GRACE + _STOP_MARGIN,
            killasgroup=True, priority=_PROXY_PRIORITY, redirect_stderr=True, stdout=LogSettings("/dev/stdout"),
            stderr=LogSettings("/dev/stdout"), depends_on=tuple(server.name for server in self.servers),
            ready=_address_check(str(self.proxy.listen[0].address)))

    def supervisor_config(self, generations: Mapping[str, Generation] | None = None,
                          fds: tuple[int, ...] = ()) -> SupervisorConfig:
        """Everything `up` runs, generation by generation as given (the first one by default); `fds` are the
        sockets systemd passed (the proxy's, or without one the app server's)."""
        generations = generations or {}
        parts = [self.app_program(server, generations.get(server.name, Generation()), fds if index == 0 else ())
                 for index, server in enumerate(self.servers)]
        if self.proxy is not None:
            parts.append(self.proxy_program(fds))
        groups = {part.group: (part.name,) for part in parts}
        groups.update(self.supervisor.groups)
        return dataclasses.replace(self.supervisor, programs=(*parts, *self.supervisor.programs), groups=groups)


def load_stack(path: str, environ: Mapping[str, str] | None = None) -> Stack:
    """Read and check a wsgistack.toml as a stack; ConfigError (one line: file, line, key) when it is wrong."""
    path = os.path.abspath(path)
    environ = os.environ if environ is None else environ
    document = read_toml_file(path).document
    table = document.get("serve")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no [serve] table: `wsgistack up` needs an app to serve "
                          f"([serve] app = \"module:app\")")
    names = serve_table_names(table)
    supervisor = load_toml(path, environ)
    run_dir = stack_run_dir(path)
    taken = {program.program for program in supervisor.programs}
    servers = []
    for name in names or [None]:
        program = name or APP_SERVER
        if program in taken or program == PROXY:
            raise ConfigError(f"{path}: a program is named {program!r}, as an app server of [serve"
                              f"{'.' + name if name else ''}]: rename one of them")
        cli: dict[str, object] = {"config": path}
        if name is not None:
            cli["serve_table"] = name
        servers.append(AppServer(program, name, load_serve_settings(cli, environ)))
    proxy = None
    if "proxy" in document:
        if PROXY in taken:
            raise ConfigError(f"{path}: a program is named {PROXY!r}, as the [proxy]: rename it")
        upstreams = [f"{server.name}=unix:{os.path.join(run_dir, server.name)}.sock" for server in servers]
        proxy = load_proxy_settings(path, {"stack_upstream": upstreams}, environ)
        if proxy.engine == "wsgistack":
            _check_http_upstreams(path, servers)
        elif proxy.metrics_bind:  # nginx has no Prometheus endpoint: asked for, it would be missing unseen
            where = read_toml_file(path).where("proxy", "metrics_bind")
            raise ConfigError(f"{where}: proxy.metrics_bind: nginx (engine = \"nginx\") serves no Prometheus "
                              f"metrics; remove it, or set engine = \"wsgistack\"")
    return Stack(path=path, run_dir=run_dir, servers=tuple(servers), proxy=proxy, supervisor=supervisor)


def find_nginx(path: str) -> str:
    """The nginx binary: on PATH, or where distributions install it; a ConfigError naming the file if none."""
    found = shutil.which("nginx") or shutil.which("nginx", path=_NGINX_SEARCH)
    if found is None:
        raise ConfigError(f"{path}: [proxy] engine = \"nginx\": no nginx on PATH nor in {_NGINX_SEARCH} "
                          f"(install it, e.g. apt-get install nginx-light, or set engine = \"wsgistack\")")
    return found


def _check_http_upstreams(path: str, servers: list[AppServer]) -> None:
    """wsgistack's own proxy speaks HTTP to the app servers: one speaking uwsgi or FastCGI needs nginx in front."""
    for server in servers:
        protocol = server.settings.protocol
        if protocol != "http":
            table = ("serve", server.table) if server.table else "serve"
            where = read_toml_file(path).where(table, "protocol")
            name = f"serve.{server.table}" if server.table else "serve"
            raise ConfigError(f"{where}: {name}.protocol = {protocol!r}: the wsgistack proxy speaks HTTP to app "
                              f"servers; set [proxy] engine = \"nginx\" for {protocol} (or protocol = \"http\")")


def _health_check(settings: ServeSettings, socket: str) -> ReadyCheck:
    """Ready when the health endpoint says so, asked in the app server's protocol (http, uwsgi, fastcgi); a
    plain connect when it is turned off."""
    health = getattr(settings, "health_path", "")
    if health:
        return ReadyCheck(settings.protocol, f"http://unix:{socket}:{health}", _READY_TIMEOUT)
    return ReadyCheck("unix", socket, _READY_TIMEOUT)


def _listen_check(bind: str, settings: ServeSettings) -> ReadyCheck:
    """Readiness of an app server listening publicly itself (no [proxy])."""
    check = _address_check(bind)
    health = getattr(settings, "health_path", "")
    if health and check.kind == "tcp":
        return ReadyCheck(settings.protocol, f"http://{check.target}{health}", _READY_TIMEOUT)
    if health and check.kind == "unix":
        return ReadyCheck(settings.protocol, f"http://unix:{check.target}:{health}", _READY_TIMEOUT)
    return check


def _fd_check(fd: int, settings: ServeSettings | None) -> ReadyCheck:
    """Readiness on a socket systemd holds: a connect to its address (asked of the descriptor now)."""
    import socket

    with socket.socket(fileno=os.dup(fd)) as sock:
        local = sock.getsockname()
    if isinstance(local, str):
        text = f"unix:{local}"
    else:
        text = f"[{local[0]}]:{local[1]}" if ":" in local[0] else f"{local[0]}:{local[1]}"
    return _listen_check(text, settings) if settings is not None else _address_check(text)


def _address_check(text: str) -> ReadyCheck:
    """A connect check of a listening address: HOST:PORT (any address is asked on loopback) or unix:PATH."""
    from wsgistack.config.addresses import parse_address

    address = parse_address(text)
    if address.kind == "unix":
        return ReadyCheck("unix", address.path, _READY_TIMEOUT)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address.host, address.host)
    target = f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"
    return ReadyCheck("tcp", target, _READY_TIMEOUT)
