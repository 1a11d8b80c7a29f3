"""`wsgistack export k8s`: every manifest valid for the current Kubernetes (kubernetes-validate --strict); the
probes reach each app server's health endpoint; a pod's grace period outlasts its preStop sleep and drain; the
exec probe really tells a serving app server from a gone one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from export_stacks import STACKS, check_command, rendered
from polling import wait_for

from wsgistack.proxy.server import STOP_GRACE

BIN = Path(sys.executable).parent


def manifests(files: dict[str, str]) -> list[dict]:
    assert list(files) == ["kubernetes.yaml"]
    return [document for document in yaml.safe_load_all(files["kubernetes.yaml"]) if document]


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [document for document in documents if document["kind"] == kind]


def prestop_seconds(container: dict) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return pre_stop["sleep"]["seconds"]
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_manifests_valid_strict(stack, tmp_path):
    config = STACKS[stack](tmp_path / "project")
    out = tmp_path / "k8s"
    documents = manifests(check_command("k8s", config, out))
    version = kubernetes_validate.latest_version()
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)  # raises ValidationError
    result = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(out / "kubernetes.yaml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert {d["kind"] for d in documents} == {"ConfigMap", "Deployment", "Service"}
    assert documents[0]["data"]["wsgistack.toml"] == config.read_text()


def test_probes_prestop_and_grace_period(tmp_path):
    config = STACKS["two_servers"](tmp_path / "project")
    documents = manifests(rendered("k8s", config))
    web = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == "project")
    pod = web["spec"]["template"]["spec"]
    containers = {container["name"]: container for container in pod["containers"]}
    assert set(containers) == {"web", "api", "proxy"}
    grace = pod["terminationGracePeriodSeconds"]
    for name in ("web", "api"):
        container = containers[name]
        command = container["command"]
        assert command[command.index("--bind") + 1] == f"unix:/run/wsgistack/{name}.sock"
        assert command[command.index("--config") + 1] == "/app/wsgistack.toml"
        for kind in ("readinessProbe", "livenessProbe"):
            probe = container[kind]["exec"]["command"]
            assert probe[-2:] == [f"/run/wsgistack/{name}.sock", "/_wsgistack/health"]
        # the gap that drops requests on rollouts: SIGKILL before the sleep and the drain are over
        assert grace > prestop_seconds(container) + 4  # graceful-timeout 4 s
        # the app servers outlive the proxy's drain
        assert prestop_seconds(container) >= prestop_seconds(containers["proxy"]) + STOP_GRACE
    proxy = containers["proxy"]
    assert grace > prestop_seconds(proxy) + STOP_GRACE
    assert prestop_seconds(proxy) > 0
    for kind in ("readinessProbe", "livenessProbe"):
        assert proxy[kind]["httpGet"] == {"path": "/_wsgistack/health", "port": 8000}  # "/" reaches web's
    assert proxy["command"][-2:] == ["--listen", "0.0.0.0:8000"]
    assert {"name": "sockets", "emptyDir": {}} in pod["volumes"]
    # requests follow the workers: web has 2, api 1
    assert containers["web"]["resources"]["requests"]["cpu"] == "500m"
    assert containers["api"]["resources"]["requests"]["cpu"] == "250m"
    service = by_kind(documents, "Service")[0]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}]
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    ticker = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == "project-ticker")
    assert ticker["spec"]["template"]["spec"]["containers"][0]["command"][0] == "python"
    assert ticker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 3  # stopwaitsecs


@pytest.mark.parametrize(("protocol", "probe"), [("http", "httpGet"), ("uwsgi", "tcpSocket")])
def test_app_server_alone_is_probed_on_its_port(protocol, probe, tmp_path):
    folder = tmp_path / "alone"
    folder.mkdir()
    config = folder / "wsgistack.toml"
    config.write_text(f'[serve]\napp = "hello:web"\nbind = ["127.0.0.1:9000"]\nprotocol = "{protocol}"\n'
                      f'graceful-timeout = 20\n')
    documents = manifests(rendered("k8s", config))
    for document in documents:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    pod = by_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][-2:] == ["--bind", "0.0.0.0:9000"]
    assert container["ports"] == [{"name": "http", "containerPort": 9000}]
    # the kubelet's httpGet speaks HTTP only: over uwsgi a connect is all it can ask
    assert probe in container["readinessProbe"] and probe in container["livenessProbe"]
    assert pod["terminationGracePeriodSeconds"] > prestop_seconds(container) + 20


def test_exec_probe_tells_ready_from_gone(tmp_path):
    config = STACKS["two_servers"](tmp_path / "project")
    documents = manifests(rendered("k8s", config))
    pod = by_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    probe = next(c for c in pod["containers"] if c["name"] == "web")["readinessProbe"]["exec"]["command"]
    socket = tmp_path / "web.sock"
    command = [sys.executable, *probe[1:-2], str(socket), probe[-1]]
    assert subprocess.run(command, capture_output=True, timeout=10, check=False).returncode != 0  # nothing there
    server = subprocess.Popen([sys.executable, "-m", "wsgistack", "serve", "hello:web", "--bind", f"unix:{socket}"],
                              cwd=config.parent, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(command, capture_output=True, timeout=10, check=False).returncode == 0,
                 15, 0.1, "the probe to pass on a serving app server")
    finally:
        server.terminate()
        server.wait(timeout=15)
