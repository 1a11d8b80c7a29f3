"""What the fair-share tests of the event worker and of the proxy's processes share (server/accept_share.py):
opening connections until each process holds one, a burst queued while every process is stopped, and
closing a connection only once the server's side is closed too."""

from __future__ import annotations

import os
import signal
import socket
from collections import Counter
from collections.abc import Callable
from typing import cast

from polling import wait_for

# a connection opened and answered, and the pid of the process holding it
Served = Callable[[], tuple[socket.socket, int]]


def close_and_wait(sock: socket.socket) -> None:
    """Close a keep-alive connection once the server closed its side too (its process counts one fewer)."""
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(1) == b""
    sock.close()


def both_accepting(served: Served, pids: set[int]) -> list[socket.socket]:
    """Connections opened one by one until each process holds one: then every process takes its share (the
    one ahead leaves the next ones to the others)."""
    held: list[socket.socket] = []
    seen: set[int] = set()

    def another() -> bool:
        sock, pid = served()
        held.append(sock)
        seen.add(pid)
        return seen == pids

    wait_for(another, timeout=10, interval=0, message="a connection on each process")
    return held


def queued_burst(pids: set[int], connect: Callable[[], socket.socket], count: int) -> list[socket.socket]:
    """`count` connections queued in the kernel while every process is stopped (as a load tester's connects
    are), then the processes continued: before shares, whichever woke first took all of them."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        return [connect() for _ in range(count)]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def keep_one_loaded(on: dict[socket.socket, int], pids: set[int]) -> tuple[int, int, list[socket.socket]]:
    """Of the connections `on` (each with its process), close those of all but the process holding most:
    that busy one, an idle one, and the connections the busy one still holds."""
    counts = Counter(on.values())
    busy = max(pids, key=lambda pid: counts[pid])
    idle = (pids - {busy}).pop()
    for sock, pid in on.items():
        if pid != busy:
            close_and_wait(sock)
    return busy, idle, [sock for sock, pid in on.items() if pid == busy]


def answered_by(socks: list[socket.socket], who: Callable[[socket.socket], int]) -> Counter:
    """How many of `socks` each process answered (`who` asks on one and names its process); all closed."""
    try:
        return Counter(who(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def until_split(ask_all: Callable[[], Counter], pids: set[int], least: int) -> Counter:
    """Ask all clients again and again (`ask_all` says which process each is on now) until every process
    holds at least `least` of them; what the last round saw."""
    def split() -> Counter | None:
        on = ask_all()
        return on if all(on[pid] >= least for pid in pids) else None

    return cast(Counter, wait_for(split, timeout=10, interval=0.05, message="connections handed to the sibling"))
