"""Starting, probing, measuring and stopping one server process tree, with nothing ever left behind."""

from __future__ import annotations

import atexit
import http.client
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from servers import BENCH_DIR, Server

log = logging.getLogger("bench.procs")

READY_SECONDS = 20.0
STOP_SECONDS = 10.0

_running: set[ServerProcess] = set()


class StartFailed(Exception):
    """The server exited before serving: it (or this worker class) is not available here."""


class NotReady(Exception):
    """The server runs but did not answer 200 in time."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the kernel picks it; the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One contender serving one app, in its own session so the whole tree can be signalled at once."""

    def __init__(self, server: Server, app: str, threads: int, log_path: Path) -> None:
        self.server = server
        self.app = app
        self.port = free_port()
        self.argv = server.argv(app, self.port, threads)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            try:
                self.proc = subprocess.Popen(
                    self.argv, cwd=BENCH_DIR, env=server.env(), stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                # A peer that did not install (uWSGI when it does not build) is unavailable, not a crash.
                raise StartFailed(f"cannot run {self.argv[0]}: {exc.strerror}") from None
        _running.add(self)
        log.debug("started %s: %s", server.name, " ".join(self.argv))

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        """Return once GET / answers 200; StartFailed if the process exits first, NotReady at the deadline."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartFailed(f"exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                finally:
                    conn.close()
                if response.status == 200:
                    return
                last = f"GET / answered {response.status}"
            except OSError as exc:
                last = f"GET /: {exc!r}"
            time.sleep(0.1)
        raise NotReady(f"not ready after {timeout:.0f} s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        """The last lines the server wrote, for a one-line reason."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])[:400]

    def rss_kib(self) -> int:
        """VmRSS summed over the process and all its descendants (shared pages count once per process)."""
        return sum(vmrss_kib(pid) for pid in process_tree(self.proc.pid))

    def process_count(self) -> int:
        """How many processes the server runs now."""
        return len(process_tree(self.proc.pid))

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after STOP_SECONDS; leaves no process behind."""
        _running.discard(self)
        signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killing it", self.server.name, STOP_SECONDS)
        # Workers can outlive a master that exited first, so the group is killed either way.
        signal_group(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=STOP_SECONDS)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TreeProcess(ServerProcess):
    """A server whose children run in sessions of their own (`wsgistack up`'s supervisor puts each program in
    its own): signalling the group reaches the supervisor only, which stops them; whatever of the tree
    outlives it (a supervisor that had to be killed) is killed by pid."""

    def stop(self) -> None:
        tree = process_tree(self.proc.pid)[1:] if self.proc.poll() is None else []
        super().stop()
        left = [pid for pid in tree if _is_ours(pid, self.argv[0])]
        if left:
            log.warning("%s left %d process(es) behind: killing them", self.server.name, len(left))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _is_ours(pid: int, program: str) -> bool:
    """Whether a pid still runs something of the tree we started (its command names wsgistack or `program`),
    so a pid reused meanwhile is not killed."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"wsgistack" in command or program.encode() in command


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def process_tree(root: int) -> list[int]:
    """The pid and every descendant's, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def vmrss_kib(pid: int) -> int:
    """A process's resident set in KiB; 0 if it is gone (or a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@atexit.register
def stop_all() -> None:
    """Stop every server still running when the harness exits, however it exits."""
    for server_process in list(_running):
        server_process.stop()
