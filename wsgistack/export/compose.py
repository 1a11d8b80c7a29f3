"""`wsgistack export compose`: the stack as a Compose file (compose.yaml): a service per app server, the proxy
and each [programs.NAME], all from one image that holds the code and wsgistack.

The app servers listen on unix sockets in a named volume the proxy mounts too, and only the proxy publishes a
port; Compose starts the proxy once every app server's healthcheck passes (its health endpoint answers 200),
and a program once what it depends_on has started (or is healthy, for the parts that have a healthcheck).
"""

from __future__ import annotations

import math
import signal
from typing import Any

from wsgistack.export.commands import (
    APP_DIR,
    CONTAINER_CONFIG,
    CONTAINER_SOCKETS,
    PROXY_STOP_SECONDS,
    check_exportable,
    container_binds,
    container_command,
    container_folder,
    container_listens,
    health_path,
    health_route,
    probe_command,
    proxy_command,
    serve_command,
    server_ports,
    server_stop_seconds,
    stack_name,
    tcp_ports,
    yaml_text,
)
from wsgistack.stack.compose import AppServer, Stack
from wsgistack.supervisor.settings import ProgramSettings

FILE = "compose.yaml"
IMAGE_VARIABLE = "WSGISTACK_IMAGE"
# Compose stops with this message when the variable is unset: the image must be the user's own
IMAGE = f"${{{IMAGE_VARIABLE}:?set {IMAGE_VARIABLE} to your app's image (code in {APP_DIR}, wsgistack installed)}}"
_RESTART = {"true": "unless-stopped", "unexpected": "on-failure", "false": "no"}
HEAD = f"""\
# Compose file for the stack of {{path}}, written by `wsgistack export compose`.
# Run: {IMAGE_VARIABLE}=registry.example.com/myproject:1.2.3 docker compose up
# The image holds the code in {APP_DIR} and wsgistack; the file is mounted from this machine as
# {CONTAINER_CONFIG}, so its relative paths resolve in {APP_DIR}. The app servers' sockets are in the
# volume "sockets": an image running as another user than root must own {CONTAINER_SOCKETS} in it.
# Healthchecks run Python (no curl needed); stop_grace_period covers each part's drain.
"""


def render(stack: Stack) -> dict[str, str]:
    """compose.yaml for `stack`."""
    check_exportable(stack, "compose")
    sockets = {server.name: f"{CONTAINER_SOCKETS}/{server.name}.sock" for server in stack.servers} \
        if stack.proxy else {}
    services: dict[str, Any] = {}
    for server in stack.servers:
        services[server.name] = _app_server(stack, server, sockets.get(server.name))
    if stack.proxy is not None:
        services["proxy"] = _proxy(stack, sockets)
    for program in stack.supervisor.programs:
        if _service_name(program) not in services:  # numprocs copies: one service, scaled
            services[_service_name(program)] = _program(stack, program, services)
    document: dict[str, Any] = {"name": stack_name(stack), "services": services}
    if sockets:
        document["volumes"] = {"sockets": {}}
    return {FILE: HEAD.format(path=stack.path) + yaml_text([document])}


def _mounts(stack: Stack, sockets: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"type": "bind", "source": _literal(stack.path), "target": CONTAINER_CONFIG,
                                     "read_only": True}]
    if sockets:
        mounts.append({"type": "volume", "source": "sockets", "target": CONTAINER_SOCKETS})
    return mounts


def _healthcheck(address: str, path: str | None) -> dict[str, Any]:
    return {"test": ["CMD", *probe_command(address, path)], "interval": "5s", "timeout": "4s", "retries": 3,
            "start_period": "60s"}


def _app_server(stack: Stack, server: AppServer, socket: str | None) -> dict[str, Any]:
    service: dict[str, Any] = {"image": IMAGE, "working_dir": APP_DIR}
    if socket is not None:
        service["command"] = serve_command(stack, server, "python", CONTAINER_CONFIG, [f"unix:{socket}"])
        check = _healthcheck(socket, health_path(server))
    else:
        binds = container_binds(server)
        service["command"] = serve_command(stack, server, "python", CONTAINER_CONFIG, binds)
        ports = server_ports(server)
        service["ports"] = [_published(host, port) for host, port in tcp_ports(stack) if port in ports]
        address = f"127.0.0.1:{ports[0]}" if ports else binds[0].removeprefix("unix:")
        check = _healthcheck(address, health_path(server))
    service.update({
        "environment": {"PYTHONUNBUFFERED": "1"},
        "volumes": _mounts(stack, socket is not None),
        "healthcheck": check,
        "restart": "unless-stopped",
        # TERM: the app server answers what it holds within graceful_timeout; Compose waits this long
        "stop_signal": "SIGTERM",
        "stop_grace_period": f"{server_stop_seconds(server)}s",
    })
    return service


def _proxy(stack: Stack, sockets: dict[str, str]) -> dict[str, Any]:
    ports = tcp_ports(stack)
    through = health_route(stack)
    service: dict[str, Any] = {
        "image": IMAGE, "working_dir": APP_DIR,
        "command": proxy_command("python", CONTAINER_CONFIG, sockets, container_listens(stack)),
        "ports": [_published(host, port) for host, port in ports],
        "environment": {"PYTHONUNBUFFERED": "1"},
        "volumes": _mounts(stack, True),
        "depends_on": {server.name: {"condition": "service_healthy"} for server in stack.servers},
    }
    if ports:  # through the proxy to the health endpoint of the app server its route reaches, or a connect
        service["healthcheck"] = _healthcheck(f"127.0.0.1:{ports[0][1]}",
                                              health_path(through) if through is not None else None)
    service.update({"restart": "unless-stopped", "stop_signal": "SIGTERM",
                    "stop_grace_period": f"{PROXY_STOP_SECONDS}s"})
    return service


def _program(stack: Stack, program: ProgramSettings, services: dict[str, Any]) -> dict[str, Any]:
    """A [programs.NAME]: its numprocs copies as `scale` (a group's processes share their program's service)."""
    copies = sum(1 for other in stack.supervisor.programs if other.program == program.program)
    service: dict[str, Any] = {"image": IMAGE, "working_dir": container_folder(stack, program.directory),
                               "command": [_literal(word) for word in container_command(program.command)]}
    if program.environment:
        service["environment"] = {key: _literal(value) for key, value in program.environment}
    service["volumes"] = _mounts(stack, False)
    depends = {}
    for name in program.depends_on:
        target = services.get(name, {})
        depends[name] = {"condition": "service_healthy" if "healthcheck" in target else "service_started"}
    if depends:
        service["depends_on"] = depends
    if not program.autostart or copies != 1:
        service["scale"] = copies if program.autostart else 0
    if program.user:
        service["user"] = program.user
    service.update({"restart": _RESTART.get(program.autorestart, "on-failure"),
                    "stop_signal": signal.Signals(program.stopsignal).name,
                    "stop_grace_period": f"{math.ceil(program.stopwaitsecs)}s"})
    return service


def _service_name(program: ProgramSettings) -> str:
    return program.program


def _published(host: str, port: int) -> str:
    """A published port: on the file's address when it names one (127.0.0.1 stays on loopback)."""
    if host in ("", "0.0.0.0", "::"):
        return f"{port}:{port}"
    return f"[{host}]:{port}:{port}" if ":" in host else f"{host}:{port}:{port}"


def _literal(text: str) -> str:
    """`text` as Compose reads it literally: it interpolates $VARIABLE everywhere, $$ is a $."""
    return text.replace("$", "$$")
