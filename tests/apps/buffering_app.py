"""A plain WSGI app for the proxy's response-buffering tests: large bodies made fast, and a slow stream.

.../big?size=N&mark=PATH[&accel=no] N bytes in 1 MiB pieces (piece i is all byte i % 251); PATH is created
                                  when the last piece has been handed to the server (the app has finished);
                                  accel=no adds `X-Accel-Buffering: no`
.../drip?release=PATH                'first', then (once PATH exists, at most 20 s) 'last'
anything else                       'ok'
"""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs

MIB = 1 << 20


def piece(index: int, size: int = MIB) -> bytes:
    """The index-th piece of /big (tests rebuild the body the same way to compare it)."""
    return bytes([index % 251]) * size


def app(environ, start_response):
    path = environ["PATH_INFO"].rsplit("/", 1)[-1]  # the last segment: the proxy tests mount it under prefixes
    query = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "big":
        size = int(query.get("size", MIB))
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        if query.get("accel") == "no":
            headers.append(("X-Accel-Buffering", "no"))
        start_response("200 OK", headers)
        return big(size, query.get("mark"))
    if path == "drip":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return drip(query["release"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def big(size: int, mark: str | None):
    index = 0
    while size > 0:
        yield piece(index, min(MIB, size))
        size -= MIB
        index += 1
    if mark:
        with open(mark, "w"):
            pass


def drip(release: str):
    yield b"first\n"
    deadline = time.monotonic() + 20
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield b"last\n"
