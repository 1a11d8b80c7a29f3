"""Responses of the event worker's threads, whatever their size and however the client reads: small ones
joined to their head, big ones handed to the transport as they are (server/protocols/http_event.py). The bytes
arrive whole and in order, and a client that goes away mid-request leaves nothing behind."""

from __future__ import annotations

import os
import socket
import struct
import time

from polling import wait_for
from processes import children_of

BLOCK = bytes(range(251))


def pattern(size: int) -> bytes:
    """What tests/apps/pattern_app.py answers for `size`, written out here on its own."""
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


THREADED = ("-k", "event", "-w", "1", "--threads", "4")  # pinned: every call runs in a thread


class Responses:
    """Reads responses with a Content-Length off one connection, keeping what belongs to the next one."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def _more(self, what: str) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"closed while reading {what}"
        self.buffer += chunk

    def next(self) -> tuple[bytes, bytes]:
        """(head, body) of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            self._more("a head")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(self.buffer) < length:
            self._more(f"a body of {length} bytes")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """The one response on a connection."""
    return Responses(sock).next()


def test_pipelined_responses_of_every_size_arrive_whole_and_in_order(start_server):
    server = start_server("pattern_app:app", *THREADED)
    sizes = [13, 200_000, 5, 3 << 20, 0, 70_000]  # small ones, and some past what a socket takes at once
    with server.connect(timeout=20) as sock:
        sock.sendall(b"".join(f"GET /?size={size}&piece=65536 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                              for size in sizes))
        responses = Responses(sock)
        for size in sizes:
            head, body = responses.next()
            assert head.startswith(b"HTTP/1.1 200")
            assert body == pattern(size), f"the {size}-byte body came back altered"


def test_a_reader_that_pauses_still_gets_every_byte_in_order(start_server):
    server = start_server("pattern_app:app", *THREADED)
    size = 16 << 20  # more than the socket buffers on both sides take: the rest must wait on the loop
    with server.connect(timeout=20) as sock:
        sock.sendall(f"GET /?size={size}&piece=300000 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert sock.recv(1, socket.MSG_PEEK)  # the answer has begun
        time.sleep(0.2)  # the client stops reading a while: that pause is what this test is about
        responses = Responses(sock)
        assert responses.next()[1] == pattern(size)
        sock.sendall(b"GET /?size=1000 HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection goes on
        assert responses.next()[1] == pattern(1000)


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_clients_that_reset_mid_request_leave_no_descriptor_behind(start_server):
    server = start_server("pattern_app:app", *THREADED)
    [worker] = server.wait_workers(1)
    baseline = _descriptors(worker)  # listeners, pipes, logs: no connection yet
    for _ in range(8):  # each resets while its call sleeps: its answer meets a dead socket
        sock = server.connect()
        sock.sendall(b"GET /?size=100&s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_for(lambda: _descriptors(worker) <= baseline, timeout=10,
             message=f"the worker's descriptors back to {baseline}")
    with server.connect() as sock:
        sock.sendall(b"GET /?size=50 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _read_response(sock)[1] == pattern(50)
    assert children_of(server.pid) == {worker}
