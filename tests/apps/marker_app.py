"""Records which process imported it, to tell --preload (the master) from per-worker imports."""

from __future__ import annotations

import os

with open(os.environ["IMPORT_MARKER"], "a") as marker:
    marker.write(f"{os.getpid()}\n")


def app(environ, start_response):
    """Says hello."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"marked\n"]
