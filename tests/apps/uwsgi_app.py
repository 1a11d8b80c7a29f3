"""The Flask app behind the uwsgi tests (tests/server/test_serve_uwsgi.py): echo, hash, stream, environ.

Every call of the app appends a line to $UWSGI_APP_CALLS (when set), so a test can prove a refused packet never
reached the app. /stream sends its first piece, then waits for the file named in its `gate` query argument, so
a test can read the first piece before the app has finished.
"""

from __future__ import annotations

import hashlib
import os
import time

from flask import Flask, Response, jsonify, request

flask_app = Flask(__name__)
CALLS = os.environ.get("UWSGI_APP_CALLS", "")
ENVIRON_KEYS = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "REMOTE_ADDR",
                "SERVER_PROTOCOL", "CONTENT_LENGTH", "HTTP_HOST", "HTTP_X_TEST", "wsgi.url_scheme")


@flask_app.get("/hello")
def hello():
    """The smallest response."""
    return "hello\n"


@flask_app.post("/echo")
def echo():
    """The body's length and sha256, read through wsgi.input in pieces."""
    digest, size = hashlib.sha256(), 0
    while piece := request.stream.read(65536):
        digest.update(piece)
        size += len(piece)
    return jsonify(length=size, sha256=digest.hexdigest())


@flask_app.get("/stream")
def stream():
    """A first piece at once; `second` once the gate file exists, or `timeout` after 10 s without it (so a
    server that held the first piece back until the app finished shows it)."""
    gate = request.args["gate"]

    def pieces():
        yield b"first\n"
        deadline = time.monotonic() + 10
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                yield b"timeout\n"
                return
            time.sleep(0.01)
        yield b"second\n"
    return Response(pieces(), mimetype="text/plain")


@flask_app.get("/environ")
def environ():
    """What the app sees of the request."""
    return jsonify({key: request.environ.get(key) for key in ENVIRON_KEYS} | {"url": request.url})


def app(environ, start_response):
    """The Flask app, with each call counted in $UWSGI_APP_CALLS."""
    if CALLS:
        with open(CALLS, "a") as calls:
            calls.write(f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}\n")
    return flask_app(environ, start_response)
