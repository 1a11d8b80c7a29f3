"""`wsgistack cgi APP`: the app answers one request as a CGI/1.1 script (RFC 3875), so a two-line executable
(`#!/bin/sh`, `exec wsgistack cgi myproject:app`) runs it under any CGI host (Apache's mod_cgi, ...).

The request comes from the process environment (the meta-variables) and the body from stdin, never past
CONTENT_LENGTH; the response goes to stdout with a `Status:` field. It is held whole until the app is done,
so an app that fails half-way gives a clean 500 page, never a half-written response; the error and its
traceback go to stderr, which the host keeps in its error log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TextIO

from wsgistack.http.errors import error_body, status_line_text
from wsgistack.http.heads import cgi_head, check_headers, check_status
from wsgistack.wsgi.cgi_environ import body_length, cgi_environ
from wsgistack.wsgi.runner import run_app

log = logging.getLogger("wsgistack.server")
_READ = 65536


class HeldResponse:
    """A ResponseSink that keeps the whole response until the app is done (see the module's docstring)."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.ended = False
        self.own_error = False  # the answer is one of ours (400 for a bad body, 500 for an app failure)

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        check_status(status)
        check_headers(headers)
        self.status, self.headers = status, list(headers)

    def send_body(self, data: bytes) -> None:
        self.body.append(bytes(data))

    def send_file(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            piece = os.pread(fd, min(count, _READ), offset)
            if not piece:
                break
            self.body.append(piece)
            offset += len(piece)
            count -= len(piece)

    def send_error(self, status: int, reason: str) -> None:
        body = error_body(status, reason)
        self.status = status_line_text(status)
        self.headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        self.body = [body]
        self.own_error = True

    def end(self) -> None:
        self.ended = True

    def bytes(self, head_only: bool) -> bytes:
        return cgi_head(self.status, self.headers) + (b"" if head_only else b"".join(self.body))


def stdin_environ(meta: Mapping[str, str], stdin: BinaryIO, errors: TextIO) -> dict[str, Any]:
    """The environ of a CGI script's request; ValueError for a bad CONTENT_LENGTH."""
    left = body_length(meta)

    def pull() -> bytes:  # the body is CONTENT_LENGTH bytes of stdin, never more (RFC 3875 §4.2)
        nonlocal left
        if left <= 0:
            return b""
        piece = stdin.read(min(left, _READ))
        left -= len(piece)
        if not piece:
            left = 0
        return piece

    return cgi_environ(meta, pull, errors, run_once=True)


def run_cgi(app: Callable[..., Any], meta: Mapping[str, str], stdin: BinaryIO, stdout: BinaryIO,
            errors: TextIO) -> int:
    """Answer the one request of `meta` and `stdin` on `stdout`; 0 when the app answered, 1 when we did (400, 500)."""
    response = HeldResponse()
    try:
        environ = stdin_environ(meta, stdin, errors)
    except ValueError as exc:
        log.error("bad request: %s", exc)
        response.send_error(400, str(exc))
        stdout.write(response.bytes(head_only=False))
        stdout.flush()
        return 1
    result = run_app(app, environ, response)
    if not result.complete and not response.own_error:
        # the app failed after its response began (run_app logged why): what it sent is dropped whole
        log.error("the response to %s %s was cut short: a 500 instead", environ["REQUEST_METHOD"],
                  environ["RAW_URI"])
        response.send_error(500, "Internal server error")
    stdout.write(response.bytes(head_only=environ["REQUEST_METHOD"] == "HEAD"))
    stdout.flush()
    return 0 if result.complete else 1


def error_response(status: int, reason: str) -> bytes:
    """What the script writes when there is no app to ask (it could not be imported)."""
    response = HeldResponse()
    response.send_error(status, reason)
    return response.bytes(head_only=False)
