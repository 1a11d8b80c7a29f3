"""FastCGI 1.0 (the application's side), sans-IO: records in, events out; record encoders for the answers.

`FastCGIParser.feed(bytes)` queues events (`next_event()`): BeginRequest, Params (the whole name-value
stream, once its empty record came), StdinData, StdinEnd, AbortRequest, GetValues, UnknownType, Refused (a
request answered with END_REQUEST alone: unknown role, a second request while one is open), TooLarge (params
past the limits: a CGI error response is due) and ProtocolError (the connection is unusable: nothing after it
is acted on). One request at a time per connection: FCGI_MPXS_CONNS is 0, and a second BEGIN_REQUEST while
one is open is refused with FCGI_CANT_MPX_CONN; what its sender still sends for it is dropped. Records for
a request answered before its stdin ended (a refusal, a 413) are dropped the same way, up to its end.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

VERSION = 1
HEADER = struct.Struct(">BBHHBx")  # version, type, request id, content length, padding length, reserved
BEGIN_BODY = struct.Struct(">HB5x")  # role, flags
END_BODY = struct.Struct(">IB3x")  # appStatus, protocolStatus
_LONG_LENGTH = struct.Struct(">I")  # a name or value length of 4 bytes (its top bit set)
MAX_CONTENT = 65535
OUT_PIECE = 65528  # a multiple of 8: full STDOUT records need no padding

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA = range(1, 9)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = 0, 1, 2, 3

MAX_IGNORED = 16  # refused or answered requests whose leftovers we still drop; past it, the peer misbehaves
CGI_VARIABLES = 64  # params beside the HTTP_* ones (nginx's fastcgi_params sends 19), on top of limits.fields


# -- events ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BeginRequest:
    """A responder request began; keep_conn: the sender wants the connection kept after END_REQUEST."""

    request_id: int
    keep_conn: bool


@dataclass(frozen=True)
class Params:
    """The request's name-value pairs, complete (bytes read as latin-1, as PEP 3333's environ holds them)."""

    request_id: int
    params: dict[str, str]


@dataclass(frozen=True)
class StdinData:
    """A piece of the request body."""

    request_id: int
    data: bytes


@dataclass(frozen=True)
class StdinEnd:
    """The request body ended (the empty FCGI_STDIN record)."""

    request_id: int


@dataclass(frozen=True)
class AbortRequest:
    """The sender gave up on the request (its client left)."""

    request_id: int


@dataclass(frozen=True)
class GetValues:
    """A management query of the application's variables (FCGI_MAX_CONNS, ...)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class UnknownType:
    """A management record of a type we do not know: answered with FCGI_UNKNOWN_TYPE."""

    record_type: int


@dataclass(frozen=True)
class Refused:
    """A request refused with END_REQUEST alone (protocol_status: FCGI_UNKNOWN_ROLE or FCGI_CANT_MPX_CONN)."""

    request_id: int
    protocol_status: int
    keep_conn: bool


@dataclass(frozen=True)
class TooLarge:
    """The request's params broke a limit: answer `status` (414, 431) without the app."""

    request_id: int
    status: int
    reason: str


@dataclass(frozen=True)
class ProtocolError:
    """The peer broke the protocol: log `reason` and close; no later byte is acted on."""

    reason: str


# -- the parser --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamLimits:
    """http.parser.Limits as FastCGI params: HTTP_* params are header fields; 0 means no limit."""

    request_line: int = 8190
    fields: int = 100
    field_size: int = 8190

    @property
    def stream_size(self) -> int:
        """Most bytes of encoded params held before they are complete (bounds memory)."""
        count = (self.fields or 1000) + CGI_VARIABLES
        return (self.request_line or 65536) * 4 + count * ((self.field_size or 65536) + 8)


class FastCGIParser:
    """One connection's records, one request at a time (see the module's docstring)."""

    def __init__(self, limits: ParamLimits | None = None):
        self.limits = limits or ParamLimits()
        self.events: deque = deque()
        self.buffer = bytearray()
        self.failed = False
        self.error = ""  # why, once failed
        self.request_id = 0  # the open request, 0 between requests
        self.in_params = False
        self.stdin_done = False
        self.params = bytearray()
        self.ignored: set[int] = set()  # ids whose records are dropped until their stdin ends

    @property
    def started(self) -> bool:
        """Whether some byte of a request (or a record) is here and not yet answered."""
        return bool(self.request_id or self.buffer or self.events)

    def next_event(self) -> object | None:
        """The next event, or None when more bytes are needed."""
        return self.events.popleft() if self.events else None

    def feed(self, data: bytes) -> None:
        """Take bytes from the peer; complete records become events."""
        if self.failed:
            return
        buffer = self.buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 8:
            version, kind, request_id, length, padding = HEADER.unpack_from(buffer, start)
            if version != VERSION:
                self._fail(f"record version {version}, not 1")
                break
            end = start + 8 + length
            if len(buffer) < end + padding:
                break
            self._record(kind, request_id, bytes(buffer[start + 8:end]))
            start = end + padding
            if self.failed:
                break
        del buffer[:start]

    def request_done(self) -> None:
        """The open request was answered: its unread stdin, if any, is dropped as it comes."""
        if self.request_id and not self.stdin_done:
            self._ignore(self.request_id)
        self.request_id = 0

    @property
    def draining(self) -> bool:
        """Whether some answered request's stdin has not ended yet."""
        return bool(self.ignored)

    def _fail(self, reason: str) -> None:
        self.failed, self.error = True, reason
        self.events.append(ProtocolError(reason))
        self.buffer.clear()

    def _ignore(self, request_id: int) -> None:
        self.ignored.add(request_id)
        if len(self.ignored) > MAX_IGNORED:
            self._fail(f"more than {MAX_IGNORED} refused requests still sending")

    def _record(self, kind: int, request_id: int, content: bytes) -> None:
        if request_id == 0:
            self._management(kind, content)
        elif kind == BEGIN_REQUEST:
            self._begin(request_id, content)
        elif request_id in self.ignored:
            if kind == STDIN and not content or kind == ABORT_REQUEST:
                self.ignored.discard(request_id)
        elif request_id != self.request_id:
            if kind == ABORT_REQUEST:
                return  # crossed our END_REQUEST on the wire: nothing left to abort
            self._fail(f"a record of type {kind} for request {request_id}, which is not open")
        elif kind == PARAMS:
            self._params(content)
        elif kind == STDIN:
            self._stdin(content)
        elif kind == ABORT_REQUEST:
            self.stdin_done = True  # the sender sends nothing more for it
            self.events.append(AbortRequest(request_id))
        else:
            self._fail(f"a record of type {kind} for request {request_id}")

    def _management(self, kind: int, content: bytes) -> None:
        if kind == GET_VALUES:
            pairs = decode_pairs(content)
            if pairs is None:
                self._fail("a malformed FCGI_GET_VALUES record")
            else:
                self.events.append(GetValues(tuple(name for name, _ in pairs)))
        elif kind in (BEGIN_REQUEST, PARAMS, STDIN, ABORT_REQUEST):
            self._fail(f"a record of type {kind} for request id 0")
        else:
            self.events.append(UnknownType(kind))

    def _begin(self, request_id: int, content: bytes) -> None:
        if len(content) != 8:
            self._fail(f"FCGI_BEGIN_REQUEST with {len(content)} bytes of body, not 8")
            return
        role, flags = BEGIN_BODY.unpack(content)
        keep_conn = bool(flags & KEEP_CONN)
        if request_id == self.request_id or request_id in self.ignored:
            self._fail(f"FCGI_BEGIN_REQUEST for request {request_id}, which is open already")
        elif self.request_id:
            self._ignore(request_id)
            self.events.append(Refused(request_id, CANT_MPX_CONN, keep_conn))
        elif role != RESPONDER:
            self._ignore(request_id)
            self.events.append(Refused(request_id, UNKNOWN_ROLE, keep_conn))
        else:
            self.request_id, self.in_params, self.stdin_done = request_id, True, False
            self.params.clear()
            self.events.append(BeginRequest(request_id, keep_conn))

    def _params(self, content: bytes) -> None:
        if not self.in_params:
            self._fail("FCGI_PARAMS after the params ended")
            return
        if content:
            self.params += content
            if len(self.params) > self.limits.stream_size:
                self._refuse(431, "the request's params are too large")
            return
        self.in_params = False
        size = len(self.params)
        pairs = decode_pairs(bytes(self.params))
        self.params.clear()
        if pairs is None:
            self._fail("malformed name-value pairs in FCGI_PARAMS")
            return
        params = dict(pairs)
        problem = self._check_limits(params, size)
        if problem is not None:
            self._refuse(*problem)
        else:
            self.events.append(Params(self.request_id, params))

    def _check_limits(self, params: dict[str, str], size: int) -> tuple[int, str] | None:
        limits = self.limits
        if size <= limits.request_line and size <= limits.field_size and len(params) <= limits.fields:
            return None  # the usual request: no value nor field can be longer than all of them together
        uri = params.get("REQUEST_URI", "")
        if limits.request_line and len(uri) > limits.request_line:
            return 414, "URI too long"
        fields = 0
        largest = 0  # the largest header field, as HTTP counts it ("NAME: value" less the HTTP_ prefix)
        for name, value in params.items():
            if name.startswith("HTTP_"):
                fields += 1
                if len(name) + len(value) > largest:
                    largest = len(name) + len(value)
        if limits.fields and fields > limits.fields:
            return 431, "too many header fields"
        if len(params) - fields > CGI_VARIABLES + (limits.fields or 1000):
            return 431, "too many params"
        if limits.field_size and largest - 3 > limits.field_size:
            return 431, "a header field is too large"
        return None

    def _refuse(self, status: int, reason: str) -> None:
        request_id = self.request_id
        self.in_params = False
        self.params.clear()
        self.request_id = 0
        self._ignore(request_id)
        self.events.append(TooLarge(request_id, status, reason))

    def _stdin(self, content: bytes) -> None:
        if self.in_params:
            self._fail("FCGI_STDIN before the params ended")
        elif self.stdin_done:
            self._fail("FCGI_STDIN after the stdin ended")
        elif content:
            self.events.append(StdinData(self.request_id, content))
        else:
            self.stdin_done = True
            self.events.append(StdinEnd(self.request_id))


def decode_pairs(data: bytes) -> list[tuple[str, str]] | None:
    """FastCGI name-value pairs (lengths of 1 byte, or 4 with the top bit set); None when malformed.

    The block is decoded once and the names and values are slices of it: a decode per string was most of
    the parse (nginx sends some 20 params a request)."""
    text = data.decode("latin-1")
    pairs = []
    position, end = 0, len(data)
    while position < end:
        name_length = data[position]
        if name_length < 0x80:
            position += 1
        elif position + 4 <= end:
            name_length = _LONG_LENGTH.unpack_from(data, position)[0] & 0x7FFFFFFF
            position += 4
        else:
            return None
        if position >= end:
            return None
        value_length = data[position]
        if value_length < 0x80:
            position += 1
        elif position + 4 <= end:
            value_length = _LONG_LENGTH.unpack_from(data, position)[0] & 0x7FFFFFFF
            position += 4
        else:
            return None
        middle = position + name_length
        after = middle + value_length
        if after > end:
            return None
        pairs.append((text[position:middle], text[middle:after]))
        position = after
    return pairs


# -- encoders ----------------------------------------------------------------------------------------------

def record(kind: int, request_id: int, content: bytes = b"") -> bytes:
    """One record (content up to 65,535 bytes), padded to a multiple of 8 bytes as the spec recommends."""
    padding = -len(content) % 8
    return HEADER.pack(VERSION, kind, request_id, len(content), padding) + content + bytes(padding)


def stream(kind: int, request_id: int, data: bytes) -> bytes:
    """A piece of a stream (STDOUT, STDERR, STDIN, PARAMS) as records of at most 65,535 bytes; b"" for no
    data (the empty record ends a stream: use record() for that)."""
    if len(data) <= MAX_CONTENT:
        return record(kind, request_id, data) if data else b""
    view = memoryview(data)
    return b"".join(record(kind, request_id, bytes(view[at:at + OUT_PIECE]))
                    for at in range(0, len(data), OUT_PIECE))


def end_request(request_id: int, app_status: int = 0, protocol_status: int = REQUEST_COMPLETE) -> bytes:
    """FCGI_END_REQUEST."""
    return record(END_REQUEST, request_id, END_BODY.pack(app_status & 0xFFFFFFFF, protocol_status))


def end_response(request_id: int, app_status: int = 0) -> bytes:
    """The end of a response: the empty STDOUT record, then END_REQUEST (request complete)."""
    return record(STDOUT, request_id) + end_request(request_id, app_status)


def encode_pairs(pairs: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """Name-value pairs, each length in 1 byte below 128, else in 4."""
    out = bytearray()
    for name, value in (pairs.items() if isinstance(pairs, dict) else pairs):
        raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
        for raw in (raw_name, raw_value):
            out += bytes((len(raw),)) if len(raw) < 0x80 else (len(raw) | 0x80000000).to_bytes(4, "big")
        out += raw_name + raw_value
    return bytes(out)


def get_values_result(values: dict[str, str]) -> bytes:
    """FCGI_GET_VALUES_RESULT."""
    return record(GET_VALUES_RESULT, 0, encode_pairs(values))


def unknown_type(kind: int) -> bytes:
    """FCGI_UNKNOWN_TYPE for a management record we do not know."""
    return record(UNKNOWN_TYPE, 0, bytes((kind,)) + bytes(7))


def begin_request(request_id: int, role: int = RESPONDER, keep_conn: bool = False) -> bytes:
    """FCGI_BEGIN_REQUEST (the web server's side: tests and the self-check)."""
    return record(BEGIN_REQUEST, request_id, BEGIN_BODY.pack(role, KEEP_CONN if keep_conn else 0))


def request(request_id: int, params: dict[str, str], body: bytes = b"", keep_conn: bool = False) -> bytes:
    """A whole responder request as a web server sends it: begin, params, their end, stdin, its end."""
    return (begin_request(request_id, keep_conn=keep_conn) + stream(PARAMS, request_id, encode_pairs(params))
            + record(PARAMS, request_id) + stream(STDIN, request_id, body) + record(STDIN, request_id))


# -- reading answers (the web server's side: the self-check and tests) -------------------------------------

@dataclass(frozen=True)
class Record:
    """One record as read back."""

    kind: int
    request_id: int
    content: bytes


def read_records(data: bytes) -> list[Record]:
    """Every whole record in `data` (a trailing partial record is left out)."""
    records, position = [], 0
    while len(data) - position >= 8:
        _, kind, request_id, length, padding = HEADER.unpack_from(data, position)
        if len(data) < position + 8 + length + padding:
            break
        records.append(Record(kind, request_id, data[position + 8:position + 8 + length]))
        position += 8 + length + padding
    return records


def split_cgi_response(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """A CGI response (what STDOUT carried): status (200 without a Status field), fields, body."""
    head, _, body = output.partition(b"\r\n\r\n")
    status, fields = 200, []
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            code = value.strip()[:3]
            status = int(code) if code.isdigit() else 0
        elif name:
            fields.append((name, value.strip()))
    return status, fields, body


def health_request(path: str) -> bytes:
    """A new worker's probe of its own health endpoint, as nginx would send it (no keep-alive)."""
    return request(1, {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "SCRIPT_NAME": "", "PATH_INFO": path,
                       "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "self-check",
                       "SERVER_PORT": "0", "REMOTE_ADDR": "127.0.0.1", "GATEWAY_INTERFACE": "CGI/1.1"})


def read_health_answer(data: bytes) -> tuple[int, bytes]:
    """(status, body) of the answer to health_request; status 0 unless STDOUT and END_REQUEST both came."""
    records = read_records(data)
    output = b"".join(r.content for r in records if r.kind == STDOUT and r.request_id == 1)
    ended = any(r.kind == END_REQUEST and r.request_id == 1 for r in records)
    if not ended or not output:
        return 0, output
    status, _, body = split_cgi_response(output)
    return status, body
