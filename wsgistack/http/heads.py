"""Every HTTP head wsgistack writes, request or response: nothing else puts a status line or a field on the wire.

Responses: `build_head` checks an app's status and fields first (the server's sinks); `proxied_response_head`
does not re-check (the proxy's, for fields llhttp already accepted); `reply_head`, `simple_response` and
`error_reply` write the answers of our own (errors, static files, control pages). Requests:
`forwarded_request_head` (the proxy towards an upstream) and `request_head` (health checks). Every
response head ends with `closing_fields`, the one place that says "Connection: close" or, to HTTP/1.0,
"Connection: keep-alive".

The writers are single functions on purpose: the server's `build_head` and the proxy's two run once per
request, and a helper call per field or per head showed in profiles.
"""

from __future__ import annotations

import re

from wsgistack.http.dates import http_date
from wsgistack.http.errors import error_body, status_line_text
from wsgistack.http.framing import Framing, choose_framing
from wsgistack.http.parser import Limits

SERVER_NAME = "wsgistack"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Connection-specific fields (RFC 9110 §7.6.1: Connection itself, Proxy-Connection, Keep-Alive, TE,
# Transfer-Encoding, Upgrade), plus Trailer: the server and the proxy frame every body themselves and send
# no trailer fields, so an app's or upstream's Trailer would announce fields that never come.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade"})
# Addressed to the proxy on this hop (RFC 9110 §11.7). The proxy is that proxy and does no proxy
# authentication, so they end there: a client's proxy credentials never reach the app. The server, an
# origin, sends an app's Proxy-Authenticate as it is.
PROXY_CREDENTIALS = frozenset({"proxy-authenticate", "proxy-authorization"})
_NOT_FORWARDED = HOP_BY_HOP | PROXY_CREDENTIALS
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
                        "x-real-ip", "x-request-id", "forwarded", "content-length", "expect", "host"})
_REWRITTEN = _NOT_FORWARDED | _FORWARDED  # request fields the proxy drops or rewrites

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # used with fullmatch: "$" would allow a final "\n"
# field values may hold visible characters, spaces, tabs and obs-text; any other control character (CR and
# LF above all) would let the app split the response in two
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"([1-9][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*")
_DIGITS = re.compile(r"[0-9]+")

# Statuses and fields that passed the checks below, with what build_head needs of a field (its lower-cased
# name and its line). An app sends the same few on every response, so each is checked and written once rather
# than per response (regular expressions and an encode each: about a third of a plain hello's head). Bounded:
# an app that sends a new value every time (a Set-Cookie) starts the memory afresh when it fills.
_SEEN_MAX = 4096
_seen_statuses: dict[str, int] = {}
_seen_fields: dict[tuple[str, str], tuple[str, str]] = {}

_UPSTREAM_LIMITS = Limits()  # what `wsgistack serve` accepts by default (0 would be no limit)
# Host, X-Forwarded-For/-Proto/-Host/-Port and X-Request-ID: always sent, whatever the client sent
_ADDED_FIELDS = 6
# the most lines (request line and kept fields) and the longest values that still fit those limits
_ROOM_FOR_FIELDS = (_UPSTREAM_LIMITS.fields or 1 << 30) + 1 - _ADDED_FIELDS
_ROOM_FOR_XFF = (_UPSTREAM_LIMITS.field_size or 1 << 30) - len("X-Forwarded-For")
_ROOM_FOR_XFH = (_UPSTREAM_LIMITS.field_size or 1 << 30) - len("X-Forwarded-Host")


class ResponseError(Exception):
    """The app's status or headers cannot be sent as they are (the server answers 500 instead)."""


class UpstreamHeadTooLarge(Exception):
    """The head the proxy would send upstream breaks the upstream's default limits; the client gets 431."""


def check_status(status: str) -> int:
    """The numeric code of a WSGI status string like '200 OK'; raises ResponseError if malformed."""
    if status.__class__ is str:
        code = _seen_statuses.get(status)
        if code is not None:
            return code
    if not isinstance(status, str):
        raise ResponseError(f"status must be a str, not {type(status).__name__}")
    match = _STATUS.fullmatch(status)
    if not match:
        raise ResponseError(f"malformed status {status!r}")
    try:
        status.encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseError(f"status {status!r} is not latin-1") from None
    code = int(match.group(1))
    if status.__class__ is str:
        if len(_seen_statuses) >= _SEEN_MAX:
            _seen_statuses.clear()
        _seen_statuses[status] = code
    return code


def check_headers(headers: list[tuple[str, str]]) -> None:
    """Refuse header names that are not tokens and values with control characters (response splitting)."""
    if not isinstance(headers, list):
        raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
    seen = _seen_fields
    for item in headers:
        try:
            if item in seen:
                continue
        except TypeError:  # unhashable: not a field of str, which the checks below say
            pass
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
        lower = name.lower()
        if lower == "content-length" and not _DIGITS.fullmatch(value.strip()):
            raise ResponseError(f"invalid Content-Length {value!r}")
        if name.__class__ is str and value.__class__ is str:  # a subclass may render otherwise next time
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen[(name, value)] = (lower, f"{name}: {value}\r\n")


def write_head(start_line: str, lines: list[str]) -> bytes:
    """The bytes of an HTTP head: the start line, the field lines (each already ending in CRLF), the blank
    line. Every head wsgistack writes, request or response, ends here."""
    return f"{start_line}\r\n{''.join(lines)}\r\n".encode("latin-1")


def cgi_head(status: str, headers: list[tuple[str, str]]) -> bytes:
    """A CGI script's response head (RFC 3875 §6.3): `Status:` instead of a status line, then the fields."""
    return write_head(f"Status: {status}", [f"{name}: {value}\r\n" for name, value in headers])


def closing_fields(chunked: bool, keep_alive: bool, version: str, has_date: bool, has_server: bool,
                   late: str = "") -> str:
    """The fields a response head ends with: Transfer-Encoding, Date and Server if missing, `late` (written
    field lines), then Connection: "close" when the connection ends, "keep-alive" to an HTTP/1.0 client
    when it does not (HTTP/1.1 keeps alive without a word)."""
    out = "Transfer-Encoding: chunked\r\n" if chunked else ""
    if not has_date:
        out += f"Date: {http_date()}\r\n"
    if not has_server:
        out += f"Server: {SERVER_NAME}\r\n"
    out += late
    if not keep_alive:
        out += "Connection: close\r\n"
    elif version == "1.0":
        out += "Connection: keep-alive\r\n"
    return out


def build_head(
    status: str,
    headers: list[tuple[str, str]],
    method: str,
    version: str,
    keep_alive: bool,
    checked: bool = False,
) -> tuple[bytes, Framing, bool, int]:
    """Checks the app's status and headers and returns (head bytes, framing, keep-alive after this response,
    status code), so that no caller parses the status again.

    `keep_alive` is what the request and the server allow; the response can only take it away. `checked`:
    the caller checked the status and headers already (the WSGI runner's start_response does, on its own copy
    of the list), so they are not checked twice per response.
    """
    if checked:
        code = int(status[:3])
    else:
        code = check_status(status)
        check_headers(headers)
    out: list[str] = []
    length: int | None = None
    has_date = has_server = False
    seen = _seen_fields
    for item in headers:
        name, value = item
        known = seen.get(item)  # checked above or by the caller, so of str: hashable
        if known is None:
            lower, line = name.lower(), f"{name}: {value}\r\n"
        else:
            lower, line = known
        if lower in HOP_BY_HOP:
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
        out.append(line)

    framing = choose_framing(code, method, length, version)
    if code < 200 or code == 204:
        out = [line for line in out if not line.lower().startswith("content-length:")]
    keep_alive = keep_alive and framing.mode != "close"
    out.append(closing_fields(framing.mode == "chunked", keep_alive, version, has_date, has_server))
    return write_head(f"HTTP/1.1 {status}", out), framing, keep_alive, code


def without_hop_by_hop(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An upstream's response fields without hop-by-hop ones and those its Connection field names."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return [(name, value) for name, value in headers
            if name.lower() not in _NOT_FORWARDED and name.lower() not in named]


def proxied_response_head(status: int, reason: str, headers: list[tuple[str, str]], method: str, version: str,
                          keep_alive: bool, rid: str) -> tuple[bytes, Framing, bool, str | None]:
    """The head the proxy sends its client for an upstream's response, its body framing, keep-alive after it,
    and the app's X-Accel-Buffering word ("yes", "no", lower-cased; None without one).

    Hop-by-hop fields are dropped here (and those a Connection field names, through without_hop_by_hop), and
    X-Accel-Buffering, as nginx does: it is a word to the proxy, not to the client.

    Unlike build_head this does not re-check names and values: llhttp already refused any response whose
    fields are not tokens and clean values, and this runs once per proxied request.
    """
    out: list[str] = []
    length = None
    has_date = has_server = has_rid = False
    buffering = None
    for name, value in headers:
        lower = name.lower()
        if lower in _NOT_FORWARDED:
            if lower == "connection" and value.lower() not in ("close", "keep-alive"):
                return proxied_response_head(status, reason, without_hop_by_hop(headers), method, version,
                                             keep_alive, rid)  # rare: it names more fields to drop
            continue
        if lower == "content-length":
            if length is not None:
                continue
            length = int(value)
        elif lower == "date":
            has_date = True
        elif lower == "server":
            has_server = True
        elif lower == "x-request-id":
            has_rid = True
        elif lower == "x-accel-buffering":
            if buffering is None:
                buffering = value.strip().lower()
            continue
        out.append(f"{name}: {value}\r\n")
    framing = choose_framing(status, method, length, version)
    keep_alive = keep_alive and framing.mode != "close"
    if not has_rid:
        out.append(f"X-Request-ID: {rid}\r\n")
    out.append(closing_fields(framing.mode == "chunked", keep_alive, version, has_date, has_server))
    return write_head(f"HTTP/1.1 {status} {reason}", out), framing, keep_alive, buffering


def reply_head(status_text: str, fields: list[tuple[str, str]], keep_alive: bool = False, version: str = "1.1",
               late: list[tuple[str, str]] | tuple = ()) -> bytes:
    """The head of a response wsgistack writes itself (errors, static files, control pages): the status
    line ('404 Not Found'), `fields`, Date, Server, the `late` fields, Connection."""
    lines = [f"{name}: {value}\r\n" for name, value in fields]
    lines.append(closing_fields(False, keep_alive, version, False, False,
                                "".join(f"{name}: {value}\r\n" for name, value in late)))
    return write_head(f"HTTP/1.1 {status_text}", lines)


def simple_response(status_text: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
                    close: bool = True, head_only: bool = False) -> bytes:
    """A complete response the server writes itself (errors, 100 Continue excluded)."""
    head = reply_head(status_text, [("Content-Type", content_type), ("Content-Length", str(len(body)))],
                      keep_alive=not close)
    return head if head_only else head + body


def error_reply(status: int, reason: str, method: str = "GET", keep_alive: bool = False, version: str = "1.1",
                late: list[tuple[str, str]] | tuple = ()) -> tuple[bytes, int]:
    """An error we answer ourselves: (the bytes to write, the length of its body). A HEAD gets the head only;
    the length is the body's either way, for the caller's access log."""
    body = error_body(status, reason)
    head = reply_head(status_line_text(status),
                      [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
                      keep_alive, version, late)
    return (head if method == "HEAD" else head + body), len(body)


def error_response(status: int, reason: str, head_only: bool = False) -> bytes:
    """The whole response for an error the server answers itself; the connection closes after it."""
    return error_reply(status, reason, "HEAD" if head_only else "GET")[0]


def request_head(method: str, target: str, fields: list[tuple[str, str]]) -> bytes:
    """A plain HTTP/1.1 request head (the proxy's health checks, the supervisor's readiness checks)."""
    return write_head(f"{method} {target} HTTP/1.1", [f"{name}: {value}\r\n" for name, value in fields])


def forwarded_request_head(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    *,
    client_ip: str,
    scheme: str,
    server_port: str,
    trusted: bool,
    request_id: str,
    body_length: int | None,
    default_host: str,
) -> bytes:
    """The request head the proxy sends upstream (HTTP/1.1, keep-alive, Content-Length framing).

    Hop-by-hop fields go (and any field the client's Connection header names), as do proxy credentials;
    X-Forwarded-For/-Proto/-Host/-Port are set — extending the incoming ones only when the client is a
    trusted proxy — and the request carries `request_id`. Host is kept as the client sent it.

    What the proxy adds must still fit in the upstream's limits: a head that would carry more fields than
    `wsgistack serve` accepts by default (100), or a field longer than its 8190 bytes (a long X-Forwarded-For
    extended by one more address), raises UpstreamHeadTooLarge, so the client gets the proxy's own 431 and
    the upstream never sees a request it would refuse.
    """
    out: list[str] = []
    kept: list[tuple[str, str]] = []  # (lower-case name, line): filtered again if Connection names fields
    connection_named: set[str] = set()
    forwarded_for = proto = host = port = original_host = None
    for name, value in headers:
        lower = name.lower()
        if lower in _REWRITTEN:
            if lower == "host":
                original_host = value
            elif lower == "connection":
                connection_named.update(token.strip().lower() for token in value.split(","))
            elif lower == "x-forwarded-for":
                forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            elif lower == "x-forwarded-proto":
                proto = value
            elif lower == "x-forwarded-host":
                host = value
            elif lower == "x-forwarded-port":
                port = value
            continue
        kept.append((lower, f"{name}: {value}\r\n"))
    out += [line for lower, line in kept if lower not in connection_named] if connection_named \
        else [line for _, line in kept]
    if trusted and forwarded_for:
        forwarded_for = f"{forwarded_for}, {client_ip}"
    else:
        forwarded_for = client_ip
        proto = host = port = None
    if len(out) + 1 + (body_length is not None) > _ROOM_FOR_FIELDS:  # 1: the request line
        raise UpstreamHeadTooLarge("Too many request header fields")
    if len(forwarded_for) > _ROOM_FOR_XFF or len(host or original_host or default_host) > _ROOM_FOR_XFH:
        raise UpstreamHeadTooLarge("Request header field too large")
    out.append(f"Host: {original_host or default_host}\r\nX-Forwarded-For: {forwarded_for}\r\n"
               f"X-Forwarded-Proto: {proto or scheme}\r\nX-Forwarded-Host: {host or original_host or default_host}"
               f"\r\nX-Forwarded-Port: {port or server_port}\r\n"
               f"X-Request-ID: {request_id}\r\n")
    if body_length is not None:
        out.append(f"Content-Length: {body_length}\r\n")
    return write_head(f"{method} {target} HTTP/1.1", out)
