"""The smallest app that says which worker answered: boots in milliseconds, for tests that recycle workers."""

from __future__ import annotations

import os


def app(environ, start_response):
    """The worker's pid, with a Content-Length."""
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
