"""What systemd gives a service, made real for the tests: a notify socket to read (Type=notify) and
sockets passed from descriptor 3 on with LISTEN_PID naming the service's own pid (socket activation)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from polling import wait_for


class NotifySocket:
    """A real AF_UNIX datagram socket, as systemd's: at a path in the test's folder, or in the abstract
    namespace; `env` is what the service is started with."""

    def __init__(self, folder: Path, abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"wsgistack-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.env = {"NOTIFY_SOCKET": "@" + name}
        else:
            path = folder / "notify.sock"
            self.sock.bind(str(path))
            self.env = {"NOTIFY_SOCKET": str(path)}
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def wait(self, key: str, after: int = 0, timeout: float = 20.0) -> int:
        """Wait for a message with `key` (e.g. READY) among those from index `after` on; its index."""
        def seen():
            self._read()
            return next((i + 1 for i, m in enumerate(self.messages) if i >= after and key in m), None)
        return wait_for(seen, timeout, message=f"{key} on the notify socket") - 1  # type: ignore[operator]

    def close(self) -> None:
        self.sock.close()


def activated(argv: list[str], sockets: list[socket.socket],
              names: list[str] | None = None) -> tuple[list[str], tuple]:
    """A command line that runs `python -m wsgistack ARGV` as systemd would with these sockets: at
    descriptors 3, 4, ..., with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set to the pid that execs it.
    Returns the command and the pass_fds for Popen."""
    fds = [sock.fileno() for sock in sockets]
    # the sockets' own numbers may lie in 3..3+n: move them above first, then into place
    script = (
        "import fcntl, os, sys\n"
        "fds = [int(fd) for fd in sys.argv[1].split(',')]\n"
        "high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]\n"
        "for fd in fds: os.close(fd)\n"
        "for index, fd in enumerate(high): os.dup2(fd, 3 + index); os.close(fd)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)))\n"
        "if sys.argv[2]: os.environ['LISTEN_FDNAMES'] = sys.argv[2]\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'wsgistack', *sys.argv[3:]])\n"
    )
    command = [sys.executable, "-c", script, ",".join(map(str, fds)), ":".join(names or []), *argv]
    return command, tuple(fds)
