"""systemd and `wsgistack proxy`: socket activation (LISTEN_FDS) and Type=notify (NOTIFY_SOCKET), in one
process and with `workers = N`, with a real notify socket and a real socket passed at descriptor 3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
import requests
from processes import LogFiles
from systemd import NotifySocket, activated

from wsgistack.server.metrics import listen_queue


def fetch(port: int, path: str) -> tuple[int, bytes]:
    response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    return response.status_code, response.content


class ActivatedProxy(LogFiles):
    """`wsgistack proxy --static /=SITE` started as a socket-activated systemd service."""

    def __init__(self, folder, sockets: list[socket.socket], args: list[str], env: dict[str, str]):
        self.error_log = folder / "proxy-error.log"
        self.access_log = folder / "access.log"
        site = folder / "site"
        site.mkdir()
        (site / "index.txt").write_text("activated\n")
        argv = ["proxy", "--static", f"/={site}", "--error-log", str(self.error_log), *args]
        command, fds = activated(argv, sockets)
        self.proc = subprocess.Popen(command, cwd=folder, pass_fds=fds, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.proc.returncode


@pytest.mark.parametrize("workers", [1, 2])
def test_proxy_socket_activation_and_notify(tmp_path, workers):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    notify = NotifySocket(tmp_path)
    proxy = ActivatedProxy(tmp_path, [listener], ["--workers", str(workers)], dict(os.environ, **notify.env))
    try:
        ready = notify.wait("READY")
        assert notify.messages[ready]["READY"] == "1" and notify.messages[ready]["STATUS"]
        assert "socket activation: serving the 1 socket systemd passed" in proxy.log()
        assert "8080" not in proxy.log()  # the default listen address was not bound
        assert fetch(port, "/index.txt") == (200, b"activated\n")
        proxy.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING", after=ready + 1)
        assert int(notify.messages[reloading]["MONOTONIC_USEC"]) > 0
        notify.wait("READY", after=reloading + 1)
        proxy.proc.send_signal(signal.SIGTERM)
        notify.wait("STOPPING", after=reloading + 1)
        assert proxy.proc.wait(15) == 0
        # systemd's socket is still open and listening: the proxy closed its copy only
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    finally:
        proxy.stop()
        notify.close()
        listener.close()


def test_proxy_refuses_a_socket_count_that_does_not_match_listen(tmp_path):
    first, second = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    proxy = ActivatedProxy(tmp_path, [first, second], [], dict(os.environ))
    try:
        assert proxy.proc.wait(15) == 2
        message = proxy.proc.stderr.read().decode()
        assert "systemd passed 2 socket(s) but proxy.listen has 1 entry" in message
    finally:
        proxy.stop()
        first.close()
        second.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_an_activated_socket_keeps_the_backlog_systemd_gave_it(tmp_path, workers):
    # Backlog= is the unit's: the proxy never listens again (uvloop's create_server did, with 2048)
    listener = socket.create_server(("127.0.0.1", 0), backlog=7)
    port = listener.getsockname()[1]
    notify = NotifySocket(tmp_path)
    proxy = ActivatedProxy(tmp_path, [listener], ["--workers", str(workers)], dict(os.environ, **notify.env))
    try:
        notify.wait("READY")
        assert fetch(port, "/index.txt") == (200, b"activated\n")
        assert listen_queue(listener) == (0, 7)
    finally:
        proxy.stop()
        notify.close()
        listener.close()
