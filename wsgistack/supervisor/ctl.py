"""`wsgistack ctl`: the control client. Plain output in supervisorctl's layout, or --json for scripts."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.config.toml_file import find_config_file
from wsgistack.supervisor.status import format_status

EXIT_OK = 0
EXIT_FAILED = 1  # the supervisor refused or could not do it
EXIT_NOT_RUNNING = 3  # status: some process is not running (as supervisorctl and LSB say)
EXIT_UNREACHABLE = 4


# the file ctl reads without -c or -s: $WSGISTACK_CONFIG, then the first of these that exists (wsgistack's own
# file first, then where supervisorctl looks for supervisord.conf, in its order)
CONFIG_FILES = ("wsgistack.toml", "supervisord.conf", "etc/supervisord.conf", "/etc/supervisord.conf",
                "/etc/supervisor/supervisord.conf")


class Unreachable(Exception):
    """No supervisor answers on the socket."""


Credentials = tuple[str, str]


def request(path: str, command: str, *args: str, timeout: float = 30.0,
            credentials: Credentials | None = None) -> dict[str, Any]:
    """Send one request (with the username and password, when given) and return the answer."""
    message: dict[str, Any] = {"cmd": command, "args": list(args)}
    if credentials is not None:
        message["auth"] = {"username": credentials[0], "password": credentials[1]}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall((json.dumps(message) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    except OSError as exc:
        raise Unreachable(f"cannot reach the supervisor at {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        return json.loads(data)
    except ValueError:
        raise Unreachable(f"no answer from the supervisor at {path} (is it a wsgistack control socket?)") from None


def find_config(config_path: str | None, socket_arg: str | None) -> str | None:
    """The config file to read: -c; none with -s alone; else found as supervisorctl finds its file."""
    if config_path or socket_arg:
        return config_path
    found = find_config_file(None, os.environ, defaults=CONFIG_FILES)
    if found is None:
        raise ConfigError(f"name the supervisor: -c CONFIG or -s SOCKET (found none of {', '.join(CONFIG_FILES)})")
    return str(found)


def socket_path(config_path: str | None, socket_arg: str | None) -> str:
    """The control socket: -s, or the one the config file declares."""
    if socket_arg:
        return socket_arg
    if not config_path:
        raise ConfigError("name the supervisor: -c CONFIG or -s SOCKET")
    from wsgistack.supervisor.load import load_config

    path = load_config(config_path).control.unix_path
    if not path:
        raise ConfigError(f"{config_path}: no control socket configured ([unix_http_server] file=...)")
    return path


def credentials(config_path: str | None, username: str | None, password: str | None) -> Credentials | None:
    """What to authenticate with: -u/-p, else [supervisorctl]'s username/password, else the ones the supervisor
    itself is configured with (whoever may read its config file may use them), else none."""
    if config_path and (username is None or password is None):
        from wsgistack.supervisor.load import load_config

        control = load_config(config_path).control
        if username is None:
            username = control.ctl_username or control.username
        if password is None:
            password = next((secret for user, secret in ((control.ctl_username, control.ctl_password),
                                                         (control.username, control.password))
                              if user == username and secret is not None), None)
    if username is None and password is None:
        return None
    if username is None or password is None:
        raise ConfigError("give both a username and a password (-u USER -p PASSWORD)")
    return username, password


def run_ctl(config_path: str | None, socket_arg: str | None, command: str, args: list[str],
            as_json: bool, follow: bool = False, lines: int = 0, username: str | None = None,
            password: str | None = None, timeout: float = 30.0, prog: str = "ctl") -> int:
    """Carry out one ctl command (`prog` names the command in messages: ctl, or deploy, which waits longer);
    print its result; return the exit code."""
    config_path = find_config(config_path, socket_arg)
    path = socket_path(config_path, socket_arg)
    auth = credentials(config_path, username, password)
    try:
        if command == "tail":
            return _tail(path, args, as_json, follow, lines, auth)
        answer = request(path, command, *args, credentials=auth, timeout=timeout)
    except Unreachable as exc:
        sys.stderr.write(f"wsgistack {prog}: {exc}\n")
        return EXIT_UNREACHABLE
    if not answer.get("ok"):
        sys.stderr.write(f"wsgistack {prog}: {answer.get('error')}\n")
        return EXIT_FAILED
    result = answer["result"]
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    elif command == "status":
        for record in result:
            sys.stdout.write(format_status(record) + "\n")
    elif command == "avail":
        for entry in result:
            sys.stdout.write(f"{entry['name']:<30}{'in use' if entry['in_use'] else 'avail':<10}"
                             f"{'auto' if entry['autostart'] else 'manual':<10}{entry['priority']}\n")
    elif command in ("reread", "update") and not result:
        sys.stdout.write("No config updates to processes\n")
    elif isinstance(result, dict):
        for name, outcome in result.items():
            sys.stdout.write(f"{name}: {outcome}\n")
    else:
        sys.stdout.write(f"{result}\n")
    if command == "status" and any(r["statename"] != "RUNNING" for r in result):
        return EXIT_NOT_RUNNING
    return EXIT_OK


def _tail(path: str, args: list[str], as_json: bool, follow: bool, lines: int, auth: Credentials | None) -> int:
    if not args:
        raise ConfigError("tail: name a process")
    name, stream = args[0], (args[1] if len(args) > 1 else "stdout")
    answer = request(path, "tail", name, stream, "65536" if lines else "1600", credentials=auth)
    if not answer.get("ok"):
        sys.stderr.write(f"wsgistack ctl: {answer.get('error')}\n")
        return EXIT_FAILED
    text, offset = answer["result"]["data"], answer["result"]["offset"]
    if len(text.encode()) < offset and "\n" in text:
        text = text[text.index("\n") + 1:]  # the window starts inside a line: begin at the next one
    if lines:
        text = "".join(text.splitlines(keepends=True)[-lines:])
    sys.stdout.write(json.dumps({"data": text, "offset": offset}) + "\n" if as_json else text)
    sys.stdout.flush()
    while follow:
        time.sleep(0.5)  # polling keeps the protocol one request, one answer
        answer = request(path, "tail", name, stream, "0", str(offset), credentials=auth)
        if not answer.get("ok"):
            return EXIT_FAILED
        sys.stdout.write(answer["result"]["data"])
        sys.stdout.flush()
        offset = answer["result"]["offset"]
    return EXIT_OK
