"""The response side, sans-IO: checks what the app returns, picks the framing and builds the bytes.

Framing follows RFC 9112 §6: Content-Length when the app gives one, chunked for HTTP/1.1 when it does not,
close-delimited for HTTP/1.0; no body at all for HEAD, 1xx, 204 and 304.
"""

from __future__ import annotations

import re

from wsgistack.http.dates import http_date
from wsgistack.http.errors import error_body, status_line_text

SERVER_NAME = "wsgistack"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # used with fullmatch: "$" would allow a final "\n"
# field values may hold visible characters, spaces, tabs and obs-text; any other control character (CR and
# LF above all) would let the app split the response in two
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"([1-9][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*")
_DIGITS = re.compile(r"[0-9]+")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection"}


class ResponseError(Exception):
    """The app's status or headers cannot be sent as they are (the server answers 500 instead)."""


def check_status(status: str) -> int:
    """The numeric code of a WSGI status string like '200 OK'; raises ResponseError if malformed."""
    if not isinstance(status, str):
        raise ResponseError(f"status must be a str, not {type(status).__name__}")
    match = _STATUS.fullmatch(status)
    if not match:
        raise ResponseError(f"malformed status {status!r}")
    try:
        status.encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseError(f"status {status!r} is not latin-1") from None
    return int(match.group(1))


def check_headers(headers: list[tuple[str, str]]) -> None:
    """Refuse header names that are not tokens and values with control characters (response splitting)."""
    if not isinstance(headers, list):
        raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ResponseError(f"header {item!r} is not a (name, value) tuple")
        name, value = item
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ResponseError(f"invalid header name {name!r}")
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise ResponseError(f"invalid value for header {name!r}: {value!r}")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ResponseError(f"header {name!r} is not latin-1: {value!r}") from None
        if name.lower() == "content-length" and not _DIGITS.fullmatch(value.strip()):
            raise ResponseError(f"invalid Content-Length {value!r}")


class Framing:
    """How the body of one response goes on the wire, and whether the connection may be reused after it."""

    def __init__(self, mode: str, length: int | None = None):
        self.mode = mode  # "length", "chunked", "close" or "none"
        self.remaining = length
        self.sent = 0  # body bytes the app produced and we sent (before transfer coding)

    def encode(self, data: bytes) -> bytes:
        """The bytes to write for one piece of the app's body."""
        if not data or self.mode == "none":
            return b""
        if self.mode == "length":
            assert self.remaining is not None
            if len(data) > self.remaining:
                data = data[: self.remaining]  # never send more than announced: it would be a second response
            self.remaining -= len(data)
            self.sent += len(data)
            return data
        self.sent += len(data)
        if self.mode == "chunked":
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def finish(self) -> bytes:
        """The bytes that end the body."""
        return b"0\r\n\r\n" if self.mode == "chunked" else b""

    @property
    def complete(self) -> bool:
        """False when the app sent less than its Content-Length: the connection cannot be reused."""
        return self.mode != "length" or self.remaining == 0


def build_head(
    status: str,
    headers: list[tuple[str, str]],
    method: str,
    version: str,
    keep_alive: bool,
) -> tuple[bytes, Framing, bool]:
    """Checks the app's status and headers and returns (head bytes, framing, keep-alive after this response).

    `keep_alive` is what the request and the server allow; the response can only take it away.
    """
    code = check_status(status)
    check_headers(headers)
    out: list[str] = []
    length: int | None = None
    has_date = has_server = False
    for name, value in headers:
        lower = name.lower()
        if lower in _HOP_BY_HOP:
            # the server owns connection management and transfer coding (PEP 3333); an app's "close" is honoured
            if lower == "connection" and "close" in value.lower():
                keep_alive = False
            continue
        if lower == "content-length":
            if not _DIGITS.fullmatch(value.strip()) or (length is not None and int(value) != length):
                raise ResponseError(f"invalid Content-Length {value!r}")
            if length is not None:
                continue
            length = int(value)
        elif lower == "date":
            has_date = True
        elif lower == "server":
            has_server = True
        out.append(f"{name}: {value}\r\n")

    framing = choose_framing(code, method, length, version)
    if code < 200 or code == 204:
        out = [line for line in out if not line.lower().startswith("content-length:")]
    keep_alive = keep_alive and framing.mode != "close"
    out.append(closing_fields(framing, keep_alive, version, has_date, has_server))
    head = f"HTTP/1.1 {status}\r\n{''.join(out)}\r\n".encode("latin-1")
    return head, framing, keep_alive


def choose_framing(status: int, method: str, length: int | None, version: str) -> Framing:
    """How a response's body goes on the wire (RFC 9112 §6): none for HEAD, 1xx, 204 and 304; its
    Content-Length when known; chunked to an HTTP/1.1 client; otherwise until the connection closes."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return Framing("none")
    if length is not None:
        return Framing("length", length)
    return Framing("chunked") if version == "1.1" else Framing("close")


def closing_fields(framing: Framing, keep_alive: bool, version: str, has_date: bool, has_server: bool) -> str:
    """The fields a head ends with: Transfer-Encoding, Date and Server if missing, Connection."""
    out = "Transfer-Encoding: chunked\r\n" if framing.mode == "chunked" else ""
    if not has_date:
        out += f"Date: {http_date()}\r\n"
    if not has_server:
        out += f"Server: {SERVER_NAME}\r\n"
    if not keep_alive:
        out += "Connection: close\r\n"
    elif version == "1.0":
        out += "Connection: keep-alive\r\n"
    return out


def simple_response(status_text: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
                    close: bool = True, head_only: bool = False) -> bytes:
    """A complete response the server writes itself (errors, 100 Continue excluded)."""
    lines = [
        f"HTTP/1.1 {status_text}\r\n",
        f"Content-Type: {content_type}\r\n",
        f"Content-Length: {len(body)}\r\n",
        f"Date: {http_date()}\r\n",
        f"Server: {SERVER_NAME}\r\n",
    ]
    if close:
        lines.append("Connection: close\r\n")
    head = ("".join(lines) + "\r\n").encode("latin-1")
    return head if head_only else head + body


def error_response(status: int, reason: str, head_only: bool = False) -> bytes:
    """The whole response for an error the server answers itself; the connection closes after it."""
    return simple_response(status_line_text(status), error_body(status, reason), head_only=head_only)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
