"""A retiring worker (--max-requests, HUP, TTOU, graceful stop) stops accepting first, then answers every
connection it accepted (issue 10 item 14).

Each answer it gives says `Connection: close`, so no client sends another request on it; a connection that
is idle when it stops is closed only after a moment for a last request, and only while no request bytes
are on their way; a request in progress is always answered.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from servers import Server
from rawhttp import Reader, closed_by_peer, get

from wsgistack.server.heartbeat import Heartbeat

SEQUENTIAL = {"event": 200, "thread": 500, "sync": 500}  # requests, each on a new connection, each
# answered by a worker that then retires


def fetch_on_new_connection(server: Server) -> tuple[int, str | None, bytes]:
    """One keep-alive GET on a fresh connection, read by its Content-Length, then closed (as curl does)."""
    with server.connect(10) as sock:
        sock.sendall(get("/"))
        response = Reader(sock).one()
    return response.status, response.header("Connection"), response.body


@pytest.mark.parametrize("worker_class", ["event", "thread", "sync"])
def test_max_requests_1_loses_no_connection(start_server, worker_class):
    server = start_server("pid_app:app", "-w", "2", "-k", worker_class, "--max-requests", "1")
    failures, pids = [], []
    deadline = time.monotonic() + 120  # a bound, not an expectation (a few seconds on an idle machine)
    for index in range(SEQUENTIAL[worker_class]):
        assert time.monotonic() < deadline, f"only {index} requests in the time allowed"
        try:
            status, connection, body = fetch_on_new_connection(server)
        except (OSError, AssertionError) as exc:  # reset, refused, or closed without an answer
            failures.append((index, repr(exc)))
            continue
        if status != 200 or connection != "close":
            failures.append((index, status, connection))
        pids.append(int(body))
    assert failures == []
    # every worker answered its one request and accepted nothing more: the next went to another worker
    assert len(set(pids)) == len(pids)
    assert len(re.findall(r"reached 1 requests", server.log())) >= SEQUENTIAL[worker_class] - 2
    # a new worker checks itself before it takes a request: one that took a real request meanwhile retired
    # and failed its health check (503), a boot error that made the master wait a second before the next
    assert "self-check" not in server.log() and "exited with code 3" not in server.log()


def test_heartbeat_is_never_read_half_written():
    """The master reads a worker's heartbeat while the worker writes it (another process, another core):
    every read is a whole timestamp. struct.pack_into zeroed the value before writing it, so on a loaded
    machine the master now and then read 0.0, took a busy sync worker of `--max-requests 1` for silent past
    --timeout and killed it: the client saw its connection closed without an answer (1 in ~10,000)."""
    heartbeat = Heartbeat()
    start = heartbeat.last()
    pid = os.fork()
    if pid == 0:  # the worker's side: beat as fast as it can for a moment
        try:
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                heartbeat.beat()
        finally:
            os._exit(0)
    reads = torn = 0
    while not os.waitpid(pid, os.WNOHANG)[0]:
        reads += 1
        if heartbeat.last() < start:
            torn += 1
    heartbeat.close()
    assert reads > 1000 and torn == 0, f"{torn} of {reads} reads saw a half-written heartbeat"


@pytest.mark.parametrize("worker_class", ["event", "thread"])
def test_keep_alive_ends_with_the_request_that_retires_the_worker(start_server, worker_class):
    server = start_server("pid_app:app", "-w", "1", "-k", worker_class, "--max-requests", "2")
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(get("/"))
        first = reader.one()
        assert first.status == 200 and first.header("Connection") is None
        sock.sendall(get("/"))
        second = reader.one()
        assert second.status == 200 and second.body == first.body
        assert second.header("Connection") == "close"
        assert closed_by_peer(sock)
    status, _, body = fetch_on_new_connection(server)  # the replacement answers
    assert status == 200 and body != first.body


@pytest.mark.parametrize("worker_class", ["event", "thread"])
def test_request_in_progress_on_a_retiring_worker_is_answered(start_server, worker_class):
    """Idle connections are closed a moment after the worker starts retiring; one with part of a request
    is not: it gets its answer (with Connection: close)."""
    server = start_server("pid_app:app", "-w", "1", "-k", worker_class, "--max-requests", "3")
    sending = server.connect()
    reader = Reader(sending)
    sending.sendall(get("/"))
    assert reader.one().status == 200  # request 1 of 3, the connection is kept alive
    idle = server.connect(timeout=15)
    idle.sendall(get("/"))
    assert Reader(idle).one().status == 200  # request 2 of 3, then idle
    sending.sendall(b"GET / HTTP/1.1\r\nHo")  # the next request has begun
    status, connection, _ = fetch_on_new_connection(server)  # request 3 of 3: the worker retires
    assert (status, connection) == (200, "close")
    assert closed_by_peer(idle), "the idle connection is closed once the stop's grace is over"
    sending.sendall(b"st: t\r\n\r\n")
    last = reader.one()
    assert last.status == 200 and last.header("Connection") == "close"
    assert closed_by_peer(sending)
    for sock in (sending, idle):
        sock.close()
