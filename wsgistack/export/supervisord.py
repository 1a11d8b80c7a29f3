"""`wsgistack export supervisord`: the stack as one supervisord.conf that the real supervisord runs unchanged
(`wsgistack supervise` reads it too).

Everything the file makes lives beside it (%(here)s): the app servers' unix sockets, the logs, the pid file
and the control socket that supervisorctl finds through [supervisorctl].
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys

from wsgistack.export.commands import (
    PROXY_STOP_SECONDS,
    check_exportable,
    proxy_command,
    serve_command,
    server_stop_seconds,
)
from wsgistack.stack.compose import AppServer, Stack
from wsgistack.supervisor.settings import LogSettings, ProgramSettings

FILE = "supervisord.conf"
PYTHON = "python"  # when the interpreter running the export is unknown; else its absolute path, as `up` runs them
APP_PRIORITY = 100  # app servers start first and stop last, the proxy next, then the programs
PROXY_PRIORITY = 200


def render(stack: Stack) -> dict[str, str]:
    """supervisord.conf for `stack`."""
    check_exportable(stack, "supervisord")
    python = sys.executable or PYTHON
    sockets = {server.name: f"%(here)s/{server.name}.sock" for server in stack.servers} if stack.proxy else {}
    sections = [_head(stack), _daemon()]
    for server in stack.servers:
        sections.append(_app_server(stack, server, python, sockets.get(server.name)))
    if stack.proxy is not None:
        sections.append(_proxy(stack, python, sockets))
    priorities = _priorities(stack)
    for program in stack.supervisor.programs:
        sections.append(_program(program, priorities[program.name]))
    sections += _groups(stack)
    return {FILE: "\n".join(sections)}


def _head(stack: Stack) -> str:
    return (f"; supervisord.conf for the stack of {_escape(stack.path)}, written by `wsgistack export supervisord`.\n"
            f"; Run: supervisord -c supervisord.conf (in the foreground); then: supervisorctl -c supervisord.conf "
            f"status.\n"
            f"; Sockets, logs and the pid file go beside this file (%(here)s).\n")


def _daemon() -> str:
    return ("[supervisord]\n"
            "nodaemon=true                   ; in the foreground: systemd, a container or a terminal runs it\n"
            "logfile=%(here)s/supervisord.log\n"
            "pidfile=%(here)s/supervisord.pid\n"
            "childlogdir=%(here)s\n"
            "\n"
            "[unix_http_server]\n"
            "file=%(here)s/supervisor.sock   ; supervisorctl's way in\n"
            "chmod=0700\n"
            "\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            "\n"
            "[supervisorctl]\n"
            "serverurl=unix://%(here)s/supervisor.sock\n")


def _app_server(stack: Stack, server: AppServer, python: str, socket: str | None) -> str:
    """An app server: behind the proxy on a unix socket beside this file, else on the file's own bind."""
    command = _command(serve_command(stack, server, python, stack.path))
    if socket is not None:
        command += f" --bind unix:{socket}"  # unescaped: supervisord expands its %(here)s
    stop = server_stop_seconds(server)
    where = f"[serve.{server.table}]" if server.table else "[serve]"
    return (f"; the app server of {where}: TERM lets it answer what it holds within graceful_timeout "
            f"({server.settings.graceful_timeout:g} s)\n"
            f"[program:{server.name}]\n"
            f"command={command}\n"
            f"directory={_escape(_folder(stack))}\n"
            f"priority={APP_PRIORITY}\n"
            f"autorestart=true\n"
            f"startsecs=1\n"
            f"stopsignal=TERM\n"
            f"stopwaitsecs={stop}\n"
            f"stopasgroup=false               ; the master stops its own workers\n"
            f"killasgroup=true                ; SIGKILL past stopwaitsecs reaches them too\n"
            f"redirect_stderr=true\n"
            f"stdout_logfile=%(here)s/{server.name}.log\n")


def _proxy(stack: Stack, python: str, sockets: dict[str, str]) -> str:
    command = _command(proxy_command(python, stack.path, {}))
    command += "".join(f" --stack-upstream {name}=unix:{path}" for name, path in sockets.items())
    return ("; the proxy: supervisord has no depends_on, so it starts after the app servers by priority only; until\n"
            "; their sockets answer it holds requests (connect_retry_timeout, 5 s by default)\n"
            "[program:proxy]\n"
            f"command={command}\n"
            f"directory={_escape(_folder(stack))}\n"
            f"priority={PROXY_PRIORITY}\n"
            "autorestart=true\n"
            "startsecs=1\n"
            "stopsignal=TERM\n"
            f"stopwaitsecs={PROXY_STOP_SECONDS}\n"
            "killasgroup=true\n"
            "redirect_stderr=true\n"
            "stdout_logfile=%(here)s/proxy.log\n")


def _program(program: ProgramSettings, priority: int) -> str:
    """A [programs.NAME] process, as supervisord writes it."""
    lines = []
    if program.depends_on:
        lines.append(f"; depends_on {', '.join(program.depends_on)}: supervisord has none, so its priority is "
                     f"above theirs (it starts after them, and stops before)")
    if program.ready is not None:
        lines.append(f"; ready ({program.ready.kind} {_escape(program.ready.target)}): supervisord has no ready "
                     f"check; RUNNING means up for startsecs")
    lines += [f"[program:{program.name}]",
              f"command={_command(list(program.command))}"]
    if program.directory:
        lines.append(f"directory={_escape(program.directory)}")
    if program.environment:
        lines.append("environment=" + ",".join(f"{key}={_env_value(value)}" for key, value in program.environment))
    if program.user:
        lines.append(f"user={_escape(program.user)}")
    if program.umask is not None:
        lines.append(f"umask={program.umask:03o}")
    lines += [f"priority={priority}",
              f"autostart={_bool(program.autostart)}",
              f"autorestart={program.autorestart}",
              f"exitcodes={','.join(map(str, program.exitcodes))}",
              f"startsecs={math.ceil(program.startsecs)}",
              f"startretries={program.startretries}",
              f"stopsignal={signal.Signals(program.stopsignal).name.removeprefix('SIG')}",
              f"stopwaitsecs={math.ceil(program.stopwaitsecs)}",
              f"stopasgroup={_bool(program.stopasgroup)}",
              f"killasgroup={_bool(program.killasgroup)}",
              f"redirect_stderr={_bool(program.redirect_stderr)}"]
    lines += _log("stdout", program.stdout)
    if not program.redirect_stderr:
        lines += _log("stderr", program.stderr)
    return "\n".join(lines) + "\n"


def _log(stream: str, log: LogSettings) -> list[str]:
    if log.path is None:
        return [f"{stream}_logfile=NONE"]
    if log.path.startswith("/dev/") or log.path.startswith("/proc/"):
        # a pipe or terminal cannot be rotated: supervisord needs maxbytes 0 there
        return [f"{stream}_logfile={_escape(log.path)}", f"{stream}_logfile_maxbytes=0"]
    return [f"{stream}_logfile={_escape(log.path)}", f"{stream}_logfile_maxbytes={log.maxbytes}",
            f"{stream}_logfile_backups={log.backups}"]


def _groups(stack: Stack) -> list[str]:
    """[group:x] for the groups of [programs] (numprocs copies, or groups named in the file)."""
    sections = []
    servers = {server.name for server in stack.servers} | {"proxy"}
    for group, members in stack.supervisor.groups.items():
        if group in servers or members == (group,):
            continue
        sections.append(f"[group:{group}]\nprograms={','.join(members)}\n")
    return sections


def _priorities(stack: Stack) -> dict[str, int]:
    """Each program's priority, raised above those of what it depends_on (supervisord's only start order)."""
    known = {server.name: APP_PRIORITY for server in stack.servers}
    known["proxy"] = PROXY_PRIORITY
    programs = {program.name: program for program in stack.supervisor.programs}
    groups = {program.group: program.name for program in stack.supervisor.programs}

    def priority(name: str, seen: tuple[str, ...] = ()) -> int:
        name = groups.get(name, name) if name not in known and name not in programs else name
        if name in known:
            return known[name]
        program = programs.get(name)
        if program is None or name in seen:  # unknown or a cycle: the supervisor's check speaks of those
            return 0
        value = max([program.priority, *(priority(dep, (*seen, name)) + 1 for dep in program.depends_on)])
        known[name] = value
        return value

    return {name: priority(name) for name in programs}


def _command(argv: list[str]) -> str:
    """A command line as supervisord splits it (shlex), its % doubled (supervisord expands %(name)s)."""
    return _escape(shlex.join(argv))


def _env_value(value: str) -> str:
    return '"' + _escape(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _folder(stack: Stack) -> str:
    return os.path.dirname(stack.path)
