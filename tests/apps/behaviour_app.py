"""The Flask app the server behaviour tests run: one route per behaviour under test."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

app = Flask(__name__)
BIG_FILE = os.environ.get("BEHAVIOUR_BIG_FILE", "")


@app.get("/hello")
def hello():
    """The smallest response."""
    return "hello\n"


@app.get("/pid")
def pid():
    """Which worker answered."""
    return str(os.getpid())


@app.route("/echo", methods=["POST", "PUT"])
def echo():
    """Read the whole body and say what arrived."""
    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   input_terminated=request.environ.get("wsgi.input_terminated"))


@app.post("/ignore-body")
def ignore_body():
    """Answer without reading the body."""
    return "ignored\n"


@app.get("/stream")
def stream():
    """A body of unknown length, sent as it is produced."""
    count = int(request.args.get("n", "5"))
    return Response(stream_with_context(f"line {i}\n" for i in range(count)), mimetype="text/plain")


@app.get("/bigfile")
def bigfile():
    """A real file through wsgi.file_wrapper (Flask's send_file uses it)."""
    return send_file(BIG_FILE, mimetype="application/octet-stream")


@app.get("/boom")
def boom():
    """An app error."""
    raise RuntimeError("boom for the test")


@app.get("/sleep")
def sleep():
    """An app call that takes a while (or gets stuck, with a large value)."""
    errors = request.environ["wsgi.errors"]
    errors.write(f"sleep started in {os.getpid()}\n")  # lets tests see the request is in flight
    errors.flush()
    time.sleep(float(request.args.get("s", "1")))
    return "slept\n"


@app.get("/spin")
def spin():
    """An app call that never yields (a CPU loop): stuck for every worker class, gevent's included."""
    errors = request.environ["wsgi.errors"]
    errors.write(f"spin started in {os.getpid()}\n")
    errors.flush()
    end = time.monotonic() + float(request.args.get("s", "1"))
    while time.monotonic() < end:
        pass
    return "spun\n"


@app.get("/environ")
def environ():
    """The environ as JSON (values that are not plain data shown by type)."""
    out = {}
    for key, value in request.environ.items():
        if isinstance(value, (str, int, bool, float)) or value is None:
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = f"<{type(value).__name__}>"
    out["thread"] = threading.get_ident()
    return jsonify(out)


@app.get("/bad-header")
def bad_header():
    """A header value with CR LF: the server must refuse it rather than split the response."""
    return Response("x", headers={"X-Injected": "a\r\nSet-Cookie: evil=1"})
