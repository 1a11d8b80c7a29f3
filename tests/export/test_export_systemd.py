"""`wsgistack export systemd`: the units pass `systemd-analyze verify`, and say what systemd must know of each part
(Type=notify, socket activation, stop timeouts, reloads, the order of the proxy after the app servers)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from commands import BASE_ENV
from export_stacks import STACKS, check_command, free_port, rendered
from systemd import NotifySocket, activated

ANALYZE = shutil.which("systemd-analyze")
# CI installs it (.ci/run), so there a missing one fails rather than skips
needs_analyze = pytest.mark.skipif(ANALYZE is None and not os.environ.get("CI"),
                                   reason="systemd-analyze not installed (Debian: systemd)")


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


def listen_on(stream: str) -> socket.socket:
    """What systemd does for a ListenStream=: a socket bound and listening (a path, or HOST:PORT)."""
    if stream.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(stream)
    else:
        host, _, port = stream.rpartition(":")
        sock = socket.socket()
        sock.bind((host, int(port)))
    sock.listen(64)
    return sock


def test_services_take_systemds_sockets_and_say_ready(tmp_path):
    """Each service's ExecStart, run as systemd would: its .socket's sockets from descriptor 3 (LISTEN_FDS), a
    notify socket; each says READY=1, and a request through the proxy's socket reaches both app servers."""
    port = free_port()
    config = STACKS["two_servers"](tmp_path / "project", port)
    run = tmp_path / "run"  # stands for /run/project, where systemd would make the app servers' sockets
    run.mkdir()
    files = {name: text.replace("/run/project/", f"{run}/") for name, text in rendered("systemd", config).items()}
    parsed = units(files)
    started: list[tuple[subprocess.Popen, NotifySocket]] = []
    try:
        for name in ("web", "api", "proxy"):
            service = parsed[f"project-{name}.service"]["Service"]
            streams = files[f"project-{name}.socket"].split("ListenStream=")[1:]
            sockets = [listen_on(stream.split("\n", 1)[0]) for stream in streams]
            folder = tmp_path / name
            folder.mkdir()
            notify = NotifySocket(folder)
            argv = shlex.split(service["ExecStart"])
            assert argv[:3] == [sys.executable, "-m", "wsgistack"]
            command, fds = activated(argv[3:], sockets)
            process = subprocess.Popen(command, cwd=service["WorkingDirectory"], env={**BASE_ENV, **notify.env},
                                       pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            started.append((process, notify))
            for sock in sockets:
                sock.close()  # systemd's copies are the child's now
            notify.wait("READY")
        for path, answer in (("/hello", b"web /hello"), ("/api/x", b"api /api/x")):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                response = b"".join(iter(lambda: client.recv(65536), b""))
            assert response.startswith(b"HTTP/1.1 200") and response.endswith(answer), response
        for process, notify in reversed(started):
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
            notify.wait("STOPPING")
    finally:
        for process, notify in started:
            if process.poll() is None:
                process.kill()
                process.wait()
            notify.close()
