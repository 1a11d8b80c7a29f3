"""The response side of HTTP/1.1 as a sans-IO state machine: an upstream's bytes in, events out.

The reverse proxy reads each upstream response with a fresh ResponseParser. httptools (llhttp) tokenises and
refuses malformed framing (CL+TE, duplicate or list Content-Length, bad chunks, bare LF, obs-fold); this
module adds what llhttp cannot know or does not check: the request was HEAD, 1xx interim responses are
skipped, a 101 is a protocol switch the proxy never asked for, our head limits, and where exactly the
response ended, so that stray bytes behind it make the connection unfit for reuse. Events share their types
with the request parser; every ParseError is a 502, the proxy's answer to an upstream it cannot trust.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus

import httptools

from wsgistack.http.parser import BodyData, EndOfMessage, ParseError

_BLANK_LINE = b"\r\n\r\n"  # ends every head and every chunked body (llhttp refuses a bare LF in both)


@dataclass
class ResponseHead:
    """The status line and header fields of an upstream's final (non-1xx) response."""

    status: int
    reason: str  # the standard phrase for the status, not the upstream's
    version: str  # "1.1" or "1.0"
    headers: list[tuple[str, str]]
    keep_alive: bool
    chunked: bool  # this and content_length are what the head says: after HEAD, 204, 304 no body follows
    content_length: int | None

    def header(self, name: str) -> str | None:
        """The first value of a header field (case-insensitive name), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass(frozen=True)
class ResponseLimits:
    """Limits on an upstream's response head; 0 means no limit."""

    head_size: int = 65536  # bytes of one head: status line, fields and the blank line
    fields: int = 100
    field_size: int = 16384  # name + value of one field


ResponseEvent = ResponseHead | BodyData | EndOfMessage | ParseError


class _Framing(enum.Enum):
    """What the next bytes are, and so where llhttp's input is split."""

    HEAD = "head"  # a head: an interim 1xx one or the final one
    LENGTH = "length"  # a body of Content-Length bytes
    CHUNKED = "chunked"
    CLOSE = "close"  # a body that ends when the upstream closes the connection


class _Stop(Exception):
    """Raised from an llhttp callback to stop parsing: with a reason to reject, without one when done."""


class ResponseParser:
    """Feeds an upstream's bytes to llhttp and queues ResponseHead / BodyData / EndOfMessage / ParseError."""

    def __init__(self, request_method: str = "GET", limits: ResponseLimits = ResponseLimits()):
        self.limits = limits
        self.events: deque[ResponseEvent] = deque()
        self._head_only = request_method.upper() == "HEAD"
        self._parser = httptools.HttpResponseParser(self)
        self._framing = _Framing.HEAD
        self._head: ResponseHead | None = None
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._remaining = 0  # body bytes still due under Content-Length
        self._tail = b""  # the last 3 bytes given to llhttp: a blank line may straddle two feeds
        self._received = 0
        self._complete = self._failed = self._extra = False

    @property
    def received(self) -> int:
        """Bytes fed so far: 0 means the upstream sent nothing, so the request may be retried elsewhere."""
        return self._received

    @property
    def complete(self) -> bool:
        """True once EndOfMessage was queued."""
        return self._complete

    @property
    def failed(self) -> bool:
        """True once a ParseError was queued: the connection must be closed."""
        return self._failed

    @property
    def extra_bytes(self) -> bool:
        """True if bytes came after the complete response: the connection must not be reused."""
        return self._extra

    def close(self) -> None:
        """Let go of llhttp's parser (it points back at this object: a cycle only the GC would free)."""
        self._parser = None  # type: ignore[assignment]
        self._failed = self._failed or not self._complete  # nothing more can be parsed

    def next_event(self) -> ResponseEvent | None:
        """The next event, or None when more bytes are needed."""
        return self.events.popleft() if self.events else None

    def feed(self, data: bytes) -> None:
        """Parse more of the upstream's bytes; events are appended to `self.events`. Never raises for bad input."""
        if not data:
            return
        self._received += len(data)
        if self._complete:
            self._extra = True
            return
        if self._failed:
            return
        if type(data) is not bytes:
            data = bytes(data)
        view = None
        size = len(data)
        head_before = self._head
        pos = 0
        # llhttp does not say where in a buffer it stopped, so it gets pieces that end wherever a head or
        # the message may end: once the response is complete, the rest of the buffer is known to be extra
        while pos < size and not (self._complete or self._failed):
            end = self._next_split(data, pos)
            if pos == 0 and end == size:
                self._feed_piece(data)
            else:
                if view is None:
                    view = memoryview(data)  # pieces without copies: a body may be large
                self._feed_piece(view[pos:end])
            self._tail = data[end - 3:end] if end - pos >= 3 else (self._tail + data[pos:end])[-3:]
            pos = end
        if self._complete and pos < size:
            self._extra = True
            if self._head is not head_before:  # queued by this feed, so nobody has read it yet
                self._head.keep_alive = False

    def feed_eof(self) -> None:
        """The upstream closed the connection: this ends a close-delimited body and fails anything unfinished."""
        if self._complete or self._failed:
            return
        if self._framing is _Framing.CLOSE:
            self._complete = True
            self.events.append(EndOfMessage())
        elif self._received:
            self._fail("upstream closed the connection before the response ended")
        else:
            self._fail("upstream closed the connection without a response")

    def _next_split(self, data: bytes, pos: int) -> int:
        if self._framing is _Framing.LENGTH:
            return min(len(data), pos + max(self._remaining, 1))
        if self._framing is _Framing.CLOSE:
            return len(data)
        tail = self._tail
        if tail:  # a blank line may have begun in the bytes fed before
            found = (tail + data[pos:pos + 3]).find(_BLANK_LINE)
            if found >= 0:
                return pos + found + len(_BLANK_LINE) - len(tail)
        found = data.find(_BLANK_LINE, pos)
        return len(data) if found < 0 else found + len(_BLANK_LINE)

    def _feed_piece(self, piece: bytes | memoryview) -> None:
        if self._framing is _Framing.HEAD:
            # counted before llhttp sees it: llhttp buffers an unfinished field value itself
            self._head_bytes += len(piece)
            if self.limits.head_size and self._head_bytes > self.limits.head_size:
                self._fail("upstream response header too large")
                return
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserCallbackError as exc:
            stop = exc.__context__
            if not isinstance(stop, _Stop):
                raise  # a bug in a callback, not bad input
            if stop.args:
                self._fail(stop.args[0])
        except httptools.HttpParserUpgrade:
            self._fail("upstream switched protocols")
        except httptools.HttpParserError as exc:
            if self._complete:  # llhttp refusing bytes behind the response: only if a split was missed
                self._extra = True
                return
            detail = str(exc).strip() or type(exc).__name__
            self._fail(f"malformed upstream response: {detail}"[:120])

    def _fail(self, reason: str) -> None:
        self._failed = True
        self.events.append(ParseError(502, reason))

    # -- llhttp callbacks ------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second response inside one piece: only if a split was missed
            self._extra = True
            raise _Stop()
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        if limits.field_size and len(name) + len(value) > limits.field_size:
            raise _Stop("upstream response header field too large")
        if self._head is not None:
            return  # trailer fields of a chunked body: the proxy forwards none
        if limits.fields and len(self._headers) >= limits.fields:
            raise _Stop("upstream response has too many header fields")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Stop(f"upstream sent unsupported HTTP/{version}")
        if status < 100:
            raise _Stop("upstream sent an invalid status")
        if status == 101:
            raise _Stop("upstream switched protocols")  # the proxy never asks for an upgrade
        if status < 200:
            return  # 100 Continue, 103 Early Hints: llhttp completes them as bodiless, the final one follows
        content_length = None
        codings: list[str] = []
        for key, value in self._headers:
            lower = key.lower()
            if lower == "content-length":
                content_length = int(value)  # llhttp has checked the digits and refused duplicates
            elif lower == "transfer-encoding":
                codings += [coding.strip().lower() for coding in value.split(",")]
        if codings and version == "1.0":
            # RFC 9112 §6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty
            raise _Stop("upstream sent Transfer-Encoding in an HTTP/1.0 response")
        if codings and codings != ["chunked"]:
            # llhttp reads "gzip, chunked" as chunked and "gzip" as close-delimited; we could forward neither
            raise _Stop("upstream sent an unsupported Transfer-Encoding")
        bodiless = self._head_only or status in (204, 304)
        if self._head_only:
            # llhttp takes a HEAD response without Content-Length for close-delimited; it has no body at all
            keep_alive = _persistent(version, self._headers)
        else:
            keep_alive = parser.should_keep_alive()
        if not bodiless:
            if codings:
                self._framing = _Framing.CHUNKED
            elif content_length is not None:
                self._framing, self._remaining = _Framing.LENGTH, content_length
            else:
                self._framing, keep_alive = _Framing.CLOSE, False
        self._head = ResponseHead(status, _reason(status), version, self._headers, keep_alive, bool(codings),
                                  content_length)
        self.events.append(self._head)
        if bodiless:
            # llhttp cannot be told the request was HEAD and would read a body: stop it here
            self._complete = True
            self.events.append(EndOfMessage())
            raise _Stop()

    def on_body(self, body: bytes) -> None:
        self._remaining -= len(body)
        self.events.append(BodyData(bytes(body)))

    def on_message_complete(self) -> None:
        if self._head is None:  # the end of an interim 1xx response
            self._head_bytes = 0
            return
        self._complete = True
        self.events.append(EndOfMessage())


def _persistent(version: str, headers: list[tuple[str, str]]) -> bool:
    """Whether the Connection header fields let the connection be reused after this response."""
    tokens = {token.strip().lower() for key, value in headers if key.lower() == "connection"
              for token in value.split(",")}
    if version == "1.0":
        return "keep-alive" in tokens and "close" not in tokens
    return "close" not in tokens


def _reason(status: int) -> str:
    """The standard reason phrase of a status, or "Unknown"."""
    # not the upstream's own phrase (llhttp's on_status): RFC 9112 §4 says nobody may rely on it
    return _REASONS.get(status, "Unknown")


_REASONS = {status.value: status.phrase for status in HTTPStatus}  # an enum lookup per response showed in profiles
