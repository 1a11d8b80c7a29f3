"""What every connection on the event worker's loop has, whichever protocol it speaks (http, uwsgi, FastCGI):
its transport chores. Apart from connection.py so that the workers that never run a loop never import
asyncio (with ssl, ~6 MB of RSS in every process)."""

from __future__ import annotations

import asyncio
from typing import Any

from wsgistack.server.context import connection_info


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
