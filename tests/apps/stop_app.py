"""A plain WSGI app for the stop and systemd tests: boots in milliseconds, a slow path, the worker's
environment."""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    """/slow?s=SECONDS sleeps first (and says so in the error log); /env?name=NAME answers that variable of
    the worker's environment ('-' when unset); anything else answers the worker's pid."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ["PATH_INFO"]
    if path == "/slow":
        environ["wsgi.errors"].write(f"slow request started in {os.getpid()}\n")
        environ["wsgi.errors"].flush()
        time.sleep(float(query.get("s", ["1"])[0]))
    if path == "/env":
        body = os.environ.get(query.get("name", [""])[0], "-").encode()
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
