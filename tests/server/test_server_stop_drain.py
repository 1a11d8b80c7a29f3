"""SIGTERM loses nothing (gunicorn #3397): connections already queued in the kernel's listen backlog when
the server is told to stop are accepted and answered, as are requests in flight; then the server exits.

The workers are frozen (SIGSTOP) while the clients connect and send, so every one of those connections is
known to wait in the backlog, not in a worker, when TERM reaches the master; then they are let go (SIGCONT)
and every client must get its whole answer: no reset, no close without a response.
"""

from __future__ import annotations

import os
import re
import signal
import socket

import pytest
from polling import wait_for
from rawhttp import Reader, get
from servers import Server

QUEUED = 8  # connections waiting in the backlog at the TERM


def freeze(pids: set[int], signum: int) -> None:
    """SIGSTOP (waiting until every thread has stopped, so a signal sent next stays pending) or SIGCONT."""
    for pid in pids:
        os.kill(pid, signum)
    if signum == signal.SIGSTOP:
        wait_for(lambda: all(stopped(pid) for pid in pids), message="the workers to stop")


def stopped(pid: int) -> bool:
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


def term_pending(pid: int) -> bool:
    """The worker (stopped) has a TERM waiting for it: the master has told it to stop."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    pending = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    return bool(pending & (1 << (signal.SIGTERM - 1)))


def answer(sock: socket.socket) -> tuple[int, bytes]:
    with sock:
        response = Reader(sock).one()
    return response.status, response.body


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
@pytest.mark.parametrize("worker_class", ["sync", "event", "thread", "gevent", "tornado"])
def test_sigterm_answers_the_backlog_and_the_requests_in_flight(start_server, worker_class, unix):
    server: Server = start_server("stop_app:app", "-w", "2", "-k", worker_class, unix=unix)
    workers = server.wait_workers(2)
    slow = server.connect()
    slow.sendall(get("/slow?s=0.3"))
    wait_for(lambda: "slow request started" in server.log(), message="the slow request to be in flight")
    freeze(workers, signal.SIGSTOP)
    try:
        queued = []
        for index in range(QUEUED):
            sock = server.connect()
            # the first asks the health endpoint: answered after the TERM, it says the worker is draining
            sock.sendall(get("/_wsgistack/health" if index == 0 else "/"))
            queued.append(sock)
        server.signal(signal.SIGTERM)
        wait_for(lambda: all(term_pending(pid) for pid in workers), message="the workers to be sent TERM")
        # the master shut the door before any worker heard of the stop
        assert len(re.findall(r"stopping: \S+: ", server.log())) == 1
        if unix:
            assert not server.socket_path.exists()
        else:
            assert "new connections dropped" in server.log()
    finally:
        freeze(workers, signal.SIGCONT)
    assert answer(slow)[0] == 200
    answers = [answer(sock) for sock in queued]  # a reset raises; a close without an answer fails in Reader
    assert answers[0] == (503, b"draining\n")
    assert [status for status, _ in answers[1:]] == [200] * (QUEUED - 1)
    assert {int(body) for _, body in answers[1:]} <= workers
    assert server.proc.wait(15) == 0


def test_a_socket_renamed_over_our_path_is_left_alone(start_server, tmp_path):
    """In a deploy the next generation may bind beside us and rename its socket over our path: stopping,
    we must not remove its file (we compare the path's device and inode with our socket's)."""
    server = start_server("stop_app:app", "-w", "1", "-k", "sync", unix=True)
    server.wait_workers(1)
    successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with successor:
        successor.bind(str(tmp_path / "next.sock"))
        successor.listen(8)
        os.rename(tmp_path / "next.sock", server.socket_path)
        assert server.stop() == 0
        assert server.socket_path.exists()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(server.socket_path))  # still the successor's
