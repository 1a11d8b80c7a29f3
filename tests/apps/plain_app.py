"""Plain WSGI apps (no framework) for the PEP 3333 checks."""

from __future__ import annotations

import os
from wsgiref.validate import validator


class NoReadFile:
    """A real file whose read() fails: only os.sendfile can send it."""

    def __init__(self, path: str):
        self._file = open(path, "rb")

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._file.tell()

    def read(self, *args):
        raise AssertionError("the server read the file instead of using sendfile")

    def close(self) -> None:
        self._file.close()


def hello(environ, start_response):
    """Hello, with an explicit Content-Length."""
    body = b"plain hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    """Reads the body in the ways PEP 3333 allows, and writes via write() too."""
    stream = environ["wsgi.input"]
    first = stream.readline()
    rest = b""
    while piece := stream.read(4096):  # PEP 3333's read takes a size; input_terminated allows reading to b""
        rest += piece
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(first)
    return [rest]


def sendfile_only(environ, start_response):
    """A file that can only go out with sendfile."""
    path = environ.get("HTTP_X_FILE") or os.environ["PLAIN_APP_FILE"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](NoReadFile(path), 65536)


def raising(environ, start_response):
    """An app that raises before answering: the server's 500, counted as an exception in the metrics."""
    raise RuntimeError("raised on purpose")


def router(environ, start_response):
    """Dispatch by path to the apps above."""
    path = environ["PATH_INFO"]
    if path == "/raise":
        return raising(environ, start_response)
    if path == "/echo":
        return echo(environ, start_response)
    if path == "/sendfile":
        return sendfile_only(environ, start_response)
    return hello(environ, start_response)


validated = validator(router)
