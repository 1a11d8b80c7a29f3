"""The accept of the event worker and of the proxy's processes: takes connections from the shared listening
sockets on the loop, in batches, and waits a moment when it is far ahead of its siblings
(server/accept_share.py).

Not the loop's own server (loop.create_server): uvloop's accepts until the queue is empty and gives no
way to stop between two connections, so one process took a whole burst. Accepting here costs no more
(measured with close-per-request traffic, where every request is an accept).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from wsgistack.server.accept_share import PAUSE, AcceptPacer, AcceptShare

log = logging.getLogger("wsgistack.server")

BATCH = 64  # connections taken per wake-up at most: the loop's other work gets its turn between batches
# accept() failed (out of file descriptors or memory, or refused): the queue stays readable, so accepting
# again at once would spin
RESOURCE_PAUSE = 0.1
LOG_EVERY = 10.0  # seconds between two warnings about failed accepts


class LoopAcceptor:
    """Accepts on `socks` for as long as it is started, handing each connection to `adopt` with the listening
    socket it came from."""

    def __init__(self, loop: asyncio.AbstractEventLoop, socks: list[socket.socket],
                 adopt: Callable[[socket.socket, socket.socket], None], load: Callable[[], int],
                 share: AcceptShare | None):
        self.loop = loop
        self.socks = socks
        self.adopt = adopt
        self.load = load  # the worker's open connections, counting those on their way in
        self.share = share
        self.accepted = 0
        self.listening = False
        self.stopped = False
        self.resume_handle: asyncio.TimerHandle | None = None
        self.pacer = AcceptPacer(share) if share is not None else None
        # whether a response may keep its connection (not those being handed over): asked per response
        self.keeps_connection: Callable[[], bool] = (
            (lambda: True) if self.pacer is None else self.pacer.keeps_connection)
        self.warned_at = 0.0

    def start(self) -> None:
        """Begin accepting."""
        if self.share is not None:
            self.share.publish(self.load(), self.accepted)
        self._listen()

    def stop(self) -> None:
        """Accept no more (the sockets stay open: the caller may still empty their queues)."""
        self.stopped = True
        self._unlisten()
        if self.resume_handle is not None:
            self.resume_handle.cancel()
            self.resume_handle = None
        if self.share is not None:
            self.share.stop()

    def closed_one(self) -> None:
        """A connection closed: tell the siblings, and end a wait that the lighter load no longer needs
        (short connections end within the wait: without this, the worker would sit idle)."""
        share = self.share
        if share is None or self.stopped:
            return
        load = self.load()
        share.publish(load, self.accepted)
        if self.resume_handle is not None and not share.ahead(load):
            self.resume_handle.cancel()
            self._resume()

    def rebalance(self) -> None:
        """Once a beat: hand keep-alive connections over when far ahead of a sibling (AcceptPacer.rebalance)."""
        if self.pacer is not None and not self.stopped:
            self.pacer.rebalance(self.load())

    def _listen(self) -> None:
        if not self.listening and not self.stopped:
            for sock in self.socks:
                self.loop.add_reader(sock.fileno(), self._readable, sock)
            self.listening = True

    def _unlisten(self) -> None:
        if self.listening:
            for sock in self.socks:
                if sock.fileno() >= 0:
                    self.loop.remove_reader(sock.fileno())
            self.listening = False

    def _readable(self, sock: socket.socket) -> None:
        share, pacer = self.share, self.pacer
        for _ in range(BATCH):
            if pacer is not None and not pacer.may_accept(self.load()):
                self._wait(PAUSE)
                break
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:  # the client gave up while queued
                continue
            except OSError as exc:  # out of descriptors or memory, or the system refused (EPERM, EPROTO)
                self._cannot_accept(exc)
                break
            self.accepted += 1
            self.adopt(conn, sock)
            if share is not None:  # at once: a sibling deciding meanwhile sees this worker as it is
                share.publish(self.load(), self.accepted)

    def _wait(self, delay: float) -> None:
        """Leave the queue alone for `delay` seconds."""
        self._unlisten()
        if self.pacer is not None:
            self.pacer.begin_wait()
        if self.resume_handle is None:
            self.resume_handle = self.loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self.resume_handle = None
        if self.pacer is not None and self.pacer.end_wait():
            self._take_over(self.pacer)
            if self.resume_handle is not None:  # still ahead once those were taken: waits again
                return
        self._listen()

    def _take_over(self, pacer: AcceptPacer) -> None:
        """Take connections now whatever the shares say: the siblings took none for a while."""
        pacer.take_over()
        before = self.accepted
        for sock in self.socks:
            if self.resume_handle is None:
                self._readable(sock)
        pacer.took_over(self.accepted - before)

    def _cannot_accept(self, exc: OSError) -> None:
        """One line now and then, never a traceback; the connections wait in the queue meanwhile."""
        now = time.monotonic()
        if now - self.warned_at > LOG_EVERY:
            self.warned_at = now
            log.warning("cannot accept connections: %s (they wait in the listen queue)",
                        exc.strerror or exc)
        self._wait(RESOURCE_PAUSE)
