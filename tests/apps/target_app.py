"""Answers any request with what the app saw of it, as JSON: the request-target tests compare it.

TARGET_APP_NAME names the instance, so a test behind the proxy sees which upstream a request reached.
"""

from __future__ import annotations

import json
import os

KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "RAW_URI", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT",
        "SERVER_PROTOCOL", "REMOTE_ADDR", "HTTP_X_TRAILER", "CONTENT_LENGTH")


def app(environ, start_response):
    """The environ keys the tests look at, plus the body's length and this instance's name."""
    body = environ["wsgi.input"].read()
    seen = {key: environ.get(key) for key in KEYS}
    seen["name"] = os.environ.get("TARGET_APP_NAME", "app")
    seen["body"] = body.decode("latin-1")
    data = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
