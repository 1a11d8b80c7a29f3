"""Event, tornado and thread workers share the connections (server/accept_share.py): the first to wake no longer takes
all that is queued, which could leave one core serving every keep-alive connection. And a worker whose loop
is stuck, or that the system stopped, does not hold up the connections that its share would have been."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import Counter

import pytest
from balance import answered_by, both_accepting, close_and_wait, keep_one_loaded, queued_burst, until_split
from polling import wait_for

# connections the busy worker holds: it takes none of the burst while its sibling runs, being more than its
# slack ahead of it all along (event, tornado: 32 > 20 + slack 8; thread: 48 > 20 + wide_slack 24)
HELD = {"event": 32, "tornado": 32, "thread": 48}
BURST = 20
# room for a sibling the machine did not run for a while (after accept_share.STUCK the other takes over)
LEAST_SHARE = 16


def ask_pid(sock: socket.socket, query: str = "") -> int:
    """One keep-alive request on `sock`: the pid of the worker that answered."""
    sock.sendall(f"GET /{query} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + content_length(data):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1])


def content_length(data: bytes) -> int:
    match = re.search(rb"(?i)content-length: *(\d+)", data)
    return int(match.group(1)) if match else 0


def served(server) -> tuple[socket.socket, int]:
    """A new connection, once answered, and the worker holding it."""
    sock = server.connect()
    return sock, ask_pid(sock)


def start_two(start_server, *args: str):
    """Two workers, each having accepted (and closed) a connection: both take their shares from now on."""
    server = start_server("balance_app:app", "-w", "2", *args, "--log-level", "info")
    pids = server.wait_workers(2)
    for sock in both_accepting(lambda: served(server), pids):
        close_and_wait(sock)
    return server, pids


@pytest.mark.parametrize("worker_class", ["event", "tornado", "thread"])
def test_new_connections_go_to_the_worker_that_holds_fewer(start_server, worker_class):
    server, pids = start_two(start_server, "-k", worker_class)
    # keep-alive connections on both, then those of one worker closed: `busy` holds HELD or more, `idle` none
    _, idle, held = keep_one_loaded(dict(served(server) for _ in range(2 * HELD[worker_class])), pids)
    assert len(held) >= HELD[worker_class]
    try:
        # the worker far ahead leaves a burst to its sibling
        answered = answered_by(queued_burst(pids, server.connect, BURST), ask_pid)
    finally:
        for sock in held:
            sock.close()
    assert sum(answered.values()) == BURST
    assert answered[idle] >= LEAST_SHARE, answered


def test_a_stuck_worker_does_not_hold_up_new_connections(start_server):
    # --threads 1: the app runs on the loop, so a sleeping request stops that worker from accepting
    server, pids = start_two(start_server, "-k", "event", "--threads", "1")
    sleeper = server.connect()
    try:
        sleeper.sendall(b"GET /?s=3 HTTP/1.1\r\nHost: test\r\n\r\n")
        match = wait_for(lambda: re.search(r"sleep started in (\d+)", server.log()), message="the sleep")
        stuck = int(match.group(1))
        started = time.monotonic()
        answered = answered_by([server.connect() for _ in range(24)], ask_pid)
        took = time.monotonic() - started
    finally:
        sleeper.close()
    # all answered by the other worker, long before the stuck one could have taken its share
    assert answered == Counter({(pids - {stuck}).pop(): 24})
    assert took < 1.5, took


@pytest.mark.parametrize("worker_class", ["event", "tornado", "thread"])
def test_a_stopped_worker_does_not_hold_up_new_connections(start_server, worker_class):
    server, pids = start_two(start_server, "-k", worker_class)
    stopped = min(pids)
    os.kill(stopped, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answered = answered_by([server.connect() for _ in range(24)], ask_pid)
        took = time.monotonic() - started
    finally:
        os.kill(stopped, signal.SIGCONT)
    # all answered by the other worker: past a few, it waits for its stopped sibling, then takes over
    assert answered == Counter({(pids - {stopped}).pop(): 24})
    assert took < 1.5, took


class Client:
    """A keep-alive client as browsers and proxies are: it asks on its connection, and opens a new one when a
    response said `Connection: close`."""

    def __init__(self, server):
        self.server = server
        self.sock: socket.socket | None = None

    def ask(self) -> int:
        """The pid of the worker that answered this request."""
        if self.sock is None:
            self.sock = self.server.connect()
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + content_length(data):
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        if re.search(rb"(?im)^connection: *close", head):
            self.sock.close()
            self.sock = None
        return int(body)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@pytest.mark.parametrize("worker_class", ["event", "tornado", "thread"])
def test_keep_alive_connections_taken_while_a_sibling_could_not_are_handed_over(start_server, worker_class):
    # the case of a cold start: one worker booted and took every connection while its sibling still imported
    # the app; keep-alive connections stay where they land, so one core would serve them all for good
    server, pids = start_two(start_server, "-k", worker_class)
    count = HELD[worker_class]  # far enough ahead of none to hand over (thread: beyond its wide slack)
    stopped = min(pids)
    other = (pids - {stopped}).pop()
    clients = [Client(server) for _ in range(count)]
    try:
        os.kill(stopped, signal.SIGSTOP)
        try:
            first = Counter(client.ask() for client in clients)
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert first == Counter({other: count})

        # the clients go on asking: the loaded worker hands some of its connections over
        until_split(lambda: Counter(client.ask() for client in clients), pids, count // 4)
    finally:
        for client in clients:
            client.close()
