"""What every blocking connection has, whichever protocol it speaks (http, uwsgi, FastCGI): its socket chores
in the sync, thread and gevent workers. The event worker's counterpart is loop_connection.py."""

from __future__ import annotations

import socket
import time
from typing import Any

from wsgistack.server.context import ServeContext, connection_info

RECV_SIZE = 65536
BEAT_SLICE = 1.0  # longest wait on a peer between two heartbeats


class BlockingConnection:
    """An accepted connection served with blocking calls: its socket, context, peer and open/closed state."""

    def __init__(self, sock: socket.socket, peer: Any, ctx: ServeContext):
        self.sock = sock
        # A socket in blocking mode (the sync and thread workers'): each read and write is first tried with
        # MSG_DONTWAIT, one system call, and waits with a timeout only when the peer is not ready. A socket
        # with a timeout costs a poll() before every call and an ioctl() at every settimeout. gevent's
        # sockets are given a timeout by their worker: theirs try first anyway, and would not heed the flag.
        self.try_first = sock.gettimeout() is None
        self.ctx = ctx
        self.info = connection_info(sock, peer)
        self.last_active = time.monotonic()
        self.closed = False
        if ctx.metrics is not None:
            ctx.metrics.connection_opened()

    def fileno(self) -> int:
        """The socket's descriptor (for selectors)."""
        return self.sock.fileno()

    def recv_once(self, deadline: float) -> bytes:
        """Read once (b"" at the end of the stream); TimeoutError once `deadline` passed. Waits in slices, so
        that the sync worker's heartbeat goes on while a peer is slow."""
        sock = self.sock
        if self.try_first:
            self.ctx.beat()  # at every read, as below: a long upload that keeps coming is no stuck worker
            try:
                return sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out")
                self.ctx.beat()
                sock.settimeout(min(remaining, BEAT_SLICE))
                try:
                    return sock.recv(RECV_SIZE)
                except TimeoutError:
                    continue
        finally:
            if self.try_first:
                sock.settimeout(None)

    def send_all(self, data: bytes) -> None:
        """Write all of `data`, waiting up to --client-timeout for the peer at each stall; OSError if not."""
        sock = self.sock
        if self.try_first:
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        sock.settimeout(self.ctx.client_timeout)
        try:
            sock.sendall(data)
        finally:
            if self.try_first:
                sock.settimeout(None)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if not self.closed:
            self.closed = True
            if self.ctx.metrics is not None:
                self.ctx.metrics.connection_closed()
            try:
                self.sock.close()
            except OSError:
                pass
