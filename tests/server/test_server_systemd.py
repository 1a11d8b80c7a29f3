"""systemd and `wsgistack serve`: socket activation (LISTEN_FDS) and Type=notify (NOTIFY_SOCKET), with a
real notify socket and real sockets passed at descriptor 3, LISTEN_PID naming the server's own pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
from polling import wait_for
from rawhttp import Reader, get
from servers import APPS, Server
from systemd import NotifySocket, activated

from wsgistack.server.metrics import listen_queue


class ActivatedServer(Server):
    """`wsgistack serve` started as systemd starts a socket-activated service."""

    def __init__(self, tmp, sockets: list[socket.socket], names: list[str], args: list[str]):
        self.tmp = tmp
        self.error_log = tmp / "error.log"
        self.access_log = tmp / "access.log"
        self.socket_path = None
        self.unused = tmp / "not-bound.sock"
        argv = ["serve", "stop_app:app", "--bind", f"unix:{self.unused}", "--error-log", str(self.error_log),
                *args]
        command, fds = activated(argv, sockets, names)
        self.proc = subprocess.Popen(command, cwd=APPS, pass_fds=fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = 0


def fetch(sock: socket.socket, path: str) -> bytes:
    sock.sendall(get(path))
    with sock:
        response = Reader(sock).one()
    assert response.status == 200
    return response.body


@pytest.mark.parametrize("worker_class", ["sync", "event"])
def test_socket_activation_serves_systemds_sockets(tmp_path, worker_class):
    tcp = socket.create_server(("127.0.0.1", 0))
    unix_path = tmp_path / "activated.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(unix_path))
    unix.listen(16)
    port = tcp.getsockname()[1]
    # a client that came before the server: it waits in the queue systemd's socket already has
    early = socket.create_connection(("127.0.0.1", port), timeout=10)
    early.sendall(get("/"))
    server = ActivatedServer(tmp_path, [tcp, unix], ["web", "local"], ["-w", "1", "-k", worker_class])
    try:
        server.wait_ready()
        assert "socket activation: serving the 2 sockets systemd passed (web, local)" in server.log()
        assert not server.unused.exists()  # --bind was not used
        assert fetch(early, "/") != b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(str(unix_path))
            pid = fetch(client, "/")
        # the variables are for the server alone, not for its children (the workers, what the app runs)
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            assert fetch(socket.create_connection(("127.0.0.1", port), timeout=10), f"/env?name={name}") == b"-"
        assert server.stop() == 0
        # the sockets belong to systemd: the stop left the path alone and put no filter on the TCP socket,
        # so the next start finds what queued meanwhile
        assert unix_path.exists()
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        assert int(pid) > 0
    finally:
        server.stop()
        tcp.close()
        unix.close()


@pytest.mark.parametrize("worker_class", ["sync", "event"])
def test_an_activated_socket_keeps_the_backlog_systemd_gave_it(tmp_path, worker_class):
    # Backlog= is the unit's: no worker listens again with --backlog (uvloop's create_server did, in the
    # event worker, until it accepted on its own loop)
    tcp = socket.create_server(("127.0.0.1", 0), backlog=7)
    server = ActivatedServer(tmp_path, [tcp], ["web"], ["-w", "1", "-k", worker_class, "--backlog", "2048"])
    try:
        server.wait_ready()
        port = tcp.getsockname()[1]
        assert fetch(socket.create_connection(("127.0.0.1", port), timeout=10), "/") != b""  # it accepts
        assert listen_queue(tcp) == (0, 7)
    finally:
        server.stop()
        tcp.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_reloading_stopping(start_server, tmp_path, abstract):
    notify = NotifySocket(tmp_path, abstract)
    try:
        server = start_server("stop_app:app", "-w", "2", "-k", "sync", env=notify.env)
        ready = notify.wait("READY")
        assert notify.messages[ready]["READY"] == "1"
        assert "serving" in notify.messages[ready]["STATUS"]
        # READY=1 comes once a first worker serves: the server answers when systemd says it is up
        with server.connect() as sock:
            assert fetch(sock, "/")
        server.signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING", after=ready + 1)
        message = notify.messages[reloading]
        assert message["RELOADING"] == "1"
        usec = int(message["MONOTONIC_USEC"])
        assert 0 < usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        again = notify.wait("READY", after=reloading + 1)
        assert "generation 1" in notify.messages[again]["STATUS"]
        # READY=1 after a reload means the new generation serves
        wait_for(lambda: server.log().count("booted") >= 4, message="the new generation")
        server.signal(signal.SIGTERM)
        stopping = notify.wait("STOPPING", after=again + 1)
        assert notify.messages[stopping]["STOPPING"] == "1"
        assert server.proc.wait(15) == 0
        assert all("\n" not in m.get("STATUS", "") for m in notify.messages)
    finally:
        notify.close()


def test_listen_pid_of_another_process_is_ignored(start_server, tmp_path):
    """Variables inherited from a parent that was socket-activated are not ours: --bind is used."""
    server = start_server("stop_app:app", "-w", "1", env={"LISTEN_PID": str(os.getppid()), "LISTEN_FDS": "1"})
    assert "socket activation" not in server.log()
    with server.connect() as sock:
        assert fetch(sock, "/env?name=LISTEN_FDS") == b"-"
