"""The request side of HTTP/1.1 as a sans-IO state machine: bytes in, events out. No sockets, no clock.

httptools (llhttp) does the tokenising and already refuses most smuggling vectors (CL+TE, duplicate or list
Content-Length, bad chunk sizes, bare CR, obs-fold, control characters, bad header names). On top of it this
module enforces our limits (414/431/413), the rules RFC 9112 leaves to the server (Host, HTTP versions,
Transfer-Encoding in HTTP/1.0, Expect), and turns everything into a queue of events, so that a pipelined
request behind a good one never hides the good one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import httptools

from wsgistack.http.errors import HTTPError


@dataclass(frozen=True)
class Limits:
    """Per-request limits; 0 means no limit."""

    request_line: int = 4094
    fields: int = 100
    field_size: int = 8190
    body_size: int = 0

    @property
    def head_size(self) -> int:
        """Most bytes a request head may take before it is complete (bounds memory while parsing)."""
        line = self.request_line or 65536
        count = self.fields or 1000
        size = self.field_size or 65536
        return line + count * (size + 4) + 4


@dataclass
class RequestHead:
    """A parsed request line and header fields."""

    method: str
    target: str
    version: str  # "1.0" or "1.1"
    headers: list[tuple[str, str]]
    keep_alive: bool
    chunked: bool
    content_length: int | None
    expect_continue: bool
    upgrade: bool = False
    dropped_headers: list[str] = field(default_factory=list)
    _index: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of a header field (case-insensitive name), or None."""
        index = self._index
        if index is None:
            # built once: the proxy asks several fields of every request
            index = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), value)
            self._index = index
        return index.get(name.lower())


@dataclass(frozen=True)
class BodyData:
    """A piece of the request body, transfer coding removed."""

    data: bytes


@dataclass(frozen=True)
class EndOfMessage:
    """The request's body (if any) is complete."""


@dataclass(frozen=True)
class ParseError:
    """The request is malformed or over a limit; answer with `status` and close."""

    status: int
    reason: str


Event = RequestHead | BodyData | EndOfMessage | ParseError

_TOKEN_DROP = "_"  # header names with "_" collide with "-" in CGI-style environ keys: a smuggling vector


class _Rejected(Exception):
    pass


class RequestParser:
    """Feeds bytes to llhttp and queues RequestHead / BodyData / EndOfMessage / ParseError events."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self.events: deque[Event] = deque()
        self._parser = httptools.HttpRequestParser(self)
        self._failed = False
        self._in_head = False
        self._head_bytes = 0
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._dropped: list[str] = []
        self._head_done = False
        self._body_bytes = 0
        self._pending_error: HTTPError | None = None

    # -- feeding ---------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True while a request head has begun but is not complete."""
        return self._in_head

    @property
    def failed(self) -> bool:
        """True once a ParseError was queued: the connection must close after answering it."""
        return self._failed

    def feed(self, data: bytes) -> None:
        """Parse more bytes; events are appended to `self.events`. Never raises for bad input."""
        if self._failed or not data:
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self.limits.head_size and self._head_bytes > self.limits.head_size:
                self._fail(431, "Request header fields too large")
                return
        # a head that began inside this feed is not counted until the next one: at most one recv() of slack,
        # and no false 431 for a pipelined head that starts after a body
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # llhttp stops at an Upgrade or CONNECT; a WSGI app cannot take the connection over, so the
            # request is answered as ordinary HTTP and the connection closed after it (see on_headers_complete).
            pass
        except httptools.HttpParserCallbackError:
            error = self._pending_error or HTTPError(400, "Bad request")
            self._fail(error.status, error.reason)
        except httptools.HttpParserError as exc:
            self._fail(400, _describe(exc))

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        return self.events.popleft() if self.events else None

    def _fail(self, status: int, reason: str) -> None:
        self._failed = True
        self.events.append(ParseError(status, reason))

    def _reject(self, status: int, reason: str) -> None:
        self._pending_error = HTTPError(status, reason)
        raise _Rejected(reason)

    # -- llhttp callbacks ------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if self.limits.request_line and len(self._url) > self.limits.request_line:
            self._reject(414, "Request-URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        if limits.field_size and len(name) + len(value) > limits.field_size:
            self._reject(431, "Request header field too large")
        if self._head_done:
            return  # chunked trailer fields: not part of the request's headers in WSGI
        if limits.fields and len(self._headers) + len(self._dropped) >= limits.fields:
            self._reject(431, "Too many request header fields")
        key = name.decode("latin-1")
        if _TOKEN_DROP in key:
            self._dropped.append(key)
            return
        self._headers.append((key, value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if version.startswith("1."):
                self._reject(400, f"Unsupported HTTP/{version}")
            self._reject(505, "HTTP version not supported")
        method = parser.get_method().decode("ascii")
        content_length = None
        chunked = False
        transfer_codings: list[str] = []
        hosts = 0
        expect = None
        for key, value in self._headers:
            lower = key.lower()
            if lower == "content-length":
                content_length = int(value)
            elif lower == "transfer-encoding":
                chunked = True
                transfer_codings += [part.strip().lower() for part in value.split(",")]
            elif lower == "host":
                hosts += 1
            elif lower == "expect":
                expect = value.lower()
        if chunked and transfer_codings[-1:] != ["chunked"]:
            self._reject(400, "Transfer-Encoding must end with chunked")  # RFC 9112 §6.3: framing unknowable
        if chunked and transfer_codings != ["chunked"]:
            # llhttp only checks that chunked comes last; we cannot undo gzip etc. for the app (RFC 9112 §6.1)
            self._reject(501, "Unsupported transfer coding")
        if chunked and version == "1.0":
            # RFC 9112 §6.1: framing of an HTTP/1.0 message with Transfer-Encoding cannot be trusted
            self._reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if version == "1.1" and hosts != 1:
            self._reject(400, "An HTTP/1.1 request needs exactly one Host header")
        if method == "CONNECT":
            self._reject(405, "CONNECT is not supported")
        if expect is not None and expect != "100-continue":
            self._reject(417, "Unsupported Expect")
        if self.limits.body_size and content_length is not None and content_length > self.limits.body_size:
            self._reject(413, "Request body too large")
        upgrade = parser.should_upgrade()
        if upgrade and (chunked or content_length):
            # llhttp hands the bytes after an upgrade's head to the new protocol, not to the body
            self._reject(400, "Upgrade with a request body is not supported")
        self._head_done = True
        self._in_head = False
        self.events.append(RequestHead(
            method=method,
            target=self._url.decode("latin-1"),
            version=version,
            headers=self._headers,
            keep_alive=parser.should_keep_alive() and not upgrade,
            chunked=chunked,
            content_length=content_length,
            expect_continue=expect == "100-continue" and version == "1.1",
            upgrade=upgrade,
            dropped_headers=self._dropped,
        ))

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self.limits.body_size and self._body_bytes > self.limits.body_size:
            self._reject(413, "Request body too large")
        self.events.append(BodyData(bytes(body)))

    def on_message_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self.events.append(EndOfMessage())


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]
