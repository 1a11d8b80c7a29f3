"""Fixtures that run a real `wsgistack proxy` in a subprocess on 127.0.0.1, in front of real upstreams.

A plain module, not a conftest (tests/conftest.py is imported as `conftest`): a test file takes the fixtures
with `from proxies import start_proxy, start_upstream  # noqa: F401`.

`start_proxy(toml=..., args=[...])` writes the config (if any) into the test's folder, starts the proxy on
an ephemeral port, and waits for its 'listening at' line; every proxy is stopped at the end of the test.
Upstreams are real `wsgistack serve` processes of tests/apps/upstream_app.py (`start_upstream("a")`).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from servers import APPS, Server
from polling import wait_for
from processes import LogFiles


class Proxy(LogFiles):
    """A running `wsgistack proxy` subprocess."""

    def __init__(self, folder: Path, toml: str | None, args: list[str], env: dict[str, str] | None = None):
        self.folder = folder
        self.error_log = folder / "proxy-error.log"
        self.access_log = folder / "access.log"
        self.config = folder / "wsgistack.toml"
        command = [sys.executable, "-m", "wsgistack", "proxy", "--error-log", str(self.error_log)]
        if toml is not None:
            self.config.write_text(toml)
            command += ["-c", str(self.config)]
        command += args
        self.proc = subprocess.Popen(command, cwd=folder, env=dict(os.environ, **(env or {})),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = 0
        self.ports: list[int] = []

    def wait_ready(self, timeout: float = 15.0) -> Proxy:
        """Wait until every listener is up ('proxy ready' follows the 'listening at' lines)."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited with {self.proc.returncode}:\n{self.log()}\n"
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
            return "proxy ready" in self.log()
        wait_for(ready, timeout, message="the proxy to listen")
        self.ports = [int(port) for port in re.findall(r"listening at https?://[^\s]+:(\d+)", self.log())]
        self.port = self.ports[0] if self.ports else 0
        return self

    def url(self, path: str = "/", scheme: str = "http") -> str:
        """A URL on the proxy's first listener."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def get(self, path: str = "/", **kwargs) -> requests.Response:
        """GET through the proxy (a new connection each time unless a session is used)."""
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url(path), **kwargs)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw client connection."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def signal(self, signum: int) -> None:
        """Send a signal to the proxy."""
        os.kill(self.proc.pid, signum)

    def stop(self, timeout: float = 15.0) -> int:
        """Graceful stop (SIGTERM); SIGKILL at the deadline. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.proc.returncode


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Start proxies with `start_proxy(toml=None, args=[...], ready=True)`; all are stopped at the end.

    In `toml`, `{folder}` stands for the proxy's folder (for static roots and logs).
    """
    proxies: list[Proxy] = []

    def start(toml: str | None = None, args: list[str] | tuple[str, ...] = (), ready: bool = True,
              env: dict[str, str] | None = None) -> Proxy:
        folder = tmp_path / f"proxy{len(proxies)}"
        folder.mkdir()
        text = toml.replace("{folder}", str(folder)) if toml is not None else None
        proxy = Proxy(folder, text, list(args), env)
        proxies.append(proxy)
        return proxy.wait_ready() if ready else proxy

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def start_upstream(start_server: Callable[..., Server]) -> Callable[..., Server]:
    """`start_upstream("a", "-k", "sync")`: a real Flask app (tests/apps/upstream_app.py) answering its name."""

    def start(name: str, *args: str, env: dict[str, str] | None = None, unix: bool = False) -> Server:
        full_env = {"UPSTREAM_NAME": name, **(env or {})}
        has_workers = any(arg in ("-w", "--workers") for arg in args)
        return start_server("upstream_app:app", *(() if has_workers else ("-w", "1")), *args, env=full_env,
                            cwd=APPS, unix=unix)

    return start


def upstream_address(server: Server) -> str:
    """How a proxy config names an upstream server: 127.0.0.1:PORT or unix:PATH."""
    return f"unix:{server.socket_path}" if server.socket_path else f"127.0.0.1:{server.port}"


def send_until_closed(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to 127.0.0.1:port and read until the proxy closes the connection (or the deadline)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
