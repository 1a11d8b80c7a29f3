"""`wsgistack export k8s`: the stack as Kubernetes manifests, one multi-document kubernetes.yaml (one
`kubectl apply -f` for the whole stack, objects in the order they are needed).

- A ConfigMap holds the wsgistack.toml; each container mounts it as /app/wsgistack.toml, in the image's code
  folder, so the file's relative paths resolve there as they do at home.
- One Deployment runs the web pod: a container per app server and, with a [proxy], the proxy as a sidecar that
  reaches them over unix sockets in a shared emptyDir (nothing but the proxy is reachable from outside the
  pod). A Service selects it.
- Each [programs.NAME] is a Deployment of its own (its numprocs as replicas): it scales, restarts and rolls
  out alone; Kubernetes has no start order, so depends_on is only noted.

Rollouts drop no request: a pod being replaced first stays in the Service's endpoints a little longer than
kube-proxy and ingress controllers take to notice (a preStop sleep), then gets TERM and drains; the grace
period covers the sleep and the drain with a margin, past which the kubelet would SIGKILL it mid-request.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsgistack.export.commands import (
    APP_DIR,
    CONTAINER_CONFIG,
    CONTAINER_SOCKETS,
    STOP_MARGIN,
    check_exportable,
    container_binds,
    container_command,
    container_folder,
    container_listens,
    health_path,
    health_route,
    name_of,
    probe_command,
    proxy_command,
    serve_command,
    server_ports,
    stack_name,
    tcp_ports,
    yaml_text,
)
from wsgistack.proxy.server import STOP_GRACE
from wsgistack.stack.compose import AppServer, Stack
from wsgistack.supervisor.settings import ProgramSettings

FILE = "kubernetes.yaml"
IMAGE = "change-me.example/your-app:your-tag"  # the image holding the code and wsgistack, in APP_DIR
PRESTOP_SECONDS = 5  # endpoint removal reaches kube-proxy and ingress controllers in a few seconds
GRACE_MARGIN = 5
# resource requests per worker: a Python worker keeps about one core busy under load and its memory grows with
# the app; the master and the proxy need little. Memory limits are twice the request; no CPU limit (CFS
# throttling turns a busy second into latency spikes).
CPU_PER_WORKER = 0.25
MEMORY_BASE_MI = 64
MEMORY_PER_WORKER_MI = 128

HEAD = f"""\
# Kubernetes manifests for the stack of {{path}}, written by `wsgistack export k8s`.
# Before applying: set the image (one holding your code in {APP_DIR} and wsgistack installed), e.g.
#   kustomize edit set image {IMAGE.rpartition(':')[0]}=registry.example.com/myproject:1.2.3
# or replace {IMAGE} below. Then: kubectl apply -f {FILE}
# Resource requests are guesses from the worker counts (cpu {CPU_PER_WORKER:g} and {MEMORY_PER_WORKER_MI}Mi a worker):
# measure, then adjust. The preStop sleep action needs Kubernetes 1.30 or later (older clusters: an exec of sleep).
"""


def render(stack: Stack) -> dict[str, str]:
    """kubernetes.yaml for `stack`."""
    check_exportable(stack, "k8s")
    name = stack_name(stack)
    documents = [_config_map(stack, name), _web(stack, name)]
    ports = tcp_ports(stack)
    if ports:
        documents.append(_service(name, ports))
    groups: dict[str, list[ProgramSettings]] = {}
    for program in stack.supervisor.programs:
        groups.setdefault(program.program, []).append(program)
    for processes in groups.values():
        documents.append(_program(stack, name, processes))
    text = yaml_text(documents)
    return {FILE: HEAD.format(path=stack.path) + text}


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "wsgistack-export"}


def _config_map(stack: Stack, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{name}-config", "labels": _labels(name, "config")},
            "data": {"wsgistack.toml": Path(stack.path).read_text(encoding="utf-8")}}


def _web(stack: Stack, name: str) -> dict[str, Any]:
    """The Deployment of the app servers (and the proxy beside them)."""
    containers = []
    app_sleep = PRESTOP_SECONDS
    if stack.proxy is not None:
        # the app servers outlive the proxy's drain: what it still forwards must find them serving
        app_sleep += math.ceil(STOP_GRACE)
    for server in stack.servers:
        containers.append(_app_server(stack, server, app_sleep))
    stops = [app_sleep + server.settings.graceful_timeout for server in stack.servers]
    if stack.proxy is not None:
        containers.append(_proxy(stack))
        stops.append(PRESTOP_SECONDS + STOP_GRACE)
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": f"{name}-config"}}]
    if stack.proxy is not None:
        volumes.append({"name": "sockets", "emptyDir": {}})
    labels = _labels(name, "web")
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     # a new pod serves before an old one leaves
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": math.ceil(max(stops)) + GRACE_MARGIN,
                                           "containers": containers, "volumes": volumes}}}}


def _mounts(stack: Stack) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONTAINER_CONFIG, "subPath": "wsgistack.toml",
                                     "readOnly": True}]
    if stack.proxy is not None:
        mounts.append({"name": "sockets", "mountPath": CONTAINER_SOCKETS})
    return mounts


def _app_server(stack: Stack, server: AppServer, sleep: int) -> dict[str, Any]:
    settings = server.settings
    container: dict[str, Any] = {"name": name_of(server.name), "image": IMAGE, "workingDir": APP_DIR}
    if stack.proxy is not None:
        socket = f"{CONTAINER_SOCKETS}/{server.name}.sock"
        container["command"] = serve_command(stack, server, "python", CONTAINER_CONFIG, [f"unix:{socket}"])
        # a unix socket is out of httpGet's reach: the probe asks it from inside the container
        probe: dict[str, Any] = {"exec": {"command": probe_command(socket, health_path(server))}}
    else:
        binds = container_binds(server)
        container["command"] = serve_command(stack, server, "python", CONTAINER_CONFIG, binds)
        # port names are the pod's: numbered across its app servers, as the Service's
        first = sum(len(server_ports(other)) for other in stack.servers[:stack.servers.index(server)])
        ports = server_ports(server)
        container["ports"] = [{"name": _port_name(first + index), "containerPort": port}
                              for index, port in enumerate(ports)]
        probe = _port_probe(server, ports[0]) if ports else {
            "exec": {"command": probe_command(binds[0].removeprefix("unix:"), health_path(server))}}
    workers = settings.workers
    memory = MEMORY_BASE_MI + MEMORY_PER_WORKER_MI * workers
    container.update({
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "volumeMounts": _mounts(stack),
        "resources": {"requests": {"cpu": f"{math.ceil(CPU_PER_WORKER * workers * 1000)}m", "memory": f"{memory}Mi"},
                      "limits": {"memory": f"{2 * memory}Mi"}},
        # ready once every worker imported the app and answers (200 "ready"); 503 "draining" once stopping
        "readinessProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 4, "failureThreshold": 2},
        # a worker busy with a long request may be slow to answer: a minute of silence before a restart
        "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
        "lifecycle": {"preStop": {"sleep": {"seconds": sleep}}},
    })
    return container


def _port_probe(server: AppServer, port: int) -> dict[str, Any]:
    """An app server's own port: httpGet of its health endpoint, or a connect over uwsgi and FastCGI (the
    kubelet's probes speak only HTTP)."""
    path = health_path(server)
    if path:
        return {"httpGet": {"path": path, "port": port}}
    return {"tcpSocket": {"port": port}}


def _proxy(stack: Stack) -> dict[str, Any]:
    assert stack.proxy is not None
    sockets = {server.name: f"{CONTAINER_SOCKETS}/{server.name}.sock" for server in stack.servers}
    ports = [port for _host, port in tcp_ports(stack)]
    through = health_route(stack)
    if through is not None and ports:  # the health endpoint of the app server its route reaches, through it
        probe: dict[str, Any] = {"httpGet": {"path": through.settings.health_path, "port": ports[0]}}
    elif ports:
        probe = {"tcpSocket": {"port": ports[0]}}
    else:
        probe = {}
    workers = stack.proxy.workers
    container: dict[str, Any] = {
        "name": "proxy", "image": IMAGE, "workingDir": APP_DIR,
        "command": proxy_command("python", CONTAINER_CONFIG, sockets, container_listens(stack)),
        "ports": [{"name": _port_name(index), "containerPort": port} for index, port in enumerate(ports)],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "volumeMounts": _mounts(stack),
        "resources": {"requests": {"cpu": f"{100 * workers}m", "memory": f"{64 * workers}Mi"},
                      "limits": {"memory": f"{128 * workers}Mi"}},
    }
    if probe:
        container["readinessProbe"] = {**probe, "periodSeconds": 5, "timeoutSeconds": 4, "failureThreshold": 2}
        container["livenessProbe"] = {**probe, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6}
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}}
    return container


def _service(name: str, ports: list[tuple[str, int]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": _labels(name, "web")},
            "spec": {"selector": _labels(name, "web"),
                     "ports": [{"name": _port_name(index), "port": port, "targetPort": _port_name(index)}
                               for index, (_host, port) in enumerate(ports)]}}


def _program(stack: Stack, name: str, processes: list[ProgramSettings]) -> dict[str, Any]:
    """A [programs.NAME]: its copies as replicas (none when it does not autostart)."""
    program = processes[0]
    component = name_of(program.program)
    container: dict[str, Any] = {"name": component, "image": IMAGE,
                                 "workingDir": container_folder(stack, program.directory),
                                 "command": container_command(program.command),
                                 "volumeMounts": _mounts(stack)[:1],
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                               "limits": {"memory": "256Mi"}}}
    if program.environment:
        container["env"] = [{"name": key, "value": value} for key, value in program.environment]
    ready = _ready_probe(program)
    if ready:
        container["readinessProbe"] = ready
    labels = _labels(name, component)
    annotations = {}
    if program.depends_on:
        annotations["wsgistack/depends-on"] = ", ".join(program.depends_on) + " (Kubernetes has no start order)"
    metadata: dict[str, Any] = {"name": f"{name}-{component}", "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": {"replicas": len(processes) if program.autostart else 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds":
                                           math.ceil(program.stopwaitsecs + STOP_MARGIN),
                                           "containers": [container],
                                           "volumes": [{"name": "config",
                                                        "configMap": {"name": f"{name}-config"}}]}}}}


def _ready_probe(program: ProgramSettings) -> dict[str, Any] | None:
    """A program's ready check as a probe, where a probe can make it: tcp and http on this pod."""
    ready = program.ready
    if ready is None:
        return None
    if ready.kind == "tcp":
        return {"tcpSocket": {"port": int(ready.target.rpartition(":")[2])}}
    if ready.kind == "http":
        url = urlsplit(ready.target)
        if url.port and url.hostname in ("127.0.0.1", "localhost", "::1"):
            return {"httpGet": {"path": url.path or "/", "port": url.port}}
    return None


def _port_name(index: int) -> str:
    return "http" if index == 0 else f"http-{index + 1}"
