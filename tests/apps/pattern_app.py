"""A bare WSGI app whose body is a pattern that shows any byte out of place: `/?size=N&piece=K&s=SECONDS`
answers N bytes in pieces of K (an iterable of pieces), after sleeping SECONDS."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

BLOCK = bytes(range(251))  # a prime length: a shifted or repeated run of bytes cannot line up again


def pattern(size: int) -> bytes:
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


def app(environ, start_response):
    query = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    size, piece = int(query.get("size", "13")), int(query.get("piece", "0")) or 1 << 30
    if float(query.get("s", "0")):
        time.sleep(float(query["s"]))
    body = pattern(size)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return [body[start:start + piece] for start in range(0, size, piece)] or [b""]
