"""The benchmark apps, one WSGI callable per case, loaded by every server as `apps:NAME`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flask import Flask, Response, request

HELLO = b"Hello, World!"
# Built once at import so the 1 MiB case measures the server's sending, not the app's allocation.
BIG_BODY = b"x" * (1 << 20)
IO_WAIT_SECONDS = 0.02


def plain(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """A bare WSGI hello: 13 bytes with a Content-Length."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


flask_hello = Flask("flask_hello")


@flask_hello.route("/")
def hello() -> str:
    """Flask's hello."""
    return "Hello, World!"


flask_io = Flask("flask_io")


@flask_io.route("/")
def io_wait() -> str:
    """A request that waits 20 ms, as for a database or an upstream API."""
    # Looked up on the module at call time, so a gevent worker's monkey patching turns it into a yield.
    time.sleep(IO_WAIT_SECONDS)
    return "waited"


flask_big = Flask("flask_big")


@flask_big.route("/")
def big() -> Response:
    """A 1 MiB response body."""
    return Response(BIG_BODY, mimetype="application/octet-stream")


flask_post = Flask("flask_post")


# GET as well, so the harness's readiness probe can use the same request for every app.
@flask_post.route("/", methods=["GET", "POST"])
def post() -> str:
    """Read the whole request body and answer its length."""
    return str(len(request.get_data()))


flask_json = Flask("flask_json")
# About 50 KiB once encoded: 400 records of a few fields each, built once at import.
JSON_DOCUMENT = {"items": [{"id": n, "name": f"item {n}", "price": n * 1.25, "tags": ["a", "b", "c"],
                            "active": n % 2 == 0, "note": "x" * 40} for n in range(400)]}


@flask_json.route("/")
def json_document() -> Response:
    """A CPU-bound route: JSON-encode a 50 KiB document on every request."""
    return flask_json.json.response(JSON_DOCUMENT)


APPS = ("plain", "flask_hello", "flask_io", "flask_big", "flask_post", "flask_json")


def upload(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Read the whole request body and answer its length, in plain WSGI (the proxy's upload case)."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    # Without a Content-Length (a chunked body) read() to the end is only safe when the server says so.
    if length:
        received = len(stream.read(int(length)))
    elif environ.get("wsgi.input_terminated"):
        received = len(stream.read())
    else:
        received = 0
    body = str(received).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
