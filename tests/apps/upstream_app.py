"""The Flask app the proxy tests put behind `wsgistack proxy` and nginx: one route per thing a proxy passes.

UPSTREAM_NAME names the instance (so a test sees which upstream answered); UPSTREAM_HEALTH_FILE, when that
file exists, makes /healthz fail.
"""

from __future__ import annotations

import hashlib
import os
import time

from flask import Flask, Response, jsonify, request

app = Flask(__name__)

PIECE = 64 * 1024
PATTERN = bytes(range(256)) * (PIECE // 256)  # 64 KiB; tests rebuild it the same way to compare bodies
TEXT_LINE = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"


def name() -> str:
    """This instance's name."""
    return os.environ.get("UPSTREAM_NAME", "upstream")


def pattern(size: int) -> bytes:
    """The first `size` bytes of PATTERN repeated (bytes(range(256)) over and over)."""
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def size_arg(default: int) -> int:
    """The ?size= query argument."""
    return int(request.args.get("size", default))


# --- who answered, and what arrived -------------------------------------------------------------------


@app.get("/")
@app.get("/name")
def upstream_name():
    """The instance's name, so tests see which upstream a request reached."""
    return Response(name(), mimetype="text/plain")


@app.route("/echo", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def echo():
    """The request as this app saw it (after the proxy): method, path, query, headers, body size, peer."""
    return jsonify(method=request.method, path=request.path,
                   query=request.query_string.decode("latin-1"), headers=dict(request.headers),
                   body_length=len(request.get_data()), remote_addr=request.remote_addr)


@app.route("/upload", methods=["POST", "PUT"])
def upload():
    """Size and digest of the whole request body (a proxy must pass it byte for byte)."""
    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest())


# --- bodies: sized, streamed, compressible ------------------------------------------------------------


@app.get("/big")
def big():
    """?size=N bytes (default 1 MiB) of pattern(), with Content-Length."""
    body = pattern(size_arg(1024 * 1024))
    return Response(body, mimetype="application/octet-stream", headers={"Content-Length": str(len(body))})


@app.get("/stream")
def stream():
    """The same bytes as /big, produced in 64 KiB pieces without Content-Length (so sent chunked)."""
    body = pattern(size_arg(1024 * 1024))
    pieces = (body[start:start + PIECE] for start in range(0, len(body), PIECE))
    return Response(pieces, mimetype="application/octet-stream")


@app.get("/text")
def text():
    """?size=N bytes (default 20000) of repetitive text: compresses well."""
    size = size_arg(20000)
    return Response((TEXT_LINE * (size // len(TEXT_LINE) + 1))[:size], mimetype="text/plain")


@app.get("/json")
def json_document():
    """A few KB of JSON."""
    items = [{"id": i, "name": f"item {i}", "tags": ["alpha", "beta", "gamma"][: i % 3 + 1], "price": i * 1.5}
             for i in range(60)]
    return jsonify(upstream=name(), count=len(items), items=items)


# --- timing, statuses, health, response headers -------------------------------------------------------


@app.get("/slow")
def slow():
    """Answer 'slow' after ?ms=N milliseconds (default 1000): for timeouts and in-flight requests.

    With ?mark=PATH the file PATH is created first, so a test can wait until the request is in the app.
    """
    if request.args.get("mark"):
        with open(request.args["mark"], "w"):
            pass
    time.sleep(int(request.args.get("ms", 1000)) / 1000)
    return Response("slow", mimetype="text/plain")


@app.route("/status/<int:code>", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
def status(code: int):
    """Answer with that status (a short body, none where HTTP forbids one)."""
    body = "" if code in (204, 304) else f"status {code} from {name()}\n"
    return Response(body, status=code, mimetype="text/plain")


@app.get("/healthz")
def healthz():
    """'ok', or 503 while the file named by UPSTREAM_HEALTH_FILE exists."""
    health_file = os.environ.get("UPSTREAM_HEALTH_FILE")
    if health_file and os.path.exists(health_file):
        return Response("unhealthy", status=503, mimetype="text/plain")
    return Response("ok", mimetype="text/plain")


@app.get("/headers-out")
def headers_out():
    """A response with custom, repeated and caching headers, to compare what a proxy passes on."""
    response = Response("headers", mimetype="text/plain")
    response.headers["X-Custom"] = "1"
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
    response.headers["Cache-Control"] = "public, max-age=60"
    return response
