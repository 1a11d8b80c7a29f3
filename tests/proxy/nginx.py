"""A real nginx for the proxy tests to compare `wsgistack proxy` against.

Tests in tests/proxy import it as `from nginx import Nginx, nginx_fixture` (pytest puts a test file's folder on
sys.path, as it does for tests/server/rawhttp.py). The test writes only the inside of `http { }`; everything
nginx would otherwise take from /etc/nginx or /var (pid, logs, temp files, conf.d, sites-enabled) stays in
the test's folder, so any number of these run side by side.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import children_of, pid_alive

from wsgistack.process import die_with_parent

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin")
TEMP_PATHS = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
PORT_TAKEN = "(98: Address already in use)"

def nginx_available() -> bool:
    """True when an nginx binary is installed."""
    return NGINX is not None


def require_nginx() -> None:
    """Skip the test when nginx is missing; fail instead under CI (CI set), where it must be installed."""
    if nginx_available():
        return
    if os.environ.get("CI"):
        pytest.fail("nginx is not installed, and CI must run the nginx comparisons")
    pytest.skip("nginx is not installed")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (nginx binds it itself, so this can race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 10.0, message: str = "condition") -> object:
    """Poll until condition() is truthy (and return it); fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)
    return value


def _terminate_with_parent() -> None:
    """In nginx's master before exec: SIGTERM (nginx's fast stop, workers included) if pytest dies."""
    die_with_parent(signal.SIGTERM)


class Nginx:
    """A real nginx serving a config the test wrote, on 127.0.0.1 and a free port."""

    def __init__(self, tmp: Path, http_block: str, **values: object):
        """`http_block` is the body of `http { }`. `{port}`, `{tmp}` and `{name}` for each keyword in
        `values` are replaced literally (not str.format, so nginx's own braces stay as written); a server
        block should `listen 127.0.0.1:{port};`."""
        self.tmp = Path(tmp)
        self.http_block = http_block
        self.values = values
        self.conf = self.tmp / "nginx.conf"
        self.pid_file = self.tmp / "nginx.pid"
        self.error_log_path = self.tmp / "error.log"
        self.access_log_path = self.tmp / "access.log"
        self.stderr_path = self.tmp / "nginx.stderr"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    # --- configuration --------------------------------------------------------------------------------

    def render(self) -> str:
        """The whole nginx.conf for the current port."""
        block = self.http_block
        for key, value in {"port": self.port, "tmp": self.tmp, **self.values}.items():
            block = block.replace("{" + key + "}", str(value))
        # As root, workers would run as nobody and could not enter pytest's 0700 tmp folder (403 on every
        # file, failed temp files); unprivileged, nginx ignores `user` with a warning, so it is left out.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp_paths = "".join(f"    {kind}_temp_path {self.tmp}/{kind}_temp;\n" for kind in TEMP_PATHS)
        return (f"{user}"
                "master_process on;\n"
                "worker_processes 1;\n"
                f"pid {self.pid_file};\n"
                f"error_log {self.error_log_path} info;\n"
                "events { worker_connections 1024; }\n"
                "http {\n"
                "    include /etc/nginx/mime.types;\n"
                "    default_type application/octet-stream;\n"
                f"    access_log {self.access_log_path};\n"
                f"{temp_paths}"
                f"{block}\n"
                "}\n")

    def _command(self, *extra: str) -> list[str]:
        # -e: errors before the config's error_log is open go to the test's folder too
        return [NGINX, "-p", f"{self.tmp}/", "-c", str(self.conf), "-e", str(self.error_log_path), *extra]

    def check(self) -> None:
        """`nginx -t` on the written config; a config error fails with nginx's own message."""
        result = subprocess.run(self._command("-t", "-q"), capture_output=True, text=True, timeout=30,
                                check=False)
        if result.returncode != 0:
            raise AssertionError(f"nginx -t refused {self.conf}:\n{result.stderr.strip()}\n"
                                 f"--- config ---\n{self.conf.read_text()}")

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> Nginx:
        """Write the config, check it, run nginx in the foreground and wait until it accepts connections."""
        assert NGINX is not None, "nginx is not installed (call require_nginx() first)"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            self.port = free_port()
            self.conf.write_text(self.render())
            self.check()
            log_start = self._error_log_size()
            if self._run(timeout, log_start):
                return self
            failure = self.error_log()[log_start:] + self._stderr()  # stderr: this attempt's only
            if PORT_TAKEN not in failure or attempt == 4:
                raise AssertionError(f"nginx exited with {self.proc.returncode} on start:\n{failure}")
        raise AssertionError("unreachable")

    def _run(self, timeout: float, log_start: int) -> bool:
        """Start nginx; True once it serves, False if it exited or lost its port (the caller reads why)."""
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(self._command("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                         stdout=stderr, stderr=stderr, start_new_session=True,
                                         # one C call resolved at import: safe even if pytest has threads
                                         preexec_fn=_terminate_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if PORT_TAKEN in self.error_log()[log_start:]:
                # nginx itself would retry bind() 5 times, 500 ms apart, before giving up
                self.proc.kill()
                self.proc.wait()
                return False
            # the pid file is written after every listen socket is bound, so a connection that succeeds
            # then reaches this nginx and not whoever else holds the port. The kernel completes it on the
            # master's socket before the workers are forked: wait for them too (a clean-clone CI run once
            # found none right after start, and a reload taken then would count the first one as new)
            if self._pid_from_file() == self.proc.pid and self._accepts() and self.workers():
                return True
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"nginx did not accept connections on port {self.port} within {timeout}s:\n"
                             f"{self.error_log()}{self._stderr()}")

    def reload(self, http_block: str | None = None, timeout: float = 10, old_workers_exit: bool = True) -> None:
        """SIGHUP, optionally with a new `http { }` body first; waits until a new worker runs and, unless
        `old_workers_exit` is False (a request held in flight across the reload), the old ones have exited:
        until then an old worker may still accept a connection and answer with the old config.

        nginx keeps the old config when the new one is bad: that fails here with nginx's message."""
        assert self.proc is not None and self.proc.poll() is None, "nginx is not running"
        if http_block is not None:
            previous = self.http_block
            self.http_block = http_block
            self.conf.write_text(self.render())
            try:
                self.check()
            except AssertionError:
                self.http_block = previous
                self.conf.write_text(self.render())
                raise
        old_workers = self.workers()
        log_start = self._error_log_size()
        self.proc.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            if "[emerg]" in self.error_log()[log_start:]:
                raise AssertionError(f"nginx refused the reload:\n{self.error_log()[log_start:]}")
            workers = self.workers()
            return bool(workers - old_workers) and not (old_workers_exit and workers & old_workers)
        wait_until(reloaded, timeout, "nginx's workers to change after SIGHUP")

    def stop(self, timeout: float = 10) -> int | None:
        """SIGQUIT (finish requests in flight, then exit), SIGKILL to the whole group at the deadline.
        Always waits for the master; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the workers go too
                self.proc.wait(5)
        try:
            # a master that died on its own (or was killed) can leave workers behind in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.returncode

    # --- what tests look at ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The master's pid."""
        assert self.proc is not None, "nginx was not started"
        return self.proc.pid

    def workers(self) -> set[int]:
        """The master's live child processes (workers, and cache processes if configured)."""
        return {pid for pid in children_of(self.pid) if pid_alive(pid)}

    def url(self, path: str = "/") -> str:
        """http://127.0.0.1:PORT/path"""
        return f"http://127.0.0.1:{self.port}{path}"

    def access_lines(self) -> list[str]:
        """The access log's lines so far (nginx writes each line when the request ends)."""
        try:
            return self.access_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def error_log(self) -> str:
        """The error log so far."""
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _error_log_size(self) -> int:
        return len(self.error_log())

    def _stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True


@pytest.fixture(name="start_nginx")
def nginx_fixture(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """The `start_nginx` fixture: `start_nginx(http_block, **values)` starts one more nginx; skipped
    without nginx; all are stopped at the end.

    A test module imports it (`from nginx import nginx_fixture  # noqa: F401`) and asks for `start_nginx`;
    the different names keep the import from being shadowed by the test's argument."""
    require_nginx()
    started: list[Nginx] = []

    def start(http_block: str, **values: object) -> Nginx:
        nginx = Nginx(tmp_path / f"nginx{len(started)}", http_block, **values)
        started.append(nginx)
        return nginx.start()

    yield start
    for nginx in started:
        nginx.stop()
