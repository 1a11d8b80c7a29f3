"""The uwsgi protocol's request packet (what nginx's uwsgi_pass sends), sans-IO: bytes in, vars out.

A packet is a 4-byte header, modifier1 (u8), datasize (u16 little-endian), modifier2 (u8), then `datasize`
bytes of vars, each a u16 LE key length, the key, a u16 LE value length, the value; the request body follows,
CONTENT_LENGTH bytes. modifier1 0 is a WSGI request; 30 is the same with SCRIPT_NAME to be cut from the front
of PATH_INFO (nginx's `uwsgi_modifier1 30`). There is one request per connection and the answer is an
HTTP/1.x response head and a body that ends when the connection closes (the server's sinks write it).

Everything wrong with a packet comes back as a ParseError (status and reason), never as an exception: the
connection code answers it with our own plain error and closes, and the app is never called.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from wsgistack.http.parser import Limits, ParseError, RequestHead

HEADER_SIZE = 4
MODIFIER_WSGI = 0
MODIFIER_STRIP_SCRIPT_NAME = 30
MODIFIERS = (MODIFIER_WSGI, MODIFIER_STRIP_SCRIPT_NAME)
# vars that are not request headers (nginx's uwsgi_params sends 15 of them); beyond them, --limit-request-fields
# counts the HTTP_* vars like header fields
CGI_VARS_ALLOWED = 64
_URI_VARS = frozenset({"REQUEST_URI", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "DOCUMENT_URI"})
# the body's length and type come in CONTENT_LENGTH and CONTENT_TYPE; nginx also passes the client's fields as
# HTTP_ vars, which an HTTP environ never has (PEP 3333, RFC 3875 §4.1.18)
_NOT_PASSED = frozenset({"HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"})
_KEY = re.compile(r"[!-~]+")  # printable ASCII without space: CGI names are tokens
_GOOD_KEYS: set[str] = set()  # names that passed _KEY: a worker sees the same few from its web server
_GOOD_KEYS_KEPT = 1024  # past this many, names are checked each time (a peer inventing names fills nothing)
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEAD = struct.Struct("<BHB")
_LENGTH = struct.Struct("<H")


@dataclass
class UwsgiRequest:
    """One decoded request packet: its vars (values latin-1 decoded, as PEP 3333's native strings) and what
    the connection needs to serve it."""

    vars: dict[str, str]
    modifier1: int
    content_length: int
    method: str
    target: str  # REQUEST_URI as the web server received it (compared with --health-path)
    leftover: bytes = field(default=b"", repr=False)  # body bytes that arrived with the vars

    @property
    def strip_script_name(self) -> bool:
        """modifier1 30: cut SCRIPT_NAME from the front of PATH_INFO."""
        return self.modifier1 == MODIFIER_STRIP_SCRIPT_NAME

    def head(self, version: str = "1.0") -> RequestHead:
        """The request as the response writers know it. Version 1.0 and no keep-alive: a body without a
        Content-Length ends with the connection, never chunked (nginx's uwsgi module reads no chunked coding).
        Answers with a Content-Length of our own (the health endpoint) may say the client's `version`."""
        return RequestHead(self.method, self.target, version, [], False, False, self.content_length, False)

    @property
    def version(self) -> str:
        """The client's HTTP version as SERVER_PROTOCOL gives it: "1.1" or "1.0"."""
        return "1.1" if self.vars.get("SERVER_PROTOCOL") == "HTTP/1.1" else "1.0"


def read_header(data: bytes | bytearray) -> tuple[int, int, int]:
    """modifier1, datasize and modifier2 from a packet's first four bytes."""
    return _HEAD.unpack_from(data)


def check_header(modifier1: int, datasize: int, limits: Limits) -> ParseError | None:
    """Whether a packet with this header may be read at all (before its vars arrive)."""
    if modifier1 not in MODIFIERS:
        return ParseError(400, f"uwsgi modifier1 {modifier1} is not a WSGI request (0 or 30)")
    if datasize == 0:
        return ParseError(400, "uwsgi packet without vars")
    if datasize > limits.head_size:
        return ParseError(431, f"uwsgi vars of {datasize} bytes are over the limit of {limits.head_size}")
    return None


def parse_vars(block: bytes | bytearray | memoryview, limits: Limits) -> dict[str, str] | ParseError:
    """The vars of one packet's var block (exactly `datasize` bytes), or why they are refused.

    The block is decoded once (latin-1: PEP 3333's native strings) and keys and values are slices of it; a
    key is checked once per server (nginx sends the same 15 or so every time), and the limits of single
    vars only when the whole block is larger than one of them (a decode per string, a regex per key and a
    limit check per var were most of a request's parse)."""
    data = bytes(block)
    text = data.decode("latin-1")
    found: dict[str, str] = {}
    pairs = 0
    most = (limits.fields or 1 << 30) + CGI_VARS_ALLOWED
    check_sizes = len(data) > min(limits.request_line or 1 << 30, limits.field_size or 1 << 30)
    pos, end = 0, len(data)
    while pos < end:
        pairs += 1
        if pairs > most:
            return ParseError(431, f"more than {most} uwsgi vars")
        if pos + 2 > end:
            return ParseError(400, "uwsgi var key runs past the var block")
        start = pos + 2
        pos = start + (data[pos] | data[pos + 1] << 8)
        if pos > end:
            return ParseError(400, "uwsgi var key runs past the var block")
        name = text[start:pos]
        if pos + 2 > end:
            return ParseError(400, "uwsgi var value runs past the var block")
        start = pos + 2
        pos = start + (data[pos] | data[pos + 1] << 8)
        if pos > end:
            return ParseError(400, "uwsgi var value runs past the var block")
        value = text[start:pos]
        if name not in _GOOD_KEYS:
            if not _KEY.fullmatch(name):
                return ParseError(400, f"uwsgi var name {name[:40].encode('latin-1')!r} is not a printable "
                                       f"ASCII token")
            if len(_GOOD_KEYS) < _GOOD_KEYS_KEPT:
                _GOOD_KEYS.add(name)
        if check_sizes:
            problem = _over_limit(name, value, limits)
            if problem is not None:
                return problem
        if name in _NOT_PASSED:
            continue
        if name in found:
            if name.startswith("HTTP_"):
                # nginx sends a repeated header field as repeated vars; joined as the HTTP environ joins them
                value = found[name] + ("; " if name == "HTTP_COOKIE" else ",") + value
            elif name == "CONTENT_LENGTH" and value != found[name]:
                return ParseError(400, "uwsgi CONTENT_LENGTH sent twice with different values")
            # otherwise the last one wins, as in uWSGI and PHP-FPM: a uwsgi_param after `include uwsgi_params`
            # (PATH_INFO, SCRIPT_NAME) is sent as well as the included one, and is meant to replace it
        found[name] = value
    return found


def _over_limit(name: str, text: str, limits: Limits) -> ParseError | None:
    if name in _URI_VARS:
        if limits.request_line and len(text) > limits.request_line:
            return ParseError(414, f"uwsgi var {name} is longer than {limits.request_line} bytes")
    elif limits.field_size and len(name) + len(text) > limits.field_size:
        return ParseError(431, f"uwsgi var {name} is longer than {limits.field_size} bytes")
    return None


def make_request(modifier1: int, found: dict[str, str], limits: Limits) -> UwsgiRequest | ParseError:
    """Check what every request needs (a method, a usable CONTENT_LENGTH within --max-body-size)."""
    method = found.get("REQUEST_METHOD")
    if not method:
        return ParseError(400, "uwsgi request without REQUEST_METHOD")
    if not _METHOD.fullmatch(method):
        return ParseError(400, f"uwsgi REQUEST_METHOD {method[:40]!r} is not a token")
    text = found.get("CONTENT_LENGTH", "").strip()
    if text and not text.isdigit():
        return ParseError(400, f"uwsgi CONTENT_LENGTH {text[:40]!r} is not a length")
    length = int(text or 0)
    if limits.body_size and length > limits.body_size:
        return ParseError(413, f"request body of {length} bytes is over the limit of {limits.body_size}")
    target = found.get("REQUEST_URI")
    if not target:
        query = found.get("QUERY_STRING", "")
        target = found.get("SCRIPT_NAME", "") + found.get("PATH_INFO", "") + (f"?{query}" if query else "")
    return UwsgiRequest(found, modifier1, length, method, target)


class PacketReader:
    """Collects one connection's packet from the bytes as they arrive; the request once its vars are here.

    `feed` returns None while more bytes are needed, then the UwsgiRequest (with the body bytes that came
    along in `leftover`) or a ParseError, once; the body itself is the connection's to read.
    """

    def __init__(self, limits: Limits):
        self.limits = limits
        self.buffer = bytearray()
        self.result: UwsgiRequest | ParseError | None = None

    @property
    def started(self) -> bool:
        """Whether any byte of the packet arrived (an idle connection is closed quietly, a started one is not)."""
        return bool(self.buffer) or self.result is not None

    def feed(self, data: bytes) -> UwsgiRequest | ParseError | None:
        """Add received bytes; the outcome once the var block is complete (or refused)."""
        if self.result is not None:
            return None
        buffer = self.buffer
        buffer += data
        if len(buffer) < HEADER_SIZE:
            return None
        modifier1, datasize, _ = read_header(buffer)
        problem = check_header(modifier1, datasize, self.limits)
        if problem is not None:
            self.result = problem
            return problem
        end = HEADER_SIZE + datasize
        if len(buffer) < end:
            return None
        found = parse_vars(memoryview(buffer)[HEADER_SIZE:end], self.limits)
        outcome = found if isinstance(found, ParseError) else make_request(modifier1, found, self.limits)
        if isinstance(outcome, UwsgiRequest):
            outcome.leftover = bytes(buffer[end:])
        self.buffer = bytearray()
        self.result = outcome
        return outcome

    def truncated(self) -> ParseError:
        """What to say when the connection ended (or timed out) inside the packet."""
        return ParseError(400, f"uwsgi packet truncated after {len(self.buffer)} bytes")


def encode_packet(pairs: dict[str, str] | list[tuple[str, str]], modifier1: int = MODIFIER_WSGI,
                  modifier2: int = 0) -> bytes:
    """A request packet's header and vars (the body, if any, follows it): what nginx's uwsgi_pass writes."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    block = bytearray()
    for key, value in items:
        for text in (key.encode("latin-1"), value.encode("latin-1")):
            block += _LENGTH.pack(len(text)) + text
    return _HEAD.pack(modifier1, len(block), modifier2) + bytes(block)


def health_request(path: str) -> bytes:
    """A worker's self-check: GET `path` as a uwsgi packet."""
    script, _, query = path.partition("?")
    return encode_packet({"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": script,
                          "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "self-check",
                          "SERVER_PORT": "0", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "self-check"})


def read_health_answer(data: bytes) -> tuple[int, bytes]:
    """The status and body of the answer to health_request (an HTTP/1.x head, then the body); 0 if unreadable."""
    head, _, body = data.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/1.") or not words[1].isdigit():
        return 0, body
    return int(words[1]), body
