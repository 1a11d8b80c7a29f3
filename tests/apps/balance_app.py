"""Says which worker answered; `?s=N` first sleeps N seconds, saying so in the server's error log (with
--threads 1 the sleep holds the worker's loop, the case of a stuck worker)."""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["0"])[0])
    if seconds:
        environ["wsgi.errors"].write(f"sleep started in {os.getpid()}\n")
        environ["wsgi.errors"].flush()
        time.sleep(seconds)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
