"""Slow clients (slowloris) must not starve normal ones in the event and gevent worker classes."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from polling import wait_for
from rawhttp import Reader, get

SLOW_HEADS = 100
SLOW_BODIES = 20


@pytest.mark.parametrize("worker_class", ["event", "gevent"])
def test_slow_clients_do_not_block_normal_ones(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "1", "-k", worker_class, "--threads", "4",
                          "--client-timeout", "60")
    url = f"http://127.0.0.1:{server.port}/hello"
    assert requests.get(url, timeout=10).status_code == 200
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        for i in range(SLOW_HEADS + SLOW_BODIES):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if i < SLOW_HEADS:
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")  # the head never ends
            else:
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc")
            slow.append(sock)

        def trickle():
            # one more byte per connection every 0.2 s, for at most 20 s
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                for index, sock in enumerate(slow):
                    try:
                        sock.sendall(b"X-Slow: 1\r\n" if index < SLOW_HEADS else b"x")
                    except OSError:
                        pass
                stop.wait(0.2)

        trickler = threading.Thread(target=trickle)
        trickler.start()
        wait_for(lambda: len(slow) == SLOW_HEADS + SLOW_BODIES, message="slow connections open")
        times = []
        for _ in range(20):
            started = time.monotonic()
            response = requests.get(url, timeout=5, headers={"Connection": "close"})
            times.append(time.monotonic() - started)
            assert response.status_code == 200
        assert max(times) < 0.5, f"normal requests were held up by slow clients: {max(times):.3f}s"
    finally:
        stop.set()
        for sock in slow:
            sock.close()


def test_gevent_waiting_route_does_not_block_others(start_server):
    """A Flask route waiting on slow I/O (monkey-patched sleep) leaves the one worker free for others."""
    server = start_server("behaviour_app:app", "-w", "1", "-k", "gevent")
    base = f"http://127.0.0.1:{server.port}"
    waiting = [threading.Thread(target=requests.get, args=(f"{base}/sleep?s=3",), kwargs={"timeout": 10})
               for _ in range(20)]
    for thread in waiting:
        thread.start()
    wait_for(lambda: server.log().count("sleep started") == 20, message="20 waiting requests")
    started = time.monotonic()
    assert requests.get(f"{base}/hello", timeout=5).text == "hello\n"
    assert time.monotonic() - started < 0.5
    for thread in waiting:
        thread.join(15)
    assert "gevent monkey-patched" in server.log()


@pytest.mark.parametrize("worker_class", ["event", "thread"])
def test_new_clients_take_the_place_of_idle_connections(start_server, worker_class):
    """At --worker-connections, each new client closes the connection idle the longest (kept alive, or open
    without a byte) instead of being refused or kept waiting; a request in progress is never shed.

    The thread worker's listening socket defers accept until a client's first bytes (Linux), so there the
    silent connections wait in the kernel and connections kept alive fill the worker instead."""
    server = start_server("pid_app:app", "-w", "1", "-k", worker_class, "--worker-connections", "20",
                          "--keep-alive", "60", "--client-timeout", "60")
    kept, silent, sending, newcomers = [], [], [], []
    try:
        for _ in range(3 if worker_class == "event" else 18):  # idle since their answer: the oldest idle ones
            sock = server.connect()
            sock.sendall(get("/"))
            assert Reader(sock).one().status == 200
            kept.append(sock)
        silent += [server.connect() for _ in range(15)]  # open, no byte: idle too
        for _ in range(2):  # a request in progress
            sock = server.connect()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            sending.append(sock)
        for _ in range(4):  # the worker is full: every new client sheds the oldest idle one, in order
            sock = server.connect(timeout=5)
            sock.sendall(get("/"))
            assert Reader(sock).one().status == 200
            newcomers.append(sock)
        idle = kept + silent
        closed: set[socket.socket] = set()

        def shed() -> int:
            for sock in idle:
                if sock not in closed and _closed_now(sock):
                    closed.add(sock)
            return len(closed)

        wait_for(lambda: shed() >= 4, timeout=5, message="four idle connections shed")
        assert shed() == 4, "one idle connection shed per newcomer, no more"
        if worker_class == "event":
            # the loop parks a connection as it writes the answer; the thread worker's main thread parks it
            # a moment after the app thread is done, so there the order among recent ones may differ
            assert kept[0] in closed, "the connection idle the longest goes first"
        assert not any(_closed_now(sock) for sock in newcomers)
        for sock in sending:
            sock.sendall(b"\r\n")
            assert Reader(sock).one().status == 200
    finally:
        for sock in kept + silent + sending + newcomers:
            sock.close()


def _closed_now(sock: socket.socket) -> bool:
    """True when the peer closed the connection (EOF or reset already here), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(10)
