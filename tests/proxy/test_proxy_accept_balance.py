"""`workers = N`: the proxy's processes share the listen queue (server/accept_share.py), as the event worker's
do. The loop's own server let the first process to wake take a whole burst of keep-alive connects (measured
with wrk's 64 on 2 workers: splits from 61/9 to 3/67), and a stopped sibling never holds the queue up."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

from balance import answered_by, both_accepting, close_and_wait, keep_one_loaded, queued_burst, until_split
from polling import wait_for
from processes import children_of
from proxies import start_proxy  # noqa: F401 (a fixture)

HELD = 32
BURST = 20
# the process holding HELD takes none of the burst while its sibling runs (32 > 20 + slack 8); this leaves
# room for a sibling the machine did not run for a while (after accept_share.STUCK the other takes over)
LEAST_SHARE = 16
BODY = b"balanced\n"


def config(site: Path) -> str:
    return f"""\
[proxy]
listen = ["127.0.0.1:0"]
workers = 2

[[proxy.routes]]
path = "/"
static = "{site}"
"""


def start(start_proxy, tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "f.txt").write_bytes(BODY)
    proxy = start_proxy(config(site))
    pids = wait_for(lambda: len(children_of(proxy.proc.pid)) == 2 and children_of(proxy.proc.pid),
                    message="two workers")
    wait_for(lambda: proxy.log().count("proxy ready") == 2, message="both workers ready")
    return proxy, pids


def ask(sock: socket.socket) -> bool:
    """One keep-alive request on `sock`, answered whole: whether the connection stays open (the response
    did not say `Connection: close`)."""
    sock.sendall(b"GET /f.txt HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while not data.endswith(BODY):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    return b"\r\nconnection: close\r\n" not in data.split(b"\r\n\r\n", 1)[0].lower() + b"\r\n"


def holder(sock: socket.socket, pids: set[int]) -> int:
    """The worker holding the server side of the client connection `sock` (by its socket's inode)."""
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        # inode 0: a closed socket of an earlier connection between the same ports, in TIME_WAIT after the
        # server closed it (as one handed over to a sibling is)
        if (local_port, remote_port) == (server_port, client_port) and fields[9] != "0":
            inode = fields[9]
    assert inode is not None, "the server side of the connection"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue  # closed meanwhile
    raise AssertionError(f"no worker holds socket {inode}")


def answered_holder(sock: socket.socket, pids: set[int]) -> int:
    """One request on `sock`, answered; the worker holding the connection."""
    ask(sock)
    return holder(sock, pids)


def served(proxy, pids: set[int]) -> tuple[socket.socket, int]:
    """A new connection, once answered, and the worker holding it."""
    sock = proxy.connect()
    return sock, answered_holder(sock, pids)


def test_new_connections_go_to_the_worker_that_holds_fewer(start_proxy, tmp_path):
    proxy, pids = start(start_proxy, tmp_path)
    for sock in both_accepting(lambda: served(proxy, pids), pids):
        close_and_wait(sock)
    # keep-alive connections on both, then those of one worker closed: `busy` holds HELD or more, `idle` none
    _, idle, held = keep_one_loaded(dict(served(proxy, pids) for _ in range(2 * HELD)), pids)
    assert len(held) >= HELD
    try:
        # the worker far ahead leaves a burst to the other
        burst = queued_burst(pids, proxy.connect, BURST)
        answered = answered_by(burst, lambda sock: answered_holder(sock, pids))
    finally:
        for sock in held:
            sock.close()
    assert sum(answered.values()) == BURST
    assert answered[idle] >= LEAST_SHARE, answered


def test_a_stopped_worker_does_not_hold_up_new_connections(start_proxy, tmp_path):
    proxy, pids = start(start_proxy, tmp_path)
    for sock in both_accepting(lambda: served(proxy, pids), pids):
        close_and_wait(sock)
    stopped = min(pids)
    os.kill(stopped, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answered = answered_by([proxy.connect() for _ in range(24)], lambda sock: answered_holder(sock, pids))
        took = time.monotonic() - started
    finally:
        os.kill(stopped, signal.SIGCONT)
    # all answered by the other worker: the shares never wait long on a sibling that takes nothing
    assert answered == Counter({(pids - {stopped}).pop(): 24})
    assert took < 1.5, took


def test_keep_alive_connections_taken_while_a_sibling_could_not_are_handed_over(start_proxy, tmp_path):
    # one worker took every connection while the other could not (stopped here; at a start, still booting):
    # keep-alive clients stay where they land, so it hands some over by closing them after a response
    proxy, pids = start(start_proxy, tmp_path)
    for sock in both_accepting(lambda: served(proxy, pids), pids):
        close_and_wait(sock)
    stopped = min(pids)
    other = (pids - {stopped}).pop()
    os.kill(stopped, signal.SIGSTOP)
    try:
        socks = [proxy.connect() for _ in range(HELD)]
        first = Counter(answered_holder(sock, pids) for sock in socks)
    finally:
        os.kill(stopped, signal.SIGCONT)
    try:
        assert first == Counter({other: HELD})

        def ask_all() -> Counter:
            """Each client asks again, on a new connection where it was told to close (as clients do)."""
            for at in range(len(socks)):
                while not ask(socks[at]):  # until a response keeps the connection: its holder has it open
                    socks[at].close()
                    socks[at] = proxy.connect()
            return Counter(holder(sock, pids) for sock in socks)

        until_split(ask_all, pids, HELD // 4)
    finally:
        for sock in socks:
            sock.close()
