"""A bare WSGI app for the event worker's choice of where a call runs: each answer names the thread that ran
it ("MainThread" is the worker's loop), and one path is quick or sleeps as the query asks."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    seconds = float(query.get("s", ["0"])[0])
    if seconds:
        errors = environ["wsgi.errors"]  # the server's error log: tests see that the call is in flight
        errors.write(f"sleep started on {threading.current_thread().name}\n")
        errors.flush()
        time.sleep(seconds)
    body = threading.current_thread().name.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
