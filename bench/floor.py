"""The floor of the 20 ms case: a server with no WSGI and no app, only a loop timer per request.

    python bench/floor.py PORT [WORKERS]

It answers every request head (no body is read: wrk sends none) after apps.IO_WAIT_SECONDS on a uvloop
timer, in WORKERS processes sharing one listening socket. Nothing a WSGI server could do costs less, so
its req/s in the same run is what this machine allows the 20 ms case: the wake-ups of an idle VM and wrk's
share of the cores are in it, the app's work is not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import uvloop
from apps import IO_WAIT_SECONDS

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nwaited"


class Waiter(asyncio.Protocol):
    """One client connection: a timer per request head, the answers in order."""

    def __init__(self) -> None:
        self.buffer = b""
        self.timers: list[asyncio.TimerHandle] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) != -1:
            self.buffer = self.buffer[end + 4:]
            self.timers.append(self.loop.call_later(IO_WAIT_SECONDS, self._answer))

    def _answer(self) -> None:
        self.timers.pop(0)
        self.transport.write(ANSWER)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()


async def serve(listener: socket.socket) -> None:
    server = await asyncio.get_running_loop().create_server(Waiter, sock=listener)
    await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            uvloop.run(serve(listener))
            os._exit(0)
        children.append(pid)
    listener.close()
    try:
        for _ in children:
            os.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
