"""The request side of HTTP/1.1 as a sans-IO state machine: bytes in, events out. No sockets, no clock.

httptools (llhttp) does the tokenising and already refuses most smuggling vectors (CL+TE, duplicate or list
Content-Length, bad chunk sizes, bare CR, obs-fold, control characters, bad header names). On top of it this
module enforces our limits (414/431/413), the rules RFC 9112 leaves to the server (Host, the forms of the
request-target, HTTP versions, Transfer-Encoding in HTTP/1.0, Expect, fields that may not be trailers), and
turns everything into a queue of events, so that a pipelined request behind a good one never hides the good one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import httptools

from wsgistack.http.chunk_lines import ChunkLines
from wsgistack.http.errors import HTTPError
from wsgistack.http.target import check_host, split_target, valid_hosts


@dataclass(frozen=True)
class Limits:
    """Per-request limits; 0 means no limit."""

    request_line: int = 8190  # RFC 9112 §3: at least 8000 octets; nginx's 8k buffer
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


@dataclass(slots=True)  # slots: made once a request, and a fifth quicker to make
class RequestHead:
    """A parsed request line and header fields."""

    method: str
    target: str
    version: str  # "1.0" or "1.1" (HTTP/1.2..1.9 are read as 1.1, RFC 9112 §2.6)
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


END_OF_MESSAGE = EndOfMessage()  # every one is the same: made once

Event = RequestHead | BodyData | EndOfMessage | ParseError

_TOKEN_DROP = "_"  # header names with "_" collide with "-" in CGI-style environ keys: a smuggling vector

# Fields that must be known before the content (RFC 9110 §6.5.1): framing, routing, request modifiers,
# authentication, response control, content format. Sent as trailers, they are a request for confusion.
FORBIDDEN_TRAILERS = frozenset({
    "transfer-encoding", "content-length", "trailer", "te", "connection", "keep-alive", "proxy-connection",
    "upgrade", "host", "max-forwards", "expect", "range", "if-match", "if-none-match", "if-modified-since",
    "if-unmodified-since", "if-range", "cache-control", "pragma", "authorization", "proxy-authorization",
    "www-authenticate", "proxy-authenticate", "cookie", "set-cookie", "content-type", "content-encoding",
    "content-range", "content-location", "age", "expires", "date", "location", "retry-after", "vary",
})


class _Rejected(Exception):
    pass


class RequestParser:
    """Feeds bytes to llhttp and queues RequestHead / BodyData / EndOfMessage / ParseError events."""

    def __init__(self, limits: Limits = Limits(), empty_host: bool = False):
        self.limits = limits
        # RFC 9112 §3.2: a client whose target has no authority sends Host empty; nginx and we refuse it on
        # the network, but the supervisor's control socket takes it (supervisorctl's tail -f sends it)
        self.empty_host = empty_host
        self.events: deque[Event] = deque()
        self._parser = httptools.HttpRequestParser(self)
        # only the version check is relaxed: llhttp refuses HTTP/1.2..1.9, which RFC 9112 §2.6 says are
        # HTTP/1.x; on_headers_complete still answers 505 for any other major version
        self._parser.set_dangerous_leniencies(lenient_version=True)
        self._failed = False
        self.started = False  # a request head has begun and is not complete (a plain attribute: asked per read)
        self._head_bytes = 0
        self._chunk_lines: ChunkLines | None = None  # set while a chunked body is framed by chunk_lines.py
        self._chunked_next = False  # a chunked head just ended: its body starts at the next byte
        self._tail = b""  # the last bytes fed outside a chunked body (an end of head may span two feeds)
        self._body_left = 0  # bytes of a Content-Length body not fed yet: fed as they are, never scanned
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
    def failed(self) -> bool:
        """True once a ParseError was queued: the connection must close after answering it."""
        return self._failed

    def feed(self, data: bytes) -> None:
        """Parse more bytes; events are appended to `self.events`. Never raises for bad input."""
        if self._failed or not data:
            return
        if self.started:
            self._head_bytes += len(data)
            if self.limits.head_size and self._head_bytes > self.limits.head_size:
                self._fail(431, "Request header fields too large")
                return
        # a head that began inside this feed is not counted until the next one: at most one recv() of slack,
        # and no false 431 for a pipelined head that starts after a body
        #
        # Bytes go to llhttp in pieces that end where a head may end (after each CRLFCRLF), so that when a
        # chunked head is complete, the next byte is known to be its body's first: chunk_lines.py frames
        # that body (llhttp refuses the whitespace RFC 9112 allows in chunk extensions).
        if self._chunk_lines is None and not self._body_left and not self._tail:
            found = data.find(_HEAD_END)
            if found < 0 or found == len(data) - 4:
                # the usual feed: part of a head, or one head ending with the data (llhttp called here, not
                # through _feed_llhttp: a call less on every request)
                try:
                    self._parser.feed_data(data)
                except _LLHTTP_STOPS as exc:
                    self._llhttp_stopped(exc)
                    return
                if self._chunked_next:
                    self._chunked_next = False
                    self._chunk_lines = ChunkLines()
                elif found < 0:
                    self._tail = data[-3:]
                return
        pos, end = 0, len(data)
        while pos < end and not self._failed:
            if self._chunk_lines is not None:
                try:
                    piece, pos = self._chunk_lines.take(data, pos)
                except HTTPError as error:
                    self._fail(error.status, error.reason)
                    return
                if self._chunk_lines.done:
                    self._chunk_lines, self._tail = None, b""
                if piece and not self._feed_llhttp(piece):
                    return
                continue
            if self._body_left:
                stop = min(end, pos + self._body_left)
                self._body_left -= stop - pos
                self._tail = b""
            else:
                stop = _end_of_head(data, pos, self._tail)
            piece = data if pos == 0 and stop == end else data[pos:stop]
            if not self._body_left:
                # a head cannot end in bytes that ended a head before it: the tail only matters after a piece
                # that stopped in the middle of one
                self._tail = b"" if piece.endswith(_HEAD_END) else (self._tail + piece[-3:])[-3:]
            pos = stop
            if not self._feed_llhttp(piece):
                return
            if self._chunked_next:
                self._chunked_next = False
                self._chunk_lines = ChunkLines()

    def _feed_llhttp(self, data: bytes) -> bool:
        """Give bytes to llhttp; False when parsing must stop (an error, or an upgrade)."""
        try:
            self._parser.feed_data(data)
        except _LLHTTP_STOPS as exc:
            self._llhttp_stopped(exc)
            return False
        return True

    def _llhttp_stopped(self, exc: Exception) -> None:
        if isinstance(exc, httptools.HttpParserUpgrade):
            # llhttp stops at an Upgrade or CONNECT; a WSGI app cannot take the connection over, so the
            # request is answered as ordinary HTTP and the connection closed after it (see on_headers_complete).
            return
        if isinstance(exc, httptools.HttpParserCallbackError):
            error = self._pending_error or HTTPError(400, "Bad request")
            self._fail(error.status, error.reason)
            return
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

    def _check(self, check, *args):
        """Run a check of http/target.py; its HTTPError becomes this request's answer."""
        try:
            return check(*args)
        except HTTPError as error:
            self._pending_error = error
            raise _Rejected(error.reason) from None

    # -- llhttp callbacks ------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self.started = True
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
            # chunked trailer fields: never part of the request's headers in WSGI, and refused when they
            # could change how the request is framed, routed or authorised (RFC 9112 §7.1.2)
            if name.decode("latin-1").lower() in FORBIDDEN_TRAILERS:
                self._reject(400, f"{name.decode('latin-1')} is not allowed as a trailer field")
            return
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
            if not version.startswith("1."):
                self._reject(505, "HTTP version not supported")
            version = "1.1"  # HTTP/1.2..1.9: a later minor version is read as the highest we speak (§2.6)
        method = parser.get_method().decode("ascii")
        content_length = None
        chunked = False
        transfer_codings: list[str] = []
        hosts = 0
        host = ""
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
                host = value
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
        if hosts > 1:
            self._reject(400, "More than one Host header")  # RFC 9112 §3.2, whatever the version
        if version == "1.1" and hosts == 0:
            self._reject(400, "An HTTP/1.1 request needs a Host header")
        if hosts and host not in valid_hosts and (host or not self.empty_host):  # cache asked: a call less
            self._check(check_host, host)
        if method == "CONNECT":
            self._reject(405, "CONNECT is not supported")
        target = self._url.decode("latin-1")
        if target[:1] != "/":
            form = self._check(split_target, target, method)
            if form.authority is not None:
                # RFC 9112 §3.2.2: the absolute-form's authority replaces Host, for the app and for routing
                headers = self._headers
                at = next((i for i, (key, _) in enumerate(headers) if key.lower() == "host"), -1)
                if at >= 0:
                    headers[at] = (headers[at][0], form.authority)
                else:
                    headers.append(("Host", form.authority))
        if expect is not None and expect != "100-continue":
            self._reject(417, "Unsupported Expect")
        if self.limits.body_size and content_length is not None and content_length > self.limits.body_size:
            self._reject(413, "Request body too large")
        upgrade = parser.should_upgrade()
        if upgrade and (chunked or content_length):
            # llhttp hands the bytes after an upgrade's head to the new protocol, not to the body
            self._reject(400, "Upgrade with a request body is not supported")
        self._head_done = True
        self._chunked_next = chunked and not upgrade
        self._body_left = content_length or 0 if not upgrade else 0
        self.started = False
        self.events.append(RequestHead(
            method=method,
            target=target,
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
        self.started = False
        self._head_bytes = 0
        self.events.append(END_OF_MESSAGE)


_HEAD_END = b"\r\n\r\n"
# what llhttp raises to stop: an upgrade is not one of its parse errors
_LLHTTP_STOPS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


def _end_of_head(data: bytes, pos: int, tail: bytes) -> int:
    """Where the next piece for llhttp ends: after the first CRLFCRLF from `pos` (one may begin in `tail`,
    the bytes fed just before), or at the end of the data. Extra cuts are harmless; a missed head end is not."""
    if tail:
        for size in (3, 2, 1):
            if tail.endswith(_HEAD_END[:size]) and data.startswith(_HEAD_END[size:], pos):
                return pos + 4 - size
    found = data.find(_HEAD_END, pos)
    return len(data) if found < 0 else found + 4


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]
