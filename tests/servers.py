"""A real `wsgistack serve` in a subprocess on 127.0.0.1 (ephemeral ports, unix sockets), and where the test
apps live. The `start_server` fixture (conftest.py) starts them and stops every one at the end of a test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from polling import wait_for
from processes import LogFiles, children_of, pid_alive

APPS = Path(__file__).parent / "apps"
WORKER_CLASSES = ["sync", "thread", "event", "gevent", "tornado"]


class Server(LogFiles):
    """A running `wsgistack serve` subprocess and what the tests need to poke at it."""

    def __init__(self, tmp: Path, app: str, args: list[str], env: dict[str, str] | None = None,
                 cwd: Path = APPS, unix: bool = False):
        self.tmp = tmp
        self.error_log = tmp / "error.log"
        self.access_log = tmp / "access.log"
        self.socket_path = tmp / "server.sock" if unix else None
        bind = f"unix:{self.socket_path}" if unix else "127.0.0.1:0"
        command = [sys.executable, "-m", "wsgistack", "serve", *([app] if app else []), "--bind", bind,
                   "--error-log", str(self.error_log), "--access-log", str(self.access_log), *args]
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = 0

    @property
    def pid(self) -> int:
        """The master's pid."""
        return self.proc.pid

    def wait_ready(self, timeout: float = 20.0) -> Server:
        """Wait for the 'listening at' line (written once a first worker has booted)."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}\n"
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
            return re.search(r"listening at (\S+)", self.log())
        match = wait_for(ready, timeout, message="the server to listen")
        address = match.group(1)
        if address.startswith("http://"):
            self.port = int(address.rsplit(":", 1)[1])
        return self

    def wait_workers(self, count: int, timeout: float = 20.0) -> set[int]:
        """Wait until the master has exactly `count` live workers, all booted; return their pids."""
        def settled():
            pids = {p for p in children_of(self.pid) if pid_alive(p)}
            booted = set(int(p) for p in re.findall(r"worker (\d+) booted", self.log()))
            return pids if len(pids) == count and pids <= booted else None
        return wait_for(settled, timeout, message=f"{count} booted workers")  # type: ignore[return-value]

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A new client connection."""
        if self.socket_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            return sock
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def signal(self, signum: int) -> None:
        """Send a signal to the master."""
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> int:
        """Graceful stop; kill the whole tree if it does not stop in time. Returns the exit code."""
        if self.proc.poll() is None:
            workers = children_of(self.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in workers | {self.pid}:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.proc.returncode
