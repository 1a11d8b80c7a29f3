"""Writes the answer `static.StaticFiles` decided on: the head, then the file's bytes with backpressure.

The decision (which file, which status, which headers) is sans-IO in static.py; this module only does the
writing, and gzips small text files on the fly when the client accepts it and no `.gz` sibling exists.
"""

from __future__ import annotations

import gzip as gzip_format
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsgistack.http.errors import status_line_text
from wsgistack.http.heads import reply_head
from wsgistack.http.parser import RequestHead
from wsgistack.proxy import sendfile
from wsgistack.proxy.compression import gzip_headers, should_compress
from wsgistack.proxy.static_cache import VARYING, ReplyCache

if TYPE_CHECKING:
    from wsgistack.proxy.connection import ClientConnection
    from wsgistack.proxy.routing import Route

CHUNK = 256 * 1024
SMALL_FILE = 64 * 1024  # read whole and written with the head
_GZIP_MAX = 1 << 20  # files compressed on the fly are read whole; bigger ones go out as they are
# whole answers to plain requests for small files (static_cache.py); one per proxy process
replies = ReplyCache()


@dataclass
class Answer:
    """What `start` wrote; `rest` is a big file still to send (by `finish`, with backpressure)."""

    status: int
    sent: int
    keep_alive: bool
    rest: tuple[str, int, int] | None = None  # path, offset, length


def start(client: ClientConnection, route: Route, head: RequestHead, keep_alive: bool) -> Answer:
    """Answer a request from the route's folder: everything, or the head and what `finish` must send."""
    assert route.static is not None
    path = head.target.split("?", 1)[0]
    key = _cache_key(client, route, head, path, keep_alive)
    if key is not None:
        cached = replies.get(key)
        if cached is not None:
            client.write(cached[0])
            return Answer(200, cached[1], keep_alive)
    return _answer(client, route, head, path, keep_alive, key)


def _cache_key(client: ClientConnection, route: Route, head: RequestHead, path: str,
               keep_alive: bool) -> tuple | None:
    """What a plain request's answer is kept under in `replies`; None when the request has a Range or a
    condition (their answers are worked out each time)."""
    accept = None
    for name, value in head.headers:
        name = name.lower()
        if name in VARYING:
            return None
        if name == "accept-encoding":
            accept = value if accept is None else f"{accept}, {value}"
    return (route.static, path, head.method, keep_alive, head.version, accept, client.state.gzip)


def _answer(client: ClientConnection, route: Route, head: RequestHead, path: str, keep_alive: bool,
            key: tuple | None) -> Answer:
    """`start` without the cache: decide, write, and keep a small whole answer under `key`."""
    assert route.static is not None
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
    data = reply_head(status_line_text(reply.status), headers, keep_alive, head.version)
    keep = key is not None and reply.status == 200
    if head.method == "HEAD":
        client.write(data)
        if keep:
            replies.put(key, data, 0)
        return Answer(reply.status, 0, keep_alive)
    if reply_path is None:
        client.write(data + body)
        if keep:
            replies.put(key, data + body, len(body))
        return Answer(reply.status, len(body), keep_alive)
    if reply.length <= SMALL_FILE:
        body = _small_file(reply_path, reply.offset, reply.length, reply.headers)
        client.write(data + body)  # one write for head and file, and no task
        if keep and len(body) == reply.length:  # not a file that shrank under us
            replies.put(key, data + body, len(body))
        return Answer(reply.status, len(body), keep_alive and len(body) == reply.length)
    client.write(data)
    return Answer(reply.status, 0, keep_alive, (reply_path, reply.offset, reply.length))


async def finish(client: ClientConnection, answer: Answer) -> Answer:
    """Send the big file `start` left, waiting whenever the client is full."""
    assert answer.rest is not None
    path, offset, length = answer.rest
    sent = await _send_file(client, path, offset, length)
    return Answer(answer.status, sent, answer.keep_alive and sent == length)


# small files by path, range and ETag, kept CONTENTS_SECONDS like static.py's metadata: a file changed
# in place shows within that time
_contents: dict[tuple, tuple[float, bytes]] = {}
_contents_size = 0
CONTENTS_MAX = 16 << 20
CONTENTS_SECONDS = 1.0


def _small_file(path: str, offset: int, length: int, headers: list[tuple[str, str]]) -> bytes:
    global _contents_size
    etag = next((value for name, value in headers if name == "ETag"), None)
    key = (path, offset, length, etag)
    now = time.monotonic()
    entry = _contents.get(key)
    if entry is not None and entry[0] > now:
        return entry[1]
    body = _read(path, offset, length)
    if _contents_size + len(body) > CONTENTS_MAX:
        _contents.clear()
        _contents_size = 0
    _contents[key] = (now + CONTENTS_SECONDS, body)
    _contents_size += len(body)
    return body


def _read(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


async def _send_file(client: ClientConnection, path: str, offset: int, length: int) -> int:
    """Send `length` bytes of the file from `offset` to the client, waiting whenever it is full: by the
    kernel (sendfile.py) on a plain connection, else copied through the transport."""
    sent = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if sendfile.usable(client):
            return await sendfile.send(client, fd, offset, length)
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
