"""What every connection has, whichever protocol it speaks: the blocking one's socket chores (sync, thread,
gevent) and the loop one's transport chores (event worker), shared by http, uwsgi and FastCGI."""

from __future__ import annotations

import asyncio
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


class LoopConnection(asyncio.Protocol):
    """A connection on the event worker's loop: reading paused, resumed, its body spool dropped, closed once.

    Subclasses set `transport`, `reading`, `closed` and `body` in their __init__ (no call up here: a
    connection is made per accept, and the event worker counts its instructions)."""

    transport: Any
    reading: bool
    closed: bool
    body: Any
    can_write: Any  # a threading.Event: app threads wait on it while the transport's buffer is full
    registry: Any  # the worker's ConnectionRegistry (counts connections still opening)
    fd: int
    info: Any

    def _made(self, transport: asyncio.BaseTransport) -> bool:
        """connection_made's common first steps: the transport, its fd and its description (`info`); False,
        with the transport aborted, when the client reset it before the loop got to it (uvloop then has no
        peer address): nothing to answer, and no descriptor to keep."""
        self.transport = transport
        self.registry.opening -= 1
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno()
        info = connection_info(sock, transport.get_extra_info("peername"))
        if info is None:
            self.closed = True
            transport.abort()
            return False
        self.info = info
        return True

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def _pause_reading(self) -> None:
        if self.reading and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.transport.resume_reading()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
