"""Big static files sent by the kernel (os.sendfile), not copied through Python.

uvloop's transports have no sendfile (`loop.sendfile` raises NotImplementedError) and its `add_writer`
refuses a descriptor a transport owns. So, once the transport has written everything it was given (the
head), the file goes out with `os.sendfile` on a duplicate of the connection's socket descriptor, which the
loop lets us watch for writability: a slow client never blocks the loop, it parks this coroutine until its
socket takes bytes again, at most `send_timeout` (as the copying path waits on the transport's drain).

The transport is idle meanwhile (reading is paused for the whole answer, its write buffer is empty), so
the bytes on the wire stay in order. TLS, or a head still in the transport's buffer, take the copying path.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from wsgistack.http.errors import ClientGone

if TYPE_CHECKING:
    from wsgistack.proxy.connection import ClientConnection

# bytes per sendfile call: a fast client on loopback takes megabytes per call, and other connections wait
# meanwhile; between two calls the loop runs once
PIECE = 1 << 20


def usable(client: ClientConnection) -> bool:
    """Whether the file may bypass the transport now: plain TCP or unix socket, nothing queued before it."""
    transport = client.transport
    if client.scheme != "http" or transport is None or client.closed or not hasattr(os, "sendfile"):
        return False
    return transport.get_extra_info("socket") is not None and transport.get_write_buffer_size() == 0


async def send(client: ClientConnection, file: int, offset: int, length: int) -> int:
    """Send `length` bytes of the open file `file` from `offset`; the bytes sent (fewer if the file shrank)."""
    assert client.transport is not None
    socket = os.dup(client.transport.get_extra_info("socket").fileno())
    sent = 0
    try:
        while sent < length:
            try:
                count = os.sendfile(socket, file, offset + sent, min(PIECE, length - sent))
            except BlockingIOError:
                await client.writable(socket)
                continue
            except OSError:  # reset, broken pipe: the client left mid-file
                client.abort()
                raise ClientGone() from None
            if count == 0:
                break  # the file shrank since it was looked at: the connection will be closed
            sent += count
            client.count_sent(count)
            await asyncio.sleep(0)  # let the other connections run between two pieces
            if client.closed:
                raise ClientGone()
    finally:
        os.close(socket)  # before the transport's close, or the connection would outlive it
    return sent
