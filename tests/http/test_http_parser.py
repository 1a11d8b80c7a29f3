"""The sans-IO request parser: bytes in, RequestHead / BodyData / EndOfMessage / ParseError out.

Every test feeds literal bytes to a RequestParser and compares the queued events; no sockets, no clock.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgistack.http.parser import (
    FORBIDDEN_TRAILERS,
    BodyData,
    EndOfMessage,
    Limits,
    ParseError,
    RequestHead,
    RequestParser,
)

# -- helpers -------------------------------------------------------------------------------------------


def parse(data: bytes, limits: Limits = Limits()) -> list:
    parser = RequestParser(limits)
    parser.feed(data)
    return list(parser.events)


def parse_pieces(pieces, limits: Limits = Limits()) -> tuple[list, RequestParser]:
    parser = RequestParser(limits)
    for piece in pieces:
        parser.feed(piece)
    return list(parser.events), parser


def only_head(data: bytes, limits: Limits = Limits()) -> RequestHead:
    """The head of a single bodiless request, checking it is followed by EndOfMessage and nothing else."""
    events = parse(data, limits)
    assert len(events) == 2, events
    head, end = events
    assert isinstance(head, RequestHead), events
    assert end == EndOfMessage()
    return head


def error_of(data: bytes, limits: Limits = Limits()) -> ParseError:
    """The ParseError a request ends with (events of an accepted head may come before it)."""
    parser = RequestParser(limits)
    parser.feed(data)
    events = list(parser.events)
    assert events, "no event at all"
    assert isinstance(events[-1], ParseError), events
    assert parser.failed
    assert not any(isinstance(e, ParseError) for e in events[:-1])
    return events[-1]


def body_of(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, BodyData))


def req(head_lines: str | bytes, body: bytes = b"", request_line: bytes = b"GET / HTTP/1.1") -> bytes:
    """A request from a request line, header lines separated by \\n (CRLF on the wire) and a body."""
    if isinstance(head_lines, str):
        head_lines = head_lines.encode("latin-1")
    lines = [line for line in head_lines.split(b"\n") if line]
    return request_line + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def chunked_post(chunks: bytes, extra: str = "") -> bytes:
    return req("Host: x\nTransfer-Encoding: chunked\n" + extra, chunks, b"POST /upload HTTP/1.1")


# -- simple requests -----------------------------------------------------------------------------------


def test_simple_get():
    head = only_head(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert head.method == "GET"
    assert head.target == "/index.html"
    assert head.version == "1.1"
    assert head.headers == [("Host", "example.com")]
    assert head.keep_alive is True
    assert head.chunked is False
    assert head.content_length is None
    assert head.expect_continue is False
    assert head.upgrade is False
    assert head.dropped_headers == []


def test_next_event_pops_in_order_then_none():
    parser = RequestParser()
    assert parser.next_event() is None
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == EndOfMessage()
    assert parser.next_event() is None
    assert not parser.failed


def test_empty_feed_is_a_no_op():
    parser = RequestParser()
    parser.feed(b"")
    assert list(parser.events) == []
    assert not parser.failed


def test_partial_head_gives_no_event_yet():
    events, parser = parse_pieces([b"GET / HTTP/1.1\r\nHost: x\r\n"])
    assert events == []
    assert not parser.failed


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                                    "PROPFIND", "MKCOL", "REPORT", "PURGE"])
def test_methods_are_kept(method):
    head = only_head(req("Host: x", request_line=f"{method} /m HTTP/1.1".encode()))
    assert head.method == method


@pytest.mark.parametrize("target", [
    "/",
    "/a/b/c",
    "/search?q=1&r=two",
    "/a%20b?x=%41%42",
    "/caf%C3%A9",
    "/%2F%2f/..%2F",
    "/path;params?x=1",
    "/?",
    "/a?b?c",
    "/~user/file.txt",
    "/a+b",
    "/" + "x" * 2000,
    "http://example.com/absolute?x=1",
    "https://example.com:8443/p",
    "http://example.com",
    "*",
])
def test_target_is_kept_raw(target):
    method = b"OPTIONS" if target == "*" else b"GET"
    head = only_head(req("Host: example.com", request_line=method + b" " + target.encode() + b" HTTP/1.1"))
    assert head.target == target


@pytest.mark.parametrize("raw, expected", [
    ("Host: x\nAccept: */*", [("Host", "x"), ("Accept", "*/*")]),
    ("host: x\nX-CUSTOM: Value", [("host", "x"), ("X-CUSTOM", "Value")]),
    ("Host: x\nX-Empty:", [("Host", "x"), ("X-Empty", "")]),
    ("Host: x\nX-A: 1\nX-A: 2", [("Host", "x"), ("X-A", "1"), ("X-A", "2")]),
    ("Host: x\nX-Spaces:    leading", [("Host", "x"), ("X-Spaces", "leading")]),
    ("Host: x\nX-Trail: value   ", [("Host", "x"), ("X-Trail", "value")]),
    ("Host: x\nX-Trail-Tab: value\t \t", [("Host", "x"), ("X-Trail-Tab", "value")]),
    ("Host: x\nX-Inner: a  b\tc", [("Host", "x"), ("X-Inner", "a  b\tc")]),
    ("Host: x\nX-Tokens: !#$%&'*+-.^_`|~", [("Host", "x"), ("X-Tokens", "!#$%&'*+-.^_`|~")]),
    ("Host: x\nX!#$%&'*+-.^`|~: tokenchars", [("Host", "x"), ("X!#$%&'*+-.^`|~", "tokenchars")]),
    ("Host: x\nX-Colon: a:b:c", [("Host", "x"), ("X-Colon", "a:b:c")]),
    ("Host: x\nX-Quote: \"quoted, string\"", [("Host", "x"), ("X-Quote", '"quoted, string"')]),
])
def test_headers_in_order_with_case_and_ows_handling(raw, expected):
    assert only_head(req(raw)).headers == expected


def test_obs_text_in_value_decoded_as_latin1():
    head = only_head(b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n")
    assert head.header("X-Name") == "caf\xc3\xa9 \xff"


def test_header_lookup_is_case_insensitive_and_first_wins():
    head = only_head(req("Host: x\nX-A: 1\nx-a: 2"))
    assert head.header("x-A") == "1"
    assert head.header("HOST") == "x"
    assert head.header("missing") is None


def test_leading_empty_lines_before_request_are_tolerated():
    head = only_head(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.target == "/"


# -- keep-alive ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version, connection, keep_alive", [
    ("1.1", None, True),
    ("1.1", "keep-alive", True),
    ("1.1", "close", False),
    ("1.1", "Close", False),
    ("1.1", "CLOSE", False),
    ("1.1", "keep-alive, close", False),
    ("1.1", "close, TE", False),
    ("1.1", "TE", True),
    ("1.0", None, False),
    ("1.0", "keep-alive", True),
    ("1.0", "Keep-Alive", True),
    ("1.0", "close", False),
    ("1.0", "TE", False),
])
def test_keep_alive(version, connection, keep_alive):
    lines = "Host: x\n" + (f"Connection: {connection}\n" if connection else "")
    head = only_head(req(lines, request_line=f"GET / HTTP/{version}".encode()))
    assert head.version == version
    assert head.keep_alive is keep_alive


def test_http10_without_host_is_fine():
    head = only_head(b"GET / HTTP/1.0\r\n\r\n")
    assert head.version == "1.0"
    assert head.headers == []


# -- bodies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"a", b"hello world", b"\x00\xff\r\n\r\n" * 10, bytes(range(256)) * 40])
def test_content_length_body(body):
    events = parse(req(f"Host: x\nContent-Length: {len(body)}", body, b"POST / HTTP/1.1"))
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.content_length == len(body)
    assert head.chunked is False
    assert body_of(events) == body
    assert events[-1] == EndOfMessage()
    assert all(isinstance(e, BodyData) for e in events[1:-1])


def test_content_length_body_in_pieces_waits_for_the_rest():
    parser = RequestParser()
    parser.feed(req("Host: x\nContent-Length: 10", b"01234", b"POST / HTTP/1.1"))
    events = list(parser.events)
    assert isinstance(events[0], RequestHead)
    assert body_of(events) == b"01234"
    assert EndOfMessage() not in events
    parser.feed(b"56789")
    events = list(parser.events)
    assert body_of(events) == b"0123456789"
    assert events[-1] == EndOfMessage()


def test_content_length_with_trailing_space_accepted():
    events = parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3 \r\n\r\nabc")
    assert events[0].content_length == 3
    assert body_of(events) == b"abc"


def test_get_with_body_is_delivered():
    events = parse(req("Host: x\nContent-Length: 3", b"abc"))
    assert events[0].method == "GET"
    assert body_of(events) == b"abc"


@pytest.mark.parametrize("chunks, body", [
    (b"0\r\n\r\n", b""),
    (b"3\r\nabc\r\n0\r\n\r\n", b"abc"),
    (b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"0003\r\nabc\r\n0\r\n\r\n", b"abc"),
    (b"3;ext=1\r\nabc\r\n0\r\n\r\n", b"abc"),
    (b"3;ext=\"quoted\"\r\nabc\r\n0;last\r\n\r\n", b"abc"),
    (b"3;a;b=c\r\nabc\r\n0\r\n\r\n", b"abc"),
    (b"5\r\n\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r\n\r"),
    (b"3\r\nabc\r\n0\r\nX-Trailer: value\r\n\r\n", b"abc"),
    (b"3\r\nabc\r\n0\r\nX-T1: a\r\nX-T2: b\r\n\r\n", b"abc"),
    (b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", b"abc"),
])
def test_chunked_body(chunks, body):
    events = parse(chunked_post(chunks))
    head = events[0]
    assert head.chunked is True
    assert head.content_length is None
    assert body_of(events) == body
    assert events[-1] == EndOfMessage()


@pytest.mark.parametrize("value", ["chunked", "Chunked", "CHUNKED"])
def test_transfer_encoding_chunked_any_case(value):
    events = parse(req(f"Host: x\nTransfer-Encoding: {value}", b"1\r\nz\r\n0\r\n\r\n", b"POST / HTTP/1.1"))
    assert events[0].chunked is True
    assert body_of(events) == b"z"


def test_trailers_are_not_added_to_headers():
    events = parse(chunked_post(b"3\r\nabc\r\n0\r\nX-Trailer: t\r\nX_Under: u\r\n\r\n"))
    head = events[0]
    assert head.headers == [("Host", "x"), ("Transfer-Encoding", "chunked")]
    assert head.header("X-Trailer") is None
    assert head.dropped_headers == []
    assert events[-1] == EndOfMessage()


def test_trailer_field_over_field_size_is_431():
    limits = Limits(field_size=100)
    error = error_of(chunked_post(b"0\r\nX-T: " + b"a" * 200 + b"\r\n\r\n"), limits)
    assert error.status == 431


def test_head_with_content_length_body_still_delivers_it():
    events = parse(req("Host: x\nContent-Length: 3", b"abc", b"HEAD / HTTP/1.1"))
    assert events[0].method == "HEAD"
    assert body_of(events) == b"abc"


# -- pipelining ----------------------------------------------------------------------------------------

PIPELINE = (
    b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    b"GET /four HTTP/1.0\r\n\r\n"
)


def split_messages(events):
    """[(head, body, ended)] for each message, and the trailing ParseError or None."""
    messages = []
    error = None
    for event in events:
        if isinstance(event, RequestHead):
            messages.append([event, b"", False])
        elif isinstance(event, BodyData):
            messages[-1][1] += event.data
        elif isinstance(event, EndOfMessage):
            messages[-1][2] = True
        else:
            error = event
    return [tuple(m) for m in messages], error


def test_pipelined_requests_in_one_feed_in_order():
    events = parse(PIPELINE)
    messages, error = split_messages(events)
    assert error is None
    assert [(h.method, h.target, body, ended) for h, body, ended in messages] == [
        ("GET", "/one", b"", True),
        ("POST", "/two", b"hello", True),
        ("POST", "/three", b"abc", True),
        ("GET", "/four", b"", True),
    ]
    # the exact sequence, not just the grouping
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RequestHead", "EndOfMessage",
                     "RequestHead", "BodyData", "EndOfMessage",
                     "RequestHead", "BodyData", "EndOfMessage",
                     "RequestHead", "EndOfMessage"]


def test_byte_at_a_time_gives_the_same_messages():
    one = split_messages(parse(PIPELINE))
    events, parser = parse_pieces([PIPELINE[i:i + 1] for i in range(len(PIPELINE))])
    assert split_messages(events) == one
    assert not parser.failed


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\x00\x01\x02",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
])
def test_good_request_then_garbage_keeps_the_good_request(garbage):
    events = parse(b"GET /good HTTP/1.1\r\nHost: x\r\n\r\n" + garbage)
    assert isinstance(events[0], RequestHead)
    assert events[0].target == "/good"
    assert events[1] == EndOfMessage()
    assert len(events) == 3
    assert isinstance(events[2], ParseError)
    assert events[2].status == 400


def test_good_request_with_body_then_garbage():
    events = parse(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nokNOT HTTP\r\n\r\n")
    assert [type(e).__name__ for e in events] == ["RequestHead", "BodyData", "EndOfMessage", "ParseError"]
    assert body_of(events) == b"ok"


# -- failure is terminal -------------------------------------------------------------------------------


def test_after_parse_error_feed_adds_nothing():
    parser = RequestParser()
    parser.feed(b"BAD\x00REQUEST\r\n\r\n")
    assert parser.failed
    events = list(parser.events)
    assert len(events) == 1 and isinstance(events[0], ParseError)
    for more in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"x" * 100000, b"\r\n"):
        parser.feed(more)
    assert list(parser.events) == events
    assert parser.failed


def test_after_limit_error_feed_adds_nothing():
    parser = RequestParser(Limits(request_line=10))
    parser.feed(b"GET /" + b"a" * 50 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parser.failed
    assert [e.status for e in parser.events] == [414]
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [e.status for e in parser.events] == [414]


def test_not_failed_after_good_requests():
    parser = RequestParser()
    parser.feed(PIPELINE)
    assert not parser.failed


# -- smuggling and strictness: all 400 -----------------------------------------------------------------

H = b"Host: x\r\n"
SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "cl_and_te_zero": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
    "duplicate_cl_same": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "duplicate_cl_diff": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "list_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    "list_cl_nospace": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3,3\r\n\r\nabc",
    "negative_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "plus_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc",
    "hex_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc",
    "float_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3.0\r\n\r\nabc",
    "empty_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n",
    "inner_space_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nabc",
    "overflow_cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n",
    "bad_chunk_size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_0x": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_negative": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_leading_space": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_trailing_space": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow_17": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    "chunk_missing_crlf": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
    "chunk_too_long_data": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
    "chunk_lf_only_size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    "chunk_lf_only_data": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
    "chunk_bare_cr_size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\rabc\r\n0\r\n\r\n",
    "trailer_bad_name": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nBad Name: 1\r\n\r\n",
    "trailer_obs_fold": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nT: a\r\n b\r\n\r\n",
    "bare_cr_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n",
    "bare_cr_line_end": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\r\n\r\n",
    "bare_cr_request_line": b"GET / HTTP/1.1\r" + H + b"\r\n",
    "bare_lf_everywhere": b"GET / HTTP/1.1\nHost: x\n\n",
    "bare_lf_request_line": b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    "bare_lf_header": b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    "bare_lf_end_of_head": b"GET / HTTP/1.1\r\nHost: x\r\n\n",
    "obs_fold_space": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n",
    "obs_fold_tab": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n",
    "obs_fold_first_header": b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n",
    "del_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n",
    "ctl_01_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n",
    "ctl_1f_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x1fb\r\n\r\n",
    "ctl_0b_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x0bb\r\n\r\n",
    "ctl_0c_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x0cb\r\n\r\n",
    "escape_in_value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x1b[31mb\r\n\r\n",
    "space_in_name": b"GET / HTTP/1.1\r\n" + H + b"Bad Name: 1\r\n\r\n",
    "paren_in_name": b"GET / HTTP/1.1\r\n" + H + b"X(: 1\r\n\r\n",
    "slash_in_name": b"GET / HTTP/1.1\r\n" + H + b"X/Y: 1\r\n\r\n",
    "at_in_name": b"GET / HTTP/1.1\r\n" + H + b"X@Y: 1\r\n\r\n",
    "brace_in_name": b"GET / HTTP/1.1\r\n" + H + b"X{: 1\r\n\r\n",
    "quote_in_name": b"GET / HTTP/1.1\r\n" + H + b"X\": 1\r\n\r\n",
    "nul_in_name": b"GET / HTTP/1.1\r\n" + H + b"X\x00Y: 1\r\n\r\n",
    "high_byte_in_name": b"GET / HTTP/1.1\r\n" + H + b"X\xe9: 1\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "tab_before_colon": b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",
    "empty_name": b"GET / HTTP/1.1\r\n" + H + b": value\r\n\r\n",
    "no_colon": b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n",
    "te_gzip": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
    "te_chunked_gzip": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_xchunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_chunkedx": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n",
    "te_identity": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
    "te_empty": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n",
    "te_duplicate": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_chunked_twice_list": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te_chunked_then_gzip_header": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    "te_vertical_tab": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    "te_http10_chunked": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_http10_gzip": b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
    "te_http10_with_host": b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "missing_host_11": b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two_hosts_same": b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
    "lowercase_method": b"get / HTTP/1.1\r\n" + H + b"\r\n",
    "mixed_case_method": b"Get / HTTP/1.1\r\n" + H + b"\r\n",
    "unknown_method": b"FOO / HTTP/1.1\r\n" + H + b"\r\n",
    "space_in_target": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "ctl_in_target": b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n",
    "nul_in_target": b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n",
    "del_in_target": b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n",
    "raw_utf8_in_target": b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n",
    "lowercase_version": b"GET / http/1.1\r\n" + H + b"\r\n",
    "version_garbage": b"GET / HTTP/1.1x\r\n" + H + b"\r\n",
    "version_two_digits": b"GET / HTTP/1.10\r\n" + H + b"\r\n",
    "request_line_only_method": b"GET\r\n" + H + b"\r\n",
    "binary_garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.mark.parametrize("data", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smuggling_and_strictness_vectors_are_400(data):
    error = error_of(data)
    assert error.status == 400
    assert error.reason


@pytest.mark.parametrize("data", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smuggling_vectors_never_deliver_a_second_request(data):
    """Even fed one byte at a time, a rejected request never yields a head after a rejected framing."""
    events, parser = parse_pieces([data[i:i + 1] for i in range(len(data))])
    assert parser.failed
    assert isinstance(events[-1], ParseError)
    assert events[-1].status == 400
    assert sum(isinstance(e, RequestHead) for e in events) <= 1


@pytest.mark.parametrize("data", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smuggling_vector_behind_a_good_request(data):
    events = parse(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + data)
    assert events[0].target == "/first"
    assert events[1] == EndOfMessage()
    assert isinstance(events[-1], ParseError) and events[-1].status == 400


@pytest.mark.parametrize("version, statuses", [
    (b"HTTP/2.0", (505,)),
    (b"HTTP/0.9", (505,)),
    (b"HTTP/3.0", (505,)),
    (b"HTTP/9.9", (505,)),
    (b"HTTP/0.0", (505,)),
    (b"HTTP/2.1", (505,)),
])
def test_unsupported_versions(version, statuses):
    error = error_of(b"GET / " + version + b"\r\nHost: x\r\n\r\n")
    assert error.status in statuses


def test_http09_simple_request_is_refused():
    error = error_of(b"GET /\r\n\r\n")
    assert 400 <= error.status < 600


@pytest.mark.parametrize("target", [b"example.com:443", b"127.0.0.1:22"])
def test_connect_is_405(target):
    error = error_of(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n")
    assert error.status == 405


@pytest.mark.parametrize("value", ["200-ok", "100-continue, foo", "foo", "", "100-continuex"])
def test_expect_other_than_100_continue_is_417(value):
    error = error_of(req(f"Host: x\nExpect: {value}\nContent-Length: 0", request_line=b"POST / HTTP/1.1"))
    assert error.status == 417


@pytest.mark.parametrize("version, value, expected", [
    ("1.1", "100-continue", True),
    ("1.1", "100-Continue", True),
    ("1.1", "100-CONTINUE", True),
    ("1.0", "100-continue", False),
    ("1.1", None, False),
    ("1.0", None, False),
])
def test_expect_continue_only_for_http11(version, value, expected):
    lines = "Host: x\nContent-Length: 2\n" + (f"Expect: {value}\n" if value else "")
    events = parse(req(lines, b"ok", f"POST / HTTP/{version}".encode()))
    assert events[0].expect_continue is expected
    assert body_of(events) == b"ok"


def test_expect_continue_head_comes_before_the_body_arrives():
    events, _ = parse_pieces([req("Host: x\nExpect: 100-continue\nContent-Length: 5", b"",
                                  b"PUT /f HTTP/1.1")])
    assert len(events) == 1
    assert events[0].expect_continue is True


# -- limits --------------------------------------------------------------------------------------------


def test_default_limits():
    limits = Limits()
    assert (limits.request_line, limits.fields, limits.field_size, limits.body_size) == (8190, 100, 8190, 0)


@pytest.mark.parametrize("limits, expected", [
    (Limits(100, 5, 50, 0), 100 + 5 * 54 + 4),
    (Limits(), 8190 + 100 * 8194 + 4),
    (Limits(0, 0, 0, 0), 65536 + 1000 * 65540 + 4),
])
def test_head_size(limits, expected):
    assert limits.head_size == expected


@pytest.mark.parametrize("length, ok", [(99, True), (100, True), (101, False), (5000, False)])
def test_request_target_limit(length, ok):
    limits = Limits(request_line=100)
    target = b"/" + b"a" * (length - 1)
    data = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    if ok:
        assert only_head(data, limits).target == target.decode()
    else:
        assert error_of(data, limits).status == 414


def test_request_target_limit_counts_query_string():
    limits = Limits(request_line=50)
    assert error_of(b"GET /?" + b"q" * 60 + b" HTTP/1.1\r\nHost: x\r\n\r\n", limits).status == 414


def test_request_target_limit_fed_in_pieces():
    limits = Limits(request_line=100)
    pieces = [b"GET /"] + [b"a" * 10] * 20 + [b" HTTP/1.1\r\nHost: x\r\n\r\n"]
    events, parser = parse_pieces(pieces, limits)
    assert parser.failed
    assert [e.status for e in events] == [414]


@pytest.mark.parametrize("value_size, ok", [(40, True), (45, True), (46, False), (500, False)])
def test_field_size_limit(value_size, ok):
    limits = Limits(field_size=50)
    data = req("Host: x\nX-Big: " + "v" * value_size)  # name 5 + value
    if ok:
        assert only_head(data, limits).header("X-Big") == "v" * value_size
    else:
        assert error_of(data, limits).status == 431


def test_field_size_counts_the_name_too():
    limits = Limits(field_size=50)
    assert error_of(req("Host: x\n" + "N" * 60 + ": v"), limits).status == 431


@pytest.mark.parametrize("count, ok", [(1, True), (4, True), (5, True), (6, False), (50, False)])
def test_fields_count_limit(count, ok):
    limits = Limits(fields=5)
    lines = "Host: x\n" + "".join(f"H{i}: v\n" for i in range(count - 1))
    if ok:
        assert len(only_head(req(lines), limits).headers) == count
    else:
        assert error_of(req(lines), limits).status == 431


def test_dropped_headers_count_towards_fields_limit():
    limits = Limits(fields=3)
    assert error_of(req("Host: x\nA_1: 1\nA_2: 2\nB: 3"), limits).status == 431


def test_head_bigger_than_head_size_in_pieces_is_431():
    limits = Limits(request_line=100, fields=5, field_size=50)  # head_size 374
    pieces = [b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: "] + [b"a" * 10] * 50
    events, parser = parse_pieces(pieces, limits)
    assert parser.failed
    assert [e.status for e in events] == [431]


def test_head_size_is_enforced_before_the_field_completes():
    limits = Limits(request_line=100, fields=5, field_size=50)
    parser = RequestParser(limits)
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX: ")
    fed = 0
    while not parser.failed:
        parser.feed(b"b" * 7)
        fed += 7
        assert fed < 1000, "the head limit never triggered"
    assert [e.status for e in parser.events] == [431]
    assert fed <= limits.head_size + 7


def test_body_does_not_count_towards_head_size():
    limits = Limits(request_line=100, fields=5, field_size=50)
    pieces = [req("Host: x\nContent-Length: 2000", b"", b"POST / HTTP/1.1")] + [b"z" * 100] * 20
    events, parser = parse_pieces(pieces, limits)
    assert not parser.failed
    assert body_of(events) == b"z" * 2000
    assert events[-1] == EndOfMessage()


def test_many_requests_in_pieces_under_small_limits():
    limits = Limits(request_line=100, fields=5, field_size=50)
    one = b"GET /r HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"
    pieces = []
    for _ in range(30):
        pieces += [one[:10], one[10:30], one[30:]]
    events, parser = parse_pieces(pieces, limits)
    assert not parser.failed
    assert sum(isinstance(e, RequestHead) for e in events) == 30


def test_pipelined_head_split_after_a_body_is_not_431():
    limits = Limits(request_line=100, fields=5, field_size=50)  # head_size 374
    events, parser = parse_pieces([
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n" + b"a" * 400 + b"GET /next HTTP/1.1\r\n",
        b"Host: x\r\n\r\n",
    ], limits)
    assert not parser.failed, events
    assert [e.target for e in events if isinstance(e, RequestHead)] == ["/", "/next"]


@pytest.mark.parametrize("length, ok", [(0, True), (99, True), (100, True), (101, False), (10 ** 9, False)])
def test_content_length_over_body_size_is_413_at_the_head(length, ok):
    limits = Limits(body_size=100)
    data = req(f"Host: x\nContent-Length: {length}", request_line=b"POST / HTTP/1.1")
    events = parse(data, limits)
    if ok:
        assert isinstance(events[0], RequestHead)
        assert events[0].content_length == length
    else:
        assert events == [ParseError(413, events[0].reason)]


@pytest.mark.parametrize("chunk_sizes, ok", [
    ([50, 50], True),
    ([100], True),
    ([101], False),
    ([60, 41], False),
    ([10] * 11, False),
])
def test_chunked_body_over_body_size_is_413(chunk_sizes, ok):
    limits = Limits(body_size=100)
    chunks = b"".join(b"%x\r\n%s\r\n" % (n, b"c" * n) for n in chunk_sizes) + b"0\r\n\r\n"
    events = parse(chunked_post(chunks), limits)
    assert isinstance(events[0], RequestHead)
    if ok:
        assert events[-1] == EndOfMessage()
        assert len(body_of(events)) == sum(chunk_sizes)
    else:
        assert isinstance(events[-1], ParseError) and events[-1].status == 413
        assert len(body_of(events)) <= 100


def test_zero_limits_mean_unlimited():
    limits = Limits(0, 0, 0, 0)
    lines = "Host: x\nX-Big: " + "v" * 20000 + "\n" + "".join(f"H{i}: {i}\n" for i in range(300))
    data = req(lines, b"b" * 50000, b"POST /" + b"p" * 10000 + b" HTTP/1.1")
    data = data.replace(b"Host: x\r\n", b"Host: x\r\nContent-Length: 50000\r\n", 1)
    events = parse(data, limits)
    assert isinstance(events[0], RequestHead)
    assert len(events[0].headers) == 303
    assert body_of(events) == b"b" * 50000
    assert events[-1] == EndOfMessage()


# -- header names with "_" -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X_Forwarded_For", "Content_Length", "_", "a_b", "Host_", "_Host"])
def test_header_names_with_underscore_are_dropped(name):
    head = only_head(req(f"Host: x\n{name}: evil\nX-Kept: yes"))
    assert head.headers == [("Host", "x"), ("X-Kept", "yes")]
    assert head.dropped_headers == [name]


def test_underscore_content_length_does_not_frame_the_body():
    events = parse(req("Host: x\nContent_Length: 5", b"", b"POST / HTTP/1.1"))
    assert events[0].content_length is None
    assert events[0].dropped_headers == ["Content_Length"]
    assert events[-1] == EndOfMessage()


def test_dropped_headers_are_per_request():
    events = parse(req("Host: x\nA_B: 1") + req("Host: x\nC: 2"))
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert heads[0].dropped_headers == ["A_B"]
    assert heads[1].dropped_headers == []
    assert heads[1].headers == [("Host", "x"), ("C", "2")]


# -- upgrade -------------------------------------------------------------------------------------------


def test_websocket_upgrade_is_served_as_plain_http_then_closed():
    data = req("Host: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13")
    events = parse(data)
    head = events[0]
    assert head.upgrade is True
    assert head.keep_alive is False
    assert head.header("Upgrade") == "websocket"
    assert events[1:] == [EndOfMessage()]


def test_upgrade_header_without_connection_upgrade_is_ordinary():
    head = only_head(req("Host: x\nUpgrade: websocket"))
    assert head.upgrade is False
    assert head.keep_alive is True


def test_upgrade_followed_by_bytes_in_same_feed_gives_one_request():
    data = req("Host: x\nUpgrade: websocket\nConnection: Upgrade") + b"\x81\x85frame-bytes"
    events = parse(data)
    assert sum(isinstance(e, RequestHead) for e in events) == 1
    assert events[0].upgrade is True
    assert events[0].keep_alive is False


def test_upgrade_request_body_is_not_silently_lost():
    data = req("Host: x\nUpgrade: h2c\nConnection: Upgrade, HTTP2-Settings\nHTTP2-Settings: AAMAAABkAAQAAP__"
               "\nContent-Length: 5", b"hello", b"POST /form HTTP/1.1")
    events = parse(data)
    # either the body reaches the app, or the request is refused; never a 5-byte body that reads as b""
    if isinstance(events[-1], ParseError):
        return
    assert body_of(events) == b"hello"


# -- Transfer-Encoding with codings the server does not implement --------------------------------------


def test_unknown_transfer_coding_before_chunked_is_refused():
    error = error_of(chunked_post(b"0\r\n\r\n").replace(b"chunked", b"gzip, chunked"))
    assert error.status in (400, 501)


# -- property: any split of a valid stream gives the same messages ------------------------------------

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1,
                 max_size=12).filter(lambda s: s.lower() not in {"host", "content-length", "transfer-encoding",
                                                                 "connection", "upgrade", "expect"})
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20)
_path = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%?=&", max_size=30).map(lambda s: "/" + s)


@st.composite
def _request(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    path = draw(_path)
    headers = draw(st.lists(st.tuples(_token, _value), max_size=5))
    # bodies that look like the end of a head, or of a chunk line, must not confuse the framing
    body = draw(st.sampled_from([b"", b"\r\n\r\n", b"\r\n\r", b"0\r\n\r\n", b"\n"])) + draw(st.binary(max_size=200))
    framing = draw(st.sampled_from(["length", "chunked", "none"] if not body else ["length", "chunked"]))
    lines = [f"{method} {path} HTTP/1.1", "Host: example.com"] + [f"{k}: {v}" for k, v in headers]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        wire_body = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 50), max_size=10))
        wire_body, rest = b"", body
        for size in sizes:
            if not rest:
                break
            piece, rest = rest[:size], rest[size:]
            ext = draw(st.sampled_from([b"", b";x=1", b";y", b" ;x=1", b"; x = 1", b"\t;\ty\t=\t\"q s\"", b";a;b=c",
                                        b' ; a = "x\\"y" ; b']))
            wire_body += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
        if rest:
            wire_body += b"%x\r\n%s\r\n" % (len(rest), rest)
        trailer = draw(st.sampled_from([b"", b"X-Trailer: t\r\n"]))
        wire_body += b"0\r\n" + trailer + b"\r\n"
    else:
        wire_body = b""
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + wire_body
    expected_headers = [("Host", "example.com")] + [(k, v.strip(" \t")) for k, v in headers]
    return wire, (method, path, expected_headers, body)


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(_request(), min_size=1, max_size=4), data=st.data())
def test_any_split_gives_identical_messages(requests, data):
    stream = b"".join(wire for wire, _ in requests)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=20))))
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]

    whole, _ = parse_pieces([stream])
    split, parser = parse_pieces(pieces)
    assert not parser.failed
    messages_whole, err_whole = split_messages(whole)
    messages_split, err_split = split_messages(split)
    assert err_whole is None and err_split is None
    assert messages_split == messages_whole
    assert len(messages_split) == len(requests)
    for (head, body, ended), (_, (method, path, headers, expected_body)) in zip(messages_split, requests):
        assert ended
        assert head.method == method
        assert head.target == path
        assert [h for h in head.headers if h[0].lower() not in ("content-length", "transfer-encoding")] \
            == headers
        assert body == expected_body


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_byte_at_a_time_equals_one_feed_for_random_pipelines(data):
    requests = data.draw(st.lists(_request(), min_size=1, max_size=3))
    stream = b"".join(wire for wire, _ in requests)
    whole, _ = parse_pieces([stream])
    single, _ = parse_pieces([stream[i:i + 1] for i in range(len(stream))])
    assert split_messages(single) == split_messages(whole)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(garbage=st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_never_raise(garbage):
    parser = RequestParser(Limits(request_line=64, fields=8, field_size=64, body_size=64))
    parser.feed(garbage)
    parser.feed(garbage)
    for event in parser.events:
        assert isinstance(event, (RequestHead, BodyData, EndOfMessage, ParseError))
        if isinstance(event, ParseError):
            assert 400 <= event.status < 600
    assert parser.failed == any(isinstance(e, ParseError) for e in parser.events)


# -- RFC 9112 rules: versions, Host, request-target forms, trailers --------------------------------------


@pytest.mark.parametrize("minor", range(2, 10))
def test_http_1_x_later_minor_versions_are_read_as_1_1(minor):
    head = only_head(f"GET / HTTP/1.{minor}\r\nHost: x\r\n\r\n".encode())
    assert head.version == "1.1"
    assert head.keep_alive is True


def test_http_1_2_close_and_chunked_behave_as_1_1():
    events = parse(b"POST / HTTP/1.2\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n")
    assert events[0].version == "1.1" and events[0].keep_alive is False and events[0].chunked
    assert body_of(events) == b"abc"


@pytest.mark.parametrize("host", [
    "example.com", "example.com:8080", "EXAMPLE.com", "localhost", "127.0.0.1", "127.0.0.1:80", "[::1]",
    "[::1]:8443", "[2001:db8::1]", "xn--caf-dma.example", "a-b.c_d", "host:", "h:65535", "%41b.example",
    "[v1.fe]", "a.b.c.d.e", "sub~x.example",
])
def test_valid_host_values_are_accepted(host):
    head = only_head(req(f"Host: {host}"))
    assert head.header("host") == host


@pytest.mark.parametrize("host", [
    "a, b", "a,b", "a b", "u@h", "user:pw@h", "x/x", "h/", "h?x", "h#x", "h:port", "h:-1", "h:65536",
    "h:123456", "h:1:2", "[::1", "::1", "[::zz]", "[1.2.3.4]", "[fe80::1%25eth0]", "[::1]x", "h\\x", "h\"",
    "h<", "%zz", "h%4", "", ":80", "h]",
])
def test_invalid_host_values_are_400(host):
    error = error_of(req(f"Host: {host}"))
    assert error.status == 400
    assert "Host" in error.reason or "port" in error.reason


@pytest.mark.parametrize("host", ["a b", "x/x", "", "u@h", "a, b"])
def test_invalid_host_is_400_in_http_1_0_too(host):
    assert error_of(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()).status == 400


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
@pytest.mark.parametrize("hosts", [("a", "a"), ("a", "b"), ("a", ""), ("a", "a", "a")])
def test_more_than_one_host_is_400_in_any_version(version, hosts):
    lines = "".join(f"Host: {host}\r\n" for host in hosts)
    error = error_of(f"GET / HTTP/{version}\r\n{lines}\r\n".encode())
    assert error.status == 400 and "More than one Host" in error.reason


def test_host_with_surrounding_whitespace_is_the_trimmed_value():
    assert only_head(req("Host: \t example.com:81 \t")).header("Host") == "example.com:81"


@pytest.mark.parametrize("target, host_header, expected", [
    ("http://example.com/p?q=1", "other.example", "example.com"),
    ("http://example.com:8080/p", "other.example", "example.com:8080"),
    ("https://example.com/p", "example.com", "example.com"),
    ("HTTP://Example.COM/p", "x", "Example.COM"),
    ("http://[::1]:81/p", "x", "[::1]:81"),
    ("http://example.com", "x", "example.com"),
    ("http://example.com?x=1", "x", "example.com"),
])
def test_absolute_form_authority_replaces_host(target, host_header, expected):
    head = only_head(f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nX-A: 1\r\n\r\n".encode())
    assert head.target == target  # kept raw; its authority is now the Host
    assert head.headers == [("Host", expected), ("X-A", "1")]
    assert head.header("host") == expected


def test_absolute_form_in_http_1_0_without_host_adds_the_authority_as_host():
    head = only_head(b"GET http://example.com:81/p HTTP/1.0\r\n\r\n")
    assert head.headers == [("Host", "example.com:81")]


def test_absolute_form_in_http_1_1_still_needs_a_host_line():
    assert error_of(b"GET http://example.com/p HTTP/1.1\r\n\r\n").status == 400


@pytest.mark.parametrize("target", [
    "http://user@example.com/p", "http://user:pw@example.com/p", "http://@example.com/p",
    "http:///p", "http://:80/p", "http://h%zz/p",
    "http://example.com:99999/p", "http://example.com:x/p", "ftp://example.com/p", "ws://example.com/p",
    "http://[::zz]/p", "http://a,b/p",
])
def test_bad_absolute_form_targets_are_400(target):
    assert error_of(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()).status == 400


def test_asterisk_form_is_for_options_only():
    assert only_head(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").target == "*"
    for method in (b"GET", b"HEAD", b"POST", b"DELETE", b"PUT", b"TRACE"):
        error = error_of(method + b" * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert error.status == 400 and "asterisk" in error.reason


@pytest.mark.parametrize("target", [b"*x", b"*/a", b"?x", b"a/b", b"example.com", b"example.com:80",
                                    b"mailto:x", b"http:/x"])
def test_targets_that_are_not_origin_absolute_or_asterisk_form_are_400(target):
    assert error_of(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n").status == 400


def test_request_target_of_8000_octets_is_accepted_by_default():
    target = b"/" + b"a" * 7999
    assert only_head(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n").target == target.decode()
    too_long = b"/" + b"a" * 8190
    assert error_of(b"GET " + too_long + b" HTTP/1.1\r\nHost: x\r\n\r\n").status == 414


@pytest.mark.parametrize("value", ["\t5\t", " 5 ", "\t 5", "5 \t"])
def test_content_length_with_whitespace_around_the_value(value):
    events = parse(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:{value}\r\n\r\nhello".encode())
    assert events[0].content_length == 5
    assert body_of(events) == b"hello"
    assert events[-1] == EndOfMessage()


def chunked_with_trailer(trailer: str) -> bytes:
    return chunked_post(b"3\r\nabc\r\n0\r\n" + trailer.encode() + b"\r\n\r\n")


@pytest.mark.parametrize("name", sorted(FORBIDDEN_TRAILERS) + ["HOST", "Content-Length", "Transfer-Encoding"])
def test_fields_that_may_not_be_trailers_are_400(name):
    value = "chunked" if name.lower() == "transfer-encoding" else "1"
    error = error_of(chunked_with_trailer(f"{name}: {value}"))
    assert error.status == 400
    # llhttp refuses the two framing fields itself; the rest are ours
    assert "trailer" in error.reason or name.lower() in ("content-length", "transfer-encoding")


@pytest.mark.parametrize("trailer", ["X-Checksum: abc", "Server-Timing: db;dur=53", "Digest: sha-256=x",
                                     "X-A: 1\r\nX-B: 2"])
def test_allowed_trailers_are_accepted_and_never_become_headers(trailer):
    events = parse(chunked_with_trailer(trailer))
    assert [type(e) for e in events] == [RequestHead, BodyData, EndOfMessage]
    assert events[0].headers == [("Host", "x"), ("Transfer-Encoding", "chunked")]
    assert body_of(events) == b"abc"


def test_a_forbidden_trailer_behind_a_good_request_keeps_the_good_request():
    events = parse(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + chunked_with_trailer("Host: evil"))
    assert events[0].target == "/first" and events[1] == EndOfMessage()
    assert events[-1].status == 400


# -- chunk extensions: whitespace around ";" and "=" (RFC 9112 §7.1.1) ---------------------------------


@pytest.mark.parametrize("line", [
    b"3;a=b", b"3 ;a=b", b"3; a=b", b"3;a =b", b"3;a= b", b"3 ; a = b", b"3\t;\ta\t=\tb", b"3;a", b"3 ;a",
    b"3; a", b'3;a="q s"', b'3 ; a = "q \\" s"', b"3;a=b;c=d", b"3 ; a = b ; c ; d = e", b"03;a=b",
    b"3;" + b"x" * 1000 + b"=1",
])
def test_chunk_extensions_with_whitespace_are_accepted_and_dropped(line):
    events = parse(chunked_post(line + b"\r\nabc\r\n0\r\n\r\n"))
    assert [type(e) for e in events] == [RequestHead, BodyData, EndOfMessage]
    assert body_of(events) == b"abc"


@pytest.mark.parametrize("line", [
    b"3 ", b"3\t", b"3;a=b ", b"3;", b"3 ;", b"3;=b", b"3;a=", b"3;a b", b"3;a=b c", b'3;a="q', b"3;a=\"\x01\"",
    b"3;a@=b", b"3;a=b@", b"3 3", b"3;a\r=b", b";a=b", b"x3", b"3;" + b"x" * 5000,
])
def test_bad_chunk_size_lines_are_400(line):
    error = error_of(chunked_post(line + b"\r\nabc\r\n0\r\n\r\n"))
    assert error.status == 400


def test_chunk_extension_whitespace_split_anywhere_and_pipelined():
    stream = chunked_post(b"3 ; a = b\r\nabc\r\n2\t;\tz\r\nde\r\n0 ; end = 1\r\nX-T: 1\r\n\r\n") + \
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    for cut in range(len(stream) + 1):
        events, parser = parse_pieces([stream[:cut], stream[cut:]])
        assert not parser.failed
        assert body_of(events) == b"abcde"
        assert events[-2].target == "/next"


def test_chunk_data_that_looks_like_a_head_or_a_size_line_is_data():
    data = b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n"
    stream = chunked_post(b"%x ; a = b\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    events = parse(stream)
    assert body_of(events) == data
    assert sum(isinstance(e, RequestHead) for e in events) == 1
