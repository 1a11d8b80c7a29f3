"""`wsgistack export compose`: compose.yaml valid against the Compose specification's schema (data/, from the
compose-spec project), healthchecks on each health endpoint that really tell a serving app server from a gone one,
stop_grace_period past graceful_timeout, the proxy started once the app servers are healthy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from export_stacks import STACKS, check_command, free_port, rendered
from polling import wait_for

SCHEMA = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())


def compose(files: dict[str, str]) -> dict:
    assert list(files) == ["compose.yaml"]
    return yaml.safe_load(files["compose.yaml"])


def seconds(duration: str) -> int:
    assert duration.endswith("s") and duration[:-1].isdigit(), duration
    return int(duration[:-1])


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_compose_file_valid_against_the_spec(stack, tmp_path):
    config = STACKS[stack](tmp_path / "project")
    document = compose(check_command("compose", config, tmp_path / "out"))
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    for service in document["services"].values():
        assert service["image"].startswith("${WSGISTACK_IMAGE:?")  # Compose refuses to run until it is set
        assert {"type": "bind", "source": str(config), "target": "/app/wsgistack.toml", "read_only": True} \
            in service["volumes"]


def test_schema_refuses_a_wrong_file():
    # the schema is the real one: it is strict where the spec is
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate({"services": {"app": {"stop_grace_period": 30}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate({"services": {"app": {"healthcheck": {"tests": ["CMD"]}}}})


def test_healthchecks_grace_periods_and_order(tmp_path):
    config = STACKS["two_servers"](tmp_path / "project")
    services = compose(rendered("compose", config))["services"]
    assert list(services) == ["web", "api", "proxy", "ticker"]
    for name in ("web", "api"):
        service = services[name]
        assert service["command"][-2:] == ["--bind", f"unix:/run/wsgistack/{name}.sock"]
        assert service["healthcheck"]["test"][:2] == ["CMD", "python"]
        assert service["healthcheck"]["test"][-2:] == [f"/run/wsgistack/{name}.sock", "/_wsgistack/health"]
        assert seconds(service["stop_grace_period"]) > 4  # graceful-timeout 4 s, and a margin
        assert "ports" not in service  # only the proxy is published
        assert services["proxy"]["depends_on"][name] == {"condition": "service_healthy"}
    proxy = services["proxy"]
    assert proxy["ports"] == ["127.0.0.1:8000:8000"]
    assert proxy["command"][-2:] == ["--listen", "0.0.0.0:8000"]
    assert proxy["healthcheck"]["test"][-2:] == ["127.0.0.1:8000", "/_wsgistack/health"]
    assert seconds(proxy["stop_grace_period"]) > 10  # the proxy's drain
    ticker = services["ticker"]
    assert ticker["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert ticker["command"][0] == "python"  # this machine's interpreter becomes the image's
    assert seconds(ticker["stop_grace_period"]) == 3


def test_healthcheck_tells_ready_from_gone(tmp_path):
    """The healthcheck's own command, run here against a real app server on TCP and on a unix socket."""
    config = STACKS["two_servers"](tmp_path / "project")
    services = compose(rendered("compose", config))["services"]
    script = services["proxy"]["healthcheck"]["test"][1:]
    port = free_port()
    socket = tmp_path / "web.sock"
    over_tcp = [sys.executable, *script[1:-2], f"127.0.0.1:{port}", script[-1]]
    over_unix = [sys.executable, *script[1:-2], str(socket), script[-1]]

    def passes(command: list[str]) -> bool:
        return subprocess.run(command, capture_output=True, timeout=10, check=False).returncode == 0

    assert not passes(over_tcp) and not passes(over_unix)
    servers = [subprocess.Popen([sys.executable, "-m", "wsgistack", "serve", "hello:web", "--bind", bind],
                                cwd=config.parent, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for bind in (f"127.0.0.1:{port}", f"unix:{socket}")]
    try:
        wait_for(lambda: passes(over_tcp) and passes(over_unix), 15, 0.1, "the healthchecks to pass")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=15)
