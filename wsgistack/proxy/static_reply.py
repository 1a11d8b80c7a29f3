"""Writes the answer `static.StaticFiles` decided on: the head, then the file's bytes with backpressure.

The decision (which file, which status, which headers) is sans-IO in static.py; this module only does the
writing, and gzips small text files on the fly when the client accepts it and no `.gz` sibling exists.
"""

from __future__ import annotations

import gzip as gzip_format
import os
from typing import TYPE_CHECKING

from wsgistack.http.dates import http_date
from wsgistack.http.errors import status_line_text
from wsgistack.http.parser import RequestHead
from wsgistack.http.response import SERVER_NAME
from wsgistack.proxy.compression import gzip_headers, should_compress

if TYPE_CHECKING:
    from wsgistack.proxy.connection import ClientConnection
    from wsgistack.proxy.routing import Route

CHUNK = 256 * 1024
_GZIP_MAX = 1 << 20  # files compressed on the fly are read whole; bigger ones go out as they are


async def send(client: ClientConnection, route: Route, head: RequestHead, keep_alive: bool) -> tuple[int, int, bool]:
    """Answer a request from the route's folder; returns (status, body bytes sent, keep-alive)."""
    assert route.static is not None
    path = head.target.split("?", 1)[0]
    relative = path[len(route.path):] if path.startswith(route.path) else ""
    reply = route.static.reply(head.method, relative, head.headers)
    headers = list(reply.headers)
    body = reply.body
    gzip = client.state.gzip
    if (reply.path is not None and reply.status == 200 and reply.length <= _GZIP_MAX
            and should_compress(gzip, head.method, 200, head.headers, headers)):
        with open(reply.path, "rb") as file:
            body = gzip_format.compress(file.read(), compresslevel=gzip.level, mtime=0)
        headers = gzip_headers(headers)
        headers.append(("Content-Length", str(len(body))))
        reply_path = None
    else:
        reply_path = reply.path
    lines = [f"HTTP/1.1 {status_line_text(reply.status)}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    lines += [f"Date: {http_date()}\r\n", f"Server: {SERVER_NAME}\r\n"]
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif head.version == "1.0":
        lines.append("Connection: keep-alive\r\n")
    data = ("".join(lines) + "\r\n").encode("latin-1")
    if head.method == "HEAD":
        client.write(data)
        return reply.status, 0, keep_alive
    if reply_path is None:
        client.write(data + body)
        return reply.status, len(body), keep_alive
    client.write(data)
    sent = await _send_file(client, reply_path, reply.offset, reply.length)
    return reply.status, sent, keep_alive and sent == reply.length


async def _send_file(client: ClientConnection, path: str, offset: int, length: int) -> int:
    """Copy `length` bytes of the file from `offset` to the client, waiting whenever it is full."""
    sent = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while sent < length:
            piece = os.pread(fd, min(CHUNK, length - sent), offset + sent)
            if not piece:
                break  # the file shrank since it was looked at: the connection will be closed
            client.write(piece)
            sent += len(piece)
            if client.paused:
                await client.drain()
    finally:
        os.close(fd)
    return sent
