"""`wsgistack export systemd`: the units pass `systemd-analyze verify`, and say what systemd must know of each part
(Type=notify, socket activation, stop timeouts, reloads, the order of the proxy after the app servers)."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest
from export_stacks import STACKS, check_command

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (Debian: systemd)")


def units(files: dict[str, str]) -> dict[str, configparser.RawConfigParser]:
    """Each unit read as INI (repeated keys, such as After=, joined by spaces)."""
    parsed = {}
    for name, text in files.items():
        unit = configparser.RawConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(text)
        parsed[name] = unit
    return parsed


@needs_analyze
@pytest.mark.parametrize("stack", sorted(STACKS))
def test_units_pass_systemd_analyze_verify(stack, tmp_path):
    config = STACKS[stack](tmp_path / "project")
    out = tmp_path / "units"
    files = check_command("systemd", config, out)
    result = subprocess.run([ANALYZE, "verify", "--man=no", *sorted(files)], cwd=out, capture_output=True,
                            text=True, timeout=20, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_units_of_two_app_servers(tmp_path):
    config = STACKS["two_servers"](tmp_path / "project")
    files = check_command("systemd", config, tmp_path / "units")
    prefix = "project"
    assert next(iter(files)) == f"{prefix}.target"
    assert set(files) == {f"{prefix}.target", *(f"{prefix}-{name}.{kind}" for name in ("web", "api", "proxy")
                                                for kind in ("socket", "service")), f"{prefix}-ticker.service"}
    parsed = units(files)
    for name in ("web", "api"):
        service = parsed[f"{prefix}-{name}.service"]
        assert service.get("Service", "Type") == "notify"
        assert service.get("Service", "TimeoutStopSec") == "9"  # graceful-timeout 4 s + 5
        assert service.get("Service", "KillMode") == "mixed"
        assert service.get("Service", "ExecReload").endswith("-HUP $MAINPID")
        socket = parsed[f"{prefix}-{name}.socket"].get("Socket", "ListenStream")
        assert socket == f"/run/{prefix}/{name}.sock"
        # the proxy connects to the socket systemd holds for it
        assert f"--stack-upstream {name}=unix:{socket}" in parsed[f"{prefix}-proxy.service"].get("Service",
                                                                                                  "ExecStart")
        assert f"{prefix}-{name}.socket" in parsed[f"{prefix}-proxy.service"].get("Unit", "Requires")
    assert "--serve-table api" in parsed[f"{prefix}-api.service"].get("Service", "ExecStart")
    proxy = parsed[f"{prefix}-proxy.socket"]
    assert proxy.get("Socket", "ListenStream") == "127.0.0.1:8000"
    ticker = parsed[f"{prefix}-ticker.service"]
    assert f"{prefix}-api.service" in ticker.get("Unit", "Requires")
    assert ticker.get("Service", "TimeoutStopSec") == "3"
    wants = parsed[f"{prefix}.target"].get("Unit", "Wants").split()
    assert f"{prefix}-ticker.service" in wants and f"{prefix}-proxy.socket" in wants
