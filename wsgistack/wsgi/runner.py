"""Calls a WSGI app for one request: start_response, write(), iteration, close(), file_wrapper, errors.

It knows nothing of sockets: it drives a ResponseSink that the worker's connection implements. The head is
sent lazily (PEP 3333): at the first non-empty body piece, or when the iterable ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from wsgistack.http.errors import ClientGone
from wsgistack.http.heads import ResponseError, check_headers, check_status
from wsgistack.wsgi.file_wrapper import FileWrapper

log = logging.getLogger("wsgistack.server")


class ResponseSink(Protocol):
    """What a connection offers the runner to send one response."""

    def send_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        """Validate and write the status line and headers (raises ResponseError if they are bad)."""

    def send_body(self, data: bytes) -> None:
        """Write one piece of the body."""

    def send_file(self, fd: int, offset: int, count: int) -> None:
        """Write `count` bytes of a file from `offset`, with os.sendfile where possible."""

    def send_error(self, status: int, reason: str) -> None:
        """Answer with an error of the server's own (the head was not sent yet)."""

    def end(self) -> None:
        """The body is complete: write whatever ends it (the chunked terminator)."""


class ClientError(OSError):
    """Reading the request body failed because of the client (it left, stalled, or sent a bad body)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class AppResult:
    """What happened: the status code sent, whether the response went out whole, whether the app raised."""

    __slots__ = ("complete", "failed", "status")

    def __init__(self) -> None:
        self.status = 0
        self.complete = False
        self.failed = False


def run_app(app: Callable[..., Any], environ: dict[str, Any], sink: ResponseSink) -> AppResult:
    """Run the app and send its response through `sink`; never raises for app errors."""
    result = AppResult()
    pending: list[Any] = [None, None]  # status, headers set by start_response, not yet sent
    head_sent = False

    def send_head() -> None:
        nonlocal head_sent
        status, headers = pending
        if status is None:
            raise ResponseError("the app returned a body before calling start_response")
        head_sent = True  # set first: if writing fails half-way, no error response may follow
        result.status = int(status[:3])
        try:
            sink.send_head(status, headers)
        except ResponseError:
            head_sent = False  # refused before a byte was written: a 500 can still go out
            raise

    def write(data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not head_sent:
            send_head()
        if data:
            sink.send_body(data)

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if exc_info:
            try:
                if head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif pending[0] is not None:
            raise AssertionError("start_response was called twice without exc_info")
        check_status(status)
        check_headers(headers)
        pending[0], pending[1] = status, list(headers)
        return write

    iterable = None
    try:
        iterable = app(environ, start_response)
        if isinstance(iterable, FileWrapper) and (source := iterable.sendfile_source()) is not None:
            if not head_sent:
                _add_length(pending, source[2], environ)
                send_head()
            sink.send_file(*source)
        else:
            if not head_sent and isinstance(iterable, (list, tuple)) and len(iterable) <= 1:
                _add_length(pending, len(iterable[0]) if iterable else 0, environ)
            for piece in iterable:
                if piece:
                    write(piece)
            if not head_sent:
                _add_length(pending, 0, environ)
                send_head()
        sink.end()
        result.complete = True
    except ClientError as exc:
        log.info("request body failed: %s", exc)
        if not head_sent:
            result.status = exc.status
            sink.send_error(exc.status, str(exc))
    except ClientGone as exc:
        # nothing to answer, and not the app's fault
        log.debug("client disconnected during the response: %s", exc)
    except Exception:
        result.failed = True
        if not head_sent:
            _app_failed(sink, result, environ)
        else:
            log.exception("error in the app after the response started: %s %s",
                          environ.get("REQUEST_METHOD"), environ.get("RAW_URI"))
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("error in the app's close()")
    return result


def _add_length(pending: list[Any], length: int, environ: dict[str, Any]) -> None:
    """Give a Content-Length when the whole body is known and the app gave none (keeps 1.0 keep-alive)."""
    status, headers = pending
    if status is None or environ["REQUEST_METHOD"] == "HEAD" or status[:1] == "1" or status[:3] in ("204", "304"):
        return
    for name, _ in headers:
        if name.lower() in ("content-length", "transfer-encoding"):
            return
    headers.append(("Content-Length", str(length)))


def _app_failed(sink: ResponseSink, result: AppResult, environ: dict[str, Any]) -> None:
    log.exception("error handling %s %s", environ.get("REQUEST_METHOD"), environ.get("RAW_URI"))
    result.status = 500
    sink.send_error(500, "Internal server error")
