"""What the exports of a stack to supervisord, systemd, Kubernetes and Compose write alike: the command lines of
its app servers and proxy, the seconds a stop may take, a health probe that needs nothing but Python, and the
names other engines accept."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError
from wsgistack.proxy.server import STOP_GRACE
from wsgistack.stack.compose import AppServer, Stack

STOP_MARGIN = 5.0  # seconds past a part's own drain before it is killed (as `wsgistack up` allows)
PROXY_STOP_SECONDS = math.ceil(STOP_GRACE + STOP_MARGIN)

# Inside a container: the image's folder that holds the code, where the config is mounted as wsgistack.toml
# (relative paths of the file, app = "pkg:app" and static folders, resolve against it as they do at home),
# and the folder of the app servers' unix sockets, shared with the proxy.
APP_DIR = "/app"
CONTAINER_CONFIG = f"{APP_DIR}/wsgistack.toml"
CONTAINER_SOCKETS = "/run/wsgistack"


def check_exportable(stack: Stack, kind: str) -> None:
    """ConfigError (one line) for what these exports cannot write: their proxy is `wsgistack proxy`."""
    engine = getattr(stack.proxy, "engine", "wsgistack")
    if stack.proxy is not None and engine != "wsgistack":
        raise ConfigError(f"{stack.path}: [proxy] engine = {engine!r}: `wsgistack export {kind}` runs the wsgistack "
                          f"proxy only (set engine = \"wsgistack\" to export it, or run nginx from `wsgistack "
                          f"export nginx` beside the app servers)")


def serve_command(stack: Stack, server: AppServer, python: str, config: str, binds: Iterable[str] = ()) -> list[str]:
    """`wsgistack serve` of one app server: its table of `config`, listening on `binds` (the file's bind if none)."""
    command = [python, "-m", "wsgistack", "serve", "--config", config]
    if server.table is not None:
        command += ["--serve-table", server.table]
    for bind in binds:
        command += ["--bind", bind]
    return command


def proxy_command(python: str, config: str, sockets: Mapping[str, str], listens: Iterable[str] = ()) -> list[str]:
    """`wsgistack proxy` of `config`, each app server an upstream of its name at its unix socket (as `up` tells
    it), listening on `listens` (the file's listen if none)."""
    command = [python, "-m", "wsgistack", "proxy", "--config", config]
    for name, path in sockets.items():
        command += ["--stack-upstream", f"{name}=unix:{path}"]
    for listen in listens:
        command += ["--listen", listen]
    return command


def server_stop_seconds(server: AppServer) -> int:
    """Seconds an app server may take to stop: its graceful_timeout and a margin, whole."""
    return math.ceil(server.settings.graceful_timeout + STOP_MARGIN)


def tcp_ports(stack: Stack) -> list[tuple[str, int]]:
    """The public TCP (host, port) pairs of the stack: the proxy's listen, else each app server's bind."""
    if stack.proxy is not None:
        return [(listen.address.host, listen.address.port) for listen in stack.proxy.listen
                if listen.address.kind == "tcp"]
    ports = []
    for server in stack.servers:
        for bind in server.settings.bind:
            address = parse_address(bind)
            if address.kind == "tcp":
                ports.append((address.host, address.port))
    return ports


def server_ports(server: AppServer) -> list[int]:
    """The TCP ports an app server binds itself."""
    addresses = [parse_address(bind) for bind in server.settings.bind]
    return [address.port for address in addresses if address.kind == "tcp"]


def name_of(text: str) -> str:
    """`text` as a DNS label (Kubernetes objects, containers) and a unit or service name: a-z, 0-9 and '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-") or "wsgistack"


def stack_name(stack: Stack) -> str:
    """The stack's name in other engines: its folder's name (each file is usually a project's own)."""
    return name_of(os.path.basename(os.path.dirname(stack.path)))


# One request to the health endpoint and its status, or a bare connect without a path; argv: ADDRESS [PATH],
# ADDRESS a socket path or HOST:PORT. Python alone: a slim image has no curl.
_PROBE = (
    "import socket,sys\n"
    "a=sys.argv[1]\n"
    "s=socket.socket(socket.AF_UNIX if a[0]=='/' else socket.AF_INET)\n"
    "s.settimeout(3)\n"
    "s.connect(a if a[0]=='/' else (a.rpartition(':')[0],int(a.rpartition(':')[2])))\n"
    "len(sys.argv)>2 or sys.exit(0)\n"
    "s.sendall(b'GET '+sys.argv[2].encode()+b' HTTP/1.0\\r\\n\\r\\n')\n"
    "sys.exit(s.recv(16)[9:12]!=b'200')\n"
)


def health_path(server: AppServer) -> str | None:
    """The path an HTTP probe of `server` asks: its health endpoint; None over uwsgi or FastCGI, or with the
    endpoint turned off (a connect is all a probe can ask then)."""
    path = server.settings.health_path
    return path if path and server.settings.protocol == "http" else None


def probe_command(address: str, path: str | None, python: str = "python") -> list[str]:
    """A command that succeeds while `address` (a socket path or HOST:PORT) answers `path` with 200, or with no
    path, while it accepts a connection."""
    return [python, "-c", _PROBE, address, *([path] if path else [])]


def container_listens(stack: Stack) -> list[str]:
    """The proxy's `--listen` in a container: its ports on every interface (a Service or a published port
    reaches it from outside the container), TLS kept, unix sockets as they are."""
    assert stack.proxy is not None
    listens = []
    for listen in stack.proxy.listen:
        address = listen.address
        text = f"0.0.0.0:{address.port}" if address.kind == "tcp" else str(address)
        listens.append(text + (" ssl" if listen.tls else ""))
    return listens


def container_binds(server: AppServer) -> list[str]:
    """An app server's `--bind` in a container without a proxy: its ports on every interface."""
    binds = []
    for bind in server.settings.bind:
        address = parse_address(bind)
        binds.append(f"0.0.0.0:{address.port}" if address.kind == "tcp" else bind)
    return binds


def container_folder(stack: Stack, folder: str | None) -> str:
    """A program's folder in the container: the file's folder (or one under it) moves to APP_DIR."""
    home = os.path.dirname(stack.path)
    if folder is None or folder == home:
        return APP_DIR
    if folder.startswith(home + os.sep):
        return f"{APP_DIR}/{os.path.relpath(folder, home)}"
    return folder


def container_command(command: Iterable[str]) -> list[str]:
    """A program's command in a container: this machine's interpreter becomes the image's `python`."""
    argv = list(command)
    if argv and argv[0] == sys.executable:
        argv[0] = "python"
    return argv


def health_route(stack: Stack) -> AppServer | None:
    """The app server the proxy sends its health path to, when it speaks HTTP there: the proxy can then be
    probed on it; None when no route of any host (or a static one) takes it."""
    assert stack.proxy is not None
    server = stack.servers[0]
    path = server.settings.health_path
    routes = [route for route in stack.proxy.routes if not route.hosts and path.startswith(route.path)]
    if not path or not routes:
        return None
    route = max(routes, key=lambda route: len(route.path))
    names = {candidate.name: candidate for candidate in stack.servers}
    chosen = names.get(route.upstream or "")
    if chosen is None or chosen.settings.protocol != "http" or chosen.settings.health_path != path:
        return None
    return chosen


class _Dumper(yaml.SafeDumper):
    """safe_dump's YAML, written for people: no anchors, texts of several lines as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _text)


def yaml_text(documents: list[Any]) -> str:
    """The documents as YAML (several: each after ---), keys in the order given."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, explicit_start=len(documents) > 1, width=110)
