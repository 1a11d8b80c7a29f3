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
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            self.ctx.beat()
            self.sock.settimeout(min(remaining, BEAT_SLICE))
            try:
                return self.sock.recv(RECV_SIZE)
            except TimeoutError:
                continue

    def send_all(self, data: bytes) -> None:
        """Write all of `data`, waiting up to --client-timeout for the peer at each stall; OSError if not."""
        self.sock.settimeout(self.ctx.client_timeout)
        self.sock.sendall(data)

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
