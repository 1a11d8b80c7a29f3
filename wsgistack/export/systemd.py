"""`wsgistack export systemd`: the stack as systemd units, one service per part, grouped by a target.

Each app server and the proxy is a Type=notify service (`serve` and `proxy` say READY=1 once they serve, and
STOPPING=1) whose listening sockets systemd holds in a .socket unit (socket activation: they take what
LISTEN_FDS passes instead of their bind or listen). Behind the proxy, each app server's socket is a unix socket
in /run/STACK/, which the proxy connects to: a restart of an app server costs no refused connection, the
kernel queues them on systemd's socket. A [programs.NAME] is a plain service, ordered after what it depends_on.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import sys

from wsgistack.config.addresses import parse_address
from wsgistack.export.commands import (
    PROXY_STOP_SECONDS,
    check_exportable,
    proxy_command,
    serve_command,
    server_stop_seconds,
    stack_name,
)
from wsgistack.export.commands import name_of as _name_of
from wsgistack.stack.compose import AppServer, Stack
from wsgistack.supervisor.settings import ProgramSettings

KILL = "/bin/kill"  # ExecReload's; systemd's own documentation writes it so


def render(stack: Stack) -> dict[str, str]:
    """The units of `stack`: NAME.socket and NAME.service per part, then STACK.target."""
    check_exportable(stack, "systemd")
    prefix = stack_name(stack)
    python = sys.executable
    folder = os.path.dirname(stack.path)
    files: dict[str, str] = {f"{prefix}.target": ""}  # first: it says how to install them
    parts: list[str] = []  # the target's units
    sockets = {server.name: f"/run/{prefix}/{server.name}.sock" for server in stack.servers} if stack.proxy else {}
    for server in stack.servers:
        unit = f"{prefix}-{_name_of(server.name)}"
        listens = [sockets[server.name]] if stack.proxy else _streams(server.settings.bind)
        if listens:
            files[f"{unit}.socket"] = _socket(prefix, f"app server {server.name}", listens, server.settings.backlog)
            parts.append(f"{unit}.socket")
        files[f"{unit}.service"] = _app_server(stack, server, prefix, python, folder, bool(listens))
        parts.append(f"{unit}.service")
    if stack.proxy is not None:
        listens = _streams(str(listen.address) for listen in stack.proxy.listen)
        files[f"{prefix}-proxy.socket"] = _socket(prefix, "proxy", listens, 2048)
        files[f"{prefix}-proxy.service"] = _proxy(stack, prefix, python, folder, sockets)
        parts += [f"{prefix}-proxy.socket", f"{prefix}-proxy.service"]
    units = {program.name: f"{prefix}-{_name_of(program.name)}.service" for program in stack.supervisor.programs}
    units.update({server.name: f"{prefix}-{_name_of(server.name)}.service" for server in stack.servers})
    units["proxy"] = f"{prefix}-proxy.service"
    for program in stack.supervisor.programs:
        files[units[program.name]] = _program(program, prefix, units, stack)
        if program.autostart:
            parts.append(units[program.name])
    files[f"{prefix}.target"] = _target(stack, prefix, parts)
    return files


def _head(what: str, stack: Stack) -> str:
    return f"# {what}: from {stack.path} by `wsgistack export systemd`\n"


def _socket(prefix: str, what: str, listens: list[str], backlog: int) -> str:
    lines = [f"# the listening sockets of the {what}: systemd holds them across its restarts",
             "[Unit]", f"Description={_text(prefix)}: {_text(what)} sockets", f"PartOf={prefix}.target", "",
             "[Socket]"]
    lines += [f"ListenStream={_text(listen)}" for listen in listens]
    lines += [f"Backlog={backlog}", "", "[Install]", f"WantedBy=sockets.target {prefix}.target"]
    return "\n".join(lines) + "\n"


def _app_server(stack: Stack, server: AppServer, prefix: str, python: str, folder: str, activated: bool) -> str:
    """An app server: its workers import the app, then READY=1; TERM drains it within graceful_timeout."""
    unit = f"{prefix}-{_name_of(server.name)}"
    where = f"[serve.{server.table}]" if server.table else "[serve]"
    lines = [_head(f"the app server of {where}", stack).rstrip("\n"), "[Unit]",
             f"Description={_text(prefix)}: app server {_text(server.name)}", "After=network.target",
             f"PartOf={prefix}.target"]
    if activated:
        lines += [f"Requires={unit}.socket", f"After={unit}.socket"]
    lines += ["", "[Service]", "Type=notify", f"WorkingDirectory={_text(folder)}",
              f"ExecStart={_command(serve_command(stack, server, python, stack.path))}",
              "# HUP: a new generation of workers, the old one retired once it serves (no request fails)",
              f"ExecReload={KILL} -HUP $MAINPID",
              "# TERM to the master alone, which drains its workers; SIGKILL to all past TimeoutStopSec",
              "KillMode=mixed", "KillSignal=SIGTERM", f"TimeoutStopSec={server_stop_seconds(server)}",
              "Restart=on-failure", "RestartSec=1", "", "[Install]", f"WantedBy={prefix}.target"]
    return "\n".join(lines) + "\n"


def _proxy(stack: Stack, prefix: str, python: str, folder: str, sockets: dict[str, str]) -> str:
    apps = [f"{prefix}-{_name_of(server.name)}" for server in stack.servers]
    lines = [_head("the proxy", stack).rstrip("\n"), "[Unit]", f"Description={_text(prefix)}: proxy",
             f"Requires={prefix}-proxy.socket", f"After={prefix}-proxy.socket network.target",
             "# the app servers' sockets are what it needs; their services start with it, but restarting one",
             "# must not restart the proxy (Requires= on a service would)",
             f"Requires={' '.join(f'{app}.socket' for app in apps)}",
             f"Wants={' '.join(f'{app}.service' for app in apps)}",
             f"After={' '.join(f'{app}.socket {app}.service' for app in apps)}",
             f"PartOf={prefix}.target", "",
             "[Service]", "Type=notify", f"WorkingDirectory={_text(folder)}",
             f"ExecStart={_command(proxy_command(python, stack.path, sockets))}",
             "# HUP: the file read again and swapped in without failing a request",
             f"ExecReload={KILL} -HUP $MAINPID",
             "KillMode=mixed", "KillSignal=SIGTERM", f"TimeoutStopSec={PROXY_STOP_SECONDS}",
             "Restart=on-failure", "RestartSec=1", "", "[Install]", f"WantedBy={prefix}.target"]
    return "\n".join(lines) + "\n"


_RESTART = {"true": "always", "unexpected": "on-failure", "false": "no"}


def _program(program: ProgramSettings, prefix: str, units: dict[str, str], stack: Stack) -> str:
    """A [programs.NAME] process: its output goes to the journal (its log files are supervisord's idea)."""
    command = list(program.command)
    found = shutil.which(command[0], path=os.environ.get("PATH")) if "/" not in command[0] else None
    notes = []
    if found is not None:
        notes.append(f"# {command[0]} is {found} here (systemd needs the path)")
        command[0] = found
    elif not os.path.isabs(command[0]) and program.directory:
        command[0] = os.path.join(program.directory, command[0])
    after = [units.get(name, f"{prefix}-{_name_of(name)}.service") for name in program.depends_on]
    lines = [_head(f"the program [programs.{program.program}]", stack).rstrip("\n"), "[Unit]",
             f"Description={_text(prefix)}: {_text(program.name)}", "After=network.target",
             f"PartOf={prefix}.target"]
    if after:
        lines += [f"Requires={' '.join(after)}", f"After={' '.join(after)}"]
    lines += ["", "[Service]", "Type=exec", *notes, f"ExecStart={_command(command)}"]
    if program.directory:
        lines.append(f"WorkingDirectory={_text(program.directory)}")
    lines += [f"Environment={_env(key, value)}" for key, value in program.environment]
    if program.user:
        lines.append(f"User={_text(program.user)}")
    if program.umask is not None:
        lines.append(f"UMask={program.umask:04o}")
    lines.append(f"Restart={_RESTART.get(program.autorestart, 'on-failure')}")
    if program.autorestart == "unexpected" and set(program.exitcodes) - {0}:
        lines.append(f"SuccessExitStatus={' '.join(str(code) for code in program.exitcodes if code)}")
    lines += [f"KillSignal={signal.Signals(program.stopsignal).name}",
              # stopasgroup: the stop signal goes to every process; else to the main one, SIGKILL to the rest
              f"KillMode={'control-group' if program.stopasgroup else 'mixed'}",
              f"TimeoutStopSec={math.ceil(program.stopwaitsecs)}", "RestartSec=1", "",
              "[Install]", f"WantedBy={prefix}.target"]
    return "\n".join(lines) + "\n"


def _target(stack: Stack, prefix: str, parts: list[str]) -> str:
    return (f"{_head('the whole stack', stack)}"
            f"# Install: copy these units to /etc/systemd/system, then\n"
            f"#   systemctl daemon-reload && systemctl enable --now {prefix}.target\n"
            f"# (the working directory and interpreter are this machine's: edit them for another one)\n"
            "[Unit]\n"
            f"Description={_text(prefix)}: the wsgistack stack\n"
            f"Wants={' '.join(parts)}\n"
            "\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n")


def _streams(binds) -> list[str]:
    """ListenStream= values of bind addresses: HOST:PORT or a socket path (fd:// ones are someone else's)."""
    streams = []
    for bind in binds:
        address = parse_address(bind)
        if address.kind == "unix":
            streams.append(address.path)
        elif address.kind == "tcp":
            host = address.host or "0.0.0.0"
            streams.append(f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}")
    return streams


def _command(argv: list[str]) -> str:
    return " ".join(_quote(word) for word in argv)


def _quote(word: str) -> str:
    """One word of a command line as systemd reads it: % and $ doubled (specifiers, variables), quoted when
    needed."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return _quoted(word)


def _env(key: str, value: str) -> str:
    """An Environment= assignment: specifiers expand there, variables do not."""
    return _quoted(f"{key}={value}".replace("%", "%%"))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(text: str) -> str:
    return text.replace("%", "%%")
