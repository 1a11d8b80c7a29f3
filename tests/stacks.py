"""A real `wsgistack up` in a subprocess, the release folders a deploy switches between, and a steady load of
GET and POST requests through its proxy that counts every failure."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from commands import BASE_ENV
from polling import wait_for
from processes import children_of, pid_alive

RELEASE_APP = '''from flask import Flask, request

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"], defaults={"path": ""})
@app.route("/<path:path>", methods=["GET", "POST"])
def index(path):
    return "{answer} " + str(len(request.get_data()))
'''


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a proxy whose address must be in its config."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_release(folder: Path, answer: str, source: str = RELEASE_APP) -> Path:
    """A release folder holding hello.py, whose app answers `answer`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hello.py").write_text(source.replace("{answer}", answer))
    return folder


class Stack:
    """`wsgistack up -c tmp/wsgistack.toml`, its output in tmp/up.log."""

    def __init__(self, tmp: Path, toml: str):
        self.tmp = tmp
        self.config = tmp / "wsgistack.toml"
        self.config.write_text(toml)
        self.log_path = tmp / "up.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "wsgistack", "up", "-c", str(self.config)], cwd=tmp,
                                     env=BASE_ENV, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wsgistack(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        """`python -m wsgistack ARGS` next to the stack's file (ctl and deploy find it there)."""
        return subprocess.run([sys.executable, "-m", "wsgistack", *args], cwd=self.tmp, env=BASE_ENV,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)

    def status(self, starting: bool = False) -> dict[str, dict]:
        """`ctl status --json`, by process name; {} while `starting` and the control socket is not up yet."""
        result = self.wsgistack("ctl", "status", "--json", timeout=15)
        if starting and result.returncode == 4:  # unreachable: the supervisor is not listening yet
            return {}
        try:
            records = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"ctl status said no JSON (exit {result.returncode}): {result.stdout!r} "
                                 f"{result.stderr!r}\n{self.log()[-3000:]}") from None
        return {record["name"]: record for record in records}

    def wait_running(self, *names: str, timeout: float = 30) -> dict[str, dict]:
        def running():
            if self.proc.poll() is not None:
                raise AssertionError(f"wsgistack up exited with {self.proc.returncode}:\n{self.log()}")
            status = self.status(starting=True)
            return status if all(status.get(name, {}).get("statename") == "RUNNING" for name in names) else None
        return wait_for(running, timeout, interval=0.1, message=f"{', '.join(names)} RUNNING\n")

    def descendants(self) -> set[int]:
        found: set[int] = set()
        todo = [self.proc.pid]
        while todo:
            for child in children_of(todo.pop()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        """Ctrl-C (or `signum`) and wait: the exit code; fails the test if anything of the stack outlives it."""
        tree = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log_file.close()
        wait_for(lambda: not any(pid_alive(pid) for pid in tree), 10, message="every process of the stack gone")
        return code


class Load:
    """Clients sending GET and POST through the proxy, each on its own keep-alive connection, until stopped or
    bounded by count and time; every error and every status other than 200 is a failure."""

    def __init__(self, port: int, clients: int = 4, limit: int = 100_000, seconds: float = 120.0):
        self.port = port
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.done = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self, number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = b"x" * (100 + number)
        sent = 0
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.done >= self.limit:
                    return
            post = sent % 2 == 1
            sent += 1
            try:
                connection.request("POST" if post else "GET", "/", body=body if post else None)
                response = connection.getresponse()
                text = response.read().decode(errors="replace")
                failure = None if response.status == 200 else f"{response.status} {text[:200]}"
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{'POST' if post else 'GET'}: {type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                self.done += 1
                if failure is not None:
                    self.failures.append(failure)
        connection.close()

    def stop(self) -> tuple[int, list[str]]:
        """Stop the clients: (requests made, failures)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
        return self.done, self.failures


def get(port: int, path: str = "/") -> tuple[int, str]:
    """One GET on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()

