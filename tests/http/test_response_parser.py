"""The sans-IO response parser: an upstream's bytes in, ResponseHead / BodyData / EndOfMessage / ParseError out.

Every test feeds literal bytes to a ResponseParser and compares the queued events; no sockets, no clock.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.http.parser import BodyData, EndOfMessage, ParseError
from wsgistack.http.response_parser import ResponseHead, ResponseLimits, ResponseParser

# -- helpers -------------------------------------------------------------------------------------------

LIMITS = ResponseLimits()


def feed_all(pieces, method: str = "GET", limits: ResponseLimits = LIMITS, eof: bool = False):
    parser = ResponseParser(method, limits)
    for piece in pieces:
        parser.feed(piece)
    if eof:
        parser.feed_eof()
    return list(parser.events), parser


def parse(data: bytes, method: str = "GET", limits: ResponseLimits = LIMITS) -> list:
    return feed_all([data], method, limits)[0]


def head_of(events) -> ResponseHead:
    assert isinstance(events[0], ResponseHead), events
    return events[0]


def only_head(data: bytes, method: str = "GET", limits: ResponseLimits = LIMITS) -> ResponseHead:
    """The head of a complete bodiless response: ResponseHead, EndOfMessage and nothing else."""
    events, parser = feed_all([data], method, limits)
    assert len(events) == 2, events
    assert events[1] == EndOfMessage()
    assert parser.complete and not parser.failed and not parser.extra_bytes
    return head_of(events)


def error_of(pieces, method: str = "GET", limits: ResponseLimits = LIMITS, eof: bool = False):
    """The ParseError a response ends with (events of an accepted head may come before it)."""
    if isinstance(pieces, bytes):
        pieces = [pieces]
    events, parser = feed_all(pieces, method, limits, eof)
    assert events and isinstance(events[-1], ParseError), events
    assert not any(isinstance(e, ParseError) for e in events[:-1])
    assert parser.failed and not parser.complete
    assert events[-1].status == 502
    return events[-1]


def body_of(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, BodyData))


def merged(events) -> list:
    """Events with neighbouring BodyData joined: how a body is cut into pieces is not part of the contract."""
    out: list = []
    for event in events:
        if isinstance(event, BodyData) and out and isinstance(out[-1], BodyData):
            out[-1] = BodyData(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def resp(head_lines: str | bytes = "", body: bytes = b"", status_line: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """A response from a status line, header lines separated by \\n (CRLF on the wire) and a body."""
    if isinstance(head_lines, str):
        head_lines = head_lines.encode("latin-1")
    lines = [line for line in head_lines.split(b"\n") if line]
    return status_line + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


CHUNKED = "Transfer-Encoding: chunked"
HELLO = resp("Content-Length: 5", b"hello")


# -- Content-Length bodies -----------------------------------------------------------------------------


def test_content_length_response():
    events, parser = feed_all([HELLO])
    head = head_of(events)
    assert head == ResponseHead(200, "OK", "1.1", [("Content-Length", "5")], True, False, 5)
    assert events[1:] == [BodyData(b"hello"), EndOfMessage()]
    assert parser.complete and not parser.failed and not parser.extra_bytes


def test_next_event_pops_in_order_then_none():
    parser = ResponseParser()
    assert parser.next_event() is None
    parser.feed(HELLO)
    assert isinstance(parser.next_event(), ResponseHead)
    assert parser.next_event() == BodyData(b"hello")
    assert parser.next_event() == EndOfMessage()
    assert parser.next_event() is None


def test_empty_feed_is_a_no_op():
    events, parser = feed_all([b"", b""])
    assert events == [] and parser.received == 0
    assert not parser.complete and not parser.failed


def test_partial_head_gives_no_event_yet():
    events, parser = feed_all([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"])
    assert events == [] and not parser.complete and not parser.failed


def test_head_arrives_before_its_body():
    events, parser = feed_all([resp("Content-Length: 5")])
    assert len(events) == 1 and isinstance(events[0], ResponseHead)
    assert not parser.complete


def test_content_length_body_in_pieces():
    events, parser = feed_all([resp("Content-Length: 10"), b"01234", b"567", b"89"])
    assert events[1:] == [BodyData(b"01234"), BodyData(b"567"), BodyData(b"89"), EndOfMessage()]
    assert parser.complete


def test_content_length_response_byte_by_byte():
    data = resp("Content-Length: 11\nX-A: b", b"hello world")
    events, parser = feed_all([data[i:i + 1] for i in range(len(data))])
    assert head_of(events).headers == [("Content-Length", "11"), ("X-A", "b")]
    assert body_of(events) == b"hello world"
    assert events[-1] == EndOfMessage() and parser.complete and not parser.extra_bytes


def test_content_length_zero():
    head = only_head(resp("Content-Length: 0"))
    assert head.content_length == 0 and head.keep_alive


def test_large_content_length_body():
    events = parse(resp("Content-Length: 100000", b"x" * 100000))
    assert body_of(events) == b"x" * 100000 and events[-1] == EndOfMessage()


def test_body_with_blank_lines_is_kept_whole():
    body = b"\r\n\r\n" * 5 + b"HTTP/1.1 200 OK\r\n\r\n"
    events = parse(resp(f"Content-Length: {len(body)}", body))
    assert body_of(events) == body and events[-1] == EndOfMessage()


# -- the head ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status_line, status, reason", [
    (b"HTTP/1.1 200 OK", 200, "OK"),
    (b"HTTP/1.1 200 Everything Is Fine", 200, "OK"),  # the upstream's phrase is not forwarded
    (b"HTTP/1.1 200 ", 200, "OK"),
    (b"HTTP/1.1 200", 200, "OK"),
    (b"HTTP/1.1 404 Not Found", 404, "Not Found"),
    (b"HTTP/1.1 418 Teapot", 418, "I'm a Teapot"),
    (b"HTTP/1.1 503 Service Unavailable", 503, "Service Unavailable"),
    (b"HTTP/1.1 299 Custom", 299, "Unknown"),
    (b"HTTP/1.1 599 Custom", 599, "Unknown"),
    (b"HTTP/1.1 999 Custom", 999, "Unknown"),
])
def test_status_and_reason(status_line, status, reason):
    head = only_head(resp("Content-Length: 0", status_line=status_line))
    assert (head.status, head.reason) == (status, reason)


@pytest.mark.parametrize("raw, expected", [
    ("X-A: 1\nX-B: 2", [("X-A", "1"), ("X-B", "2")]),
    ("x-lower: v\nX-UPPER: V", [("x-lower", "v"), ("X-UPPER", "V")]),
    ("Set-Cookie: a=1\nSet-Cookie: b=2", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
    ("X-Empty:", [("X-Empty", "")]),
    ("X-Lead:    value", [("X-Lead", "value")]),
    ("X-Trail: value   ", [("X-Trail", "value")]),
    ("X-Tab: \tvalue\t \t", [("X-Tab", "value")]),
    ("X-Inner: a  b\tc", [("X-Inner", "a  b\tc")]),
    ("X-Colon: a:b:c", [("X-Colon", "a:b:c")]),
])
def test_headers_in_order_with_ows_stripped(raw, expected):
    head = only_head(resp(raw + "\nContent-Length: 0"))
    assert head.headers == expected + [("Content-Length", "0")]


def test_obs_text_in_value_decoded_as_latin1():
    head = only_head(b"HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9 \xff\r\nContent-Length: 0\r\n\r\n")
    assert head.header("X-Name") == "caf\xc3\xa9 \xff"


def test_header_lookup_is_case_insensitive_and_first_wins():
    head = only_head(resp("X-A: 1\nx-a: 2\nContent-Length: 0"))
    assert head.header("x-A") == "1"
    assert head.header("CONTENT-LENGTH") == "0"
    assert head.header("missing") is None


def test_leading_empty_lines_before_status_are_tolerated():
    assert only_head(b"\r\n\r\n" + resp("Content-Length: 0")).status == 200


# -- chunked bodies ------------------------------------------------------------------------------------


def test_chunked_response():
    events, parser = feed_all([resp(CHUNKED, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")])
    head = head_of(events)
    assert head.chunked is True and head.content_length is None and head.keep_alive
    assert body_of(events) == b"hello world"
    assert events[-1] == EndOfMessage() and parser.complete and not parser.extra_bytes


def test_chunked_hex_sizes_and_extensions():
    body = b"A;name=value\r\n0123456789\r\n1;x\r\n!\r\n0;last\r\n\r\n"
    events = parse(resp(CHUNKED, body))
    assert body_of(events) == b"0123456789!" and events[-1] == EndOfMessage()


def test_chunked_empty_body():
    events = parse(resp(CHUNKED, b"0\r\n\r\n"))
    assert events[1:] == [EndOfMessage()]


def test_chunked_trailers_are_ignored():
    events, parser = feed_all([resp(CHUNKED, b"3\r\nabc\r\n0\r\nX-Checksum: 42\r\nX-More: 1\r\n\r\n")])
    head = head_of(events)
    assert head.headers == [("Transfer-Encoding", "chunked")]
    assert head.header("X-Checksum") is None
    assert body_of(events) == b"abc" and events[-1] == EndOfMessage() and not parser.extra_bytes


def test_chunked_trailers_do_not_count_against_fields_limit():
    events = parse(resp(CHUNKED, b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), limits=ResponseLimits(fields=1))
    assert events[-1] == EndOfMessage()


def test_chunked_byte_by_byte():
    data = resp(CHUNKED, b"3\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n")
    events, parser = feed_all([data[i:i + 1] for i in range(len(data))])
    assert body_of(events) == b"abcde" and events[-1] == EndOfMessage()
    assert parser.complete and not parser.extra_bytes


def test_chunk_data_with_blank_lines():
    events, parser = feed_all([resp(CHUNKED, b"8\r\n" + b"\r\n" * 4 + b"\r\n0\r\n\r\n")])
    assert body_of(events) == b"\r\n" * 4 and parser.complete and not parser.extra_bytes


def test_chunked_transfer_encoding_is_case_insensitive():
    assert parse(resp("Transfer-Encoding: Chunked", b"0\r\n\r\n"))[-1] == EndOfMessage()


# -- close-delimited bodies ----------------------------------------------------------------------------


def test_close_delimited_body_ends_at_eof():
    parser = ResponseParser()
    parser.feed(resp("", b"abc"))
    parser.feed(b"def")
    events = list(parser.events)
    assert head_of(events).keep_alive is False
    assert events[1:] == [BodyData(b"abc"), BodyData(b"def")]
    assert not parser.complete
    parser.feed_eof()
    assert parser.events[-1] == EndOfMessage() and parser.complete and not parser.failed


def test_close_delimited_empty_body():
    events, parser = feed_all([resp("")], eof=True)
    assert events[1:] == [EndOfMessage()] and parser.complete


def test_close_delimited_http10():
    events, parser = feed_all([resp("Connection: keep-alive", b"x", b"HTTP/1.0 200 OK")], eof=True)
    assert head_of(events).keep_alive is False and body_of(events) == b"x" and parser.complete


def test_close_delimited_body_looking_like_a_response():
    events, parser = feed_all([resp("", HELLO)], eof=True)
    assert body_of(events) == HELLO and not parser.extra_bytes


# -- responses without a body --------------------------------------------------------------------------


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified"])
def test_204_and_304_ignore_content_length(status_line):
    head = only_head(resp("Content-Length: 5", status_line=status_line))
    assert head.content_length == 5 and head.keep_alive


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified"])
def test_204_and_304_without_framing_headers_keep_alive(status_line):
    assert only_head(resp("", status_line=status_line)).keep_alive


def test_204_with_chunked_has_no_body():
    assert only_head(resp(CHUNKED, status_line=b"HTTP/1.1 204 No Content")).chunked


def test_head_response_with_content_length_has_no_body():
    head = only_head(resp("Content-Length: 1234"), method="HEAD")
    assert head.content_length == 1234 and head.keep_alive


def test_head_response_chunked_has_no_body():
    assert only_head(resp(CHUNKED), method="HEAD").keep_alive


def test_head_response_without_content_length_is_not_close_delimited():
    assert only_head(resp(""), method="HEAD").keep_alive


@pytest.mark.parametrize("version, connection, keep_alive", [
    ("1.1", "", True), ("1.1", "close", False), ("1.0", "", False), ("1.0", "keep-alive", True),
    ("1.0", "Keep-Alive", True), ("1.1", "keep-alive, close", False),
])
def test_head_response_keep_alive(version, connection, keep_alive):
    lines = f"Connection: {connection}" if connection else ""
    head = only_head(resp(lines, status_line=f"HTTP/{version} 200 OK".encode()), method="HEAD")
    assert head.keep_alive is keep_alive


def test_head_method_is_case_insensitive():
    assert only_head(resp("Content-Length: 5"), method="head").content_length == 5


def test_head_response_followed_by_a_body_in_the_same_feed():
    events, parser = feed_all([resp("Content-Length: 5", b"hello")], method="HEAD")
    assert events[1:] == [EndOfMessage()]
    assert head_of(events).keep_alive is False and parser.extra_bytes


def test_head_response_followed_by_bytes_in_a_later_feed():
    events, parser = feed_all([resp("Content-Length: 5"), b"hello"], method="HEAD")
    assert events[1:] == [EndOfMessage()]
    assert head_of(events).keep_alive is True and parser.extra_bytes


def test_head_response_blank_line_split_across_feeds_then_a_body():
    data = resp("Content-Length: 5")
    events, parser = feed_all([data[:-2], data[-2:] + b"hello"], method="HEAD")
    assert events[1:] == [EndOfMessage()]
    assert head_of(events).keep_alive is False and parser.extra_bytes


def test_head_response_after_100_continue():
    events = parse(b"HTTP/1.1 100 Continue\r\n\r\n" + resp("Content-Length: 5"), method="HEAD")
    assert head_of(events).status == 200 and events[1:] == [EndOfMessage()]


# -- interim responses ---------------------------------------------------------------------------------


def test_100_continue_then_200_in_one_feed():
    events, parser = feed_all([b"HTTP/1.1 100 Continue\r\n\r\n" + HELLO])
    assert head_of(events).status == 200
    assert events[1:] == [BodyData(b"hello"), EndOfMessage()] and not parser.extra_bytes


def test_100_continue_then_200_in_separate_feeds():
    events, parser = feed_all([b"HTTP/1.1 100 Continue\r\n\r\n", HELLO])
    assert head_of(events).status == 200 and parser.complete


def test_100_continue_alone_gives_no_event():
    events, parser = feed_all([b"HTTP/1.1 100 Continue\r\n\r\n"])
    assert events == [] and not parser.complete and not parser.failed


def test_103_early_hints_headers_are_not_in_the_final_head():
    data = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + HELLO
    head = head_of(parse(data))
    assert head.status == 200 and head.header("Link") is None


def test_several_interim_responses():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
    events = parse(data + HELLO)
    assert head_of(events).status == 200 and body_of(events) == b"hello"


def test_interim_then_final_byte_by_byte():
    data = b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\r\n" + resp(CHUNKED, b"1\r\na\r\n0\r\n\r\n")
    events, parser = feed_all([data[i:i + 1] for i in range(len(data))])
    assert head_of(events).status == 200 and body_of(events) == b"a"
    assert parser.complete and not parser.extra_bytes


def test_interim_response_then_eof():
    error = error_of([b"HTTP/1.1 100 Continue\r\n\r\n"], eof=True)
    assert error.reason == "upstream closed the connection before the response ended"


def test_101_switching_protocols_is_refused():
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx"
    assert error_of(data) == ParseError(502, "upstream switched protocols")


def test_101_after_100_is_refused():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"
    assert error_of(data).reason == "upstream switched protocols"


def test_upgrade_header_on_a_200_is_just_a_header():
    head = only_head(resp("Upgrade: h2c\nConnection: Upgrade\nContent-Length: 0"))
    assert head.header("Upgrade") == "h2c" and head.keep_alive


# -- keep-alive ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version, connection, keep_alive", [
    ("1.1", None, True),
    ("1.1", "keep-alive", True),
    ("1.1", "close", False),
    ("1.1", "Close", False),
    ("1.1", "keep-alive, close", False),
    ("1.1", "Upgrade", True),
    ("1.0", None, False),
    ("1.0", "keep-alive", True),
    ("1.0", "Keep-Alive", True),
    ("1.0", "close", False),
])
def test_keep_alive_with_content_length(version, connection, keep_alive):
    lines = "Content-Length: 2\n" + (f"Connection: {connection}\n" if connection else "")
    events = parse(resp(lines, b"ok", status_line=f"HTTP/{version} 200 OK".encode()))
    head = head_of(events)
    assert head.version == version and head.keep_alive is keep_alive
    assert events[-1] == EndOfMessage()


def test_keep_alive_with_chunked():
    assert head_of(parse(resp(CHUNKED + "\nConnection: close", b"0\r\n\r\n"))).keep_alive is False
    assert head_of(parse(resp(CHUNKED, b"0\r\n\r\n"))).keep_alive is True


# -- limits --------------------------------------------------------------------------------------------


def test_head_size_exactly_at_limit_is_accepted():
    data = resp("Content-Length: 0\nX-Pad: " + "a" * 50)
    assert only_head(data, limits=ResponseLimits(head_size=len(data))).status == 200


def test_head_size_over_limit():
    data = resp("Content-Length: 0\nX-Pad: " + "a" * 50)
    error = error_of(data, limits=ResponseLimits(head_size=len(data) - 1))
    assert error.reason == "upstream response header too large"


def test_unfinished_head_over_limit_in_pieces():
    pieces = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad: " + b"a" * 90 + b"\r\n"] * 10
    assert error_of(pieces, limits=ResponseLimits(head_size=500)).reason == "upstream response header too large"


def test_head_size_does_not_count_the_body():
    data = resp("Content-Length: 1000", b"x" * 1000)
    assert body_of(parse(data, limits=ResponseLimits(head_size=100))) == b"x" * 1000


def test_head_size_applies_to_each_interim_head_separately():
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: " + b"l" * 60 + b"\r\n\r\n"
    final = resp("Content-Length: 0\nX-Pad: " + "p" * 60)
    limits = ResponseLimits(head_size=max(len(interim), len(final)))
    assert head_of(parse(interim + interim + final, limits=limits)).status == 200


def test_head_size_zero_means_no_limit():
    data = resp("Content-Length: 0\nX-Pad: " + "a" * 100000)
    limits = ResponseLimits(head_size=0, field_size=0)
    assert only_head(data, limits=limits).header("X-Pad") == "a" * 100000


def test_fields_exactly_at_limit():
    lines = "\n".join(f"X-{i}: v" for i in range(9)) + "\nContent-Length: 0"
    assert len(only_head(resp(lines), limits=ResponseLimits(fields=10)).headers) == 10


def test_too_many_fields():
    lines = "\n".join(f"X-{i}: v" for i in range(10)) + "\nContent-Length: 0"
    assert "too many" in error_of(resp(lines), limits=ResponseLimits(fields=10)).reason


def test_field_size_exactly_at_limit():
    head = only_head(resp("X-Big: " + "a" * 15 + "\nContent-Length: 0"), limits=ResponseLimits(field_size=20))
    assert head.header("X-Big") == "a" * 15


def test_field_too_large():
    error = error_of(resp("X-Big: " + "a" * 16 + "\nContent-Length: 0"), limits=ResponseLimits(field_size=20))
    assert error.reason == "upstream response header field too large"


def test_trailer_field_too_large():
    data = resp(CHUNKED, b"0\r\nX-Trailer: " + b"t" * 100 + b"\r\n\r\n")
    events, parser = feed_all([data], limits=ResponseLimits(field_size=50))
    assert isinstance(events[0], ResponseHead) and events[-1].status == 502 and parser.failed


def test_default_limits():
    assert ResponseLimits() == ResponseLimits(head_size=65536, fields=100, field_size=16384)


# -- malformed responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("status_line", [
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 OK",
    b"HTTP/1.1  200 OK",
    b"http/1.1 200 OK",
    b"HTTP/1.2 200 OK",
    b"HTTP/2.0 200 OK",
    b"HTTP/0.9 200 OK",
    b"HTTP/1.1 099 Low",
    b"HTTP/1.1 000 Zero",
    b"HTTP/11 200 OK",
    b"FOO",
    b"<html>",
    b"HTTP/1.1 2x0 OK",
])
def test_malformed_status_lines(status_line):
    error_of(resp("Content-Length: 0", status_line=status_line))


def test_bare_lf_line_endings():
    error_of(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n")


def test_bare_lf_after_a_header():
    error_of(b"HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("lines", [
    "Content-Length: 5\nTransfer-Encoding: chunked",
    "Transfer-Encoding: chunked\nContent-Length: 5",
    "Content-Length: 5\nContent-Length: 6",
    "Content-Length: 5\nContent-Length: 5",
    "Content-Length: 5, 5",
    "Content-Length: abc",
    "Content-Length: -1",
    "Content-Length: +5",
    "Content-Length: 99999999999999999999999",
    "Transfer-Encoding: gzip",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: chunked\nTransfer-Encoding: chunked",
    "Bad Name: x",
    "X-A: a\x01b",
    "X-Fold: a\n b",
    ": no-name",
])
def test_bad_framing_and_fields(lines):
    error_of(resp(lines, b"hello\r\n\r\n"))


def test_unsupported_transfer_encoding_reason():
    assert error_of(resp("Transfer-Encoding: gzip", b"x")).reason == "upstream sent an unsupported Transfer-Encoding"


def test_chunked_in_http10_is_refused():
    error = error_of(resp(CHUNKED, b"0\r\n\r\n", status_line=b"HTTP/1.0 200 OK"))
    assert "HTTP/1.0" in error.reason


@pytest.mark.parametrize("body", [
    b"zz\r\nabc\r\n0\r\n\r\n",
    b"3 \r\nabc\r\n0\r\n\r\n",
    b"3\nabc\n0\n\n",
    b"3\r\nabcd\r\n0\r\n\r\n",
    b"-1\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\n",
    b"fffffffffffffffffffff\r\n",
])
def test_bad_chunks(body):
    error_of(resp(CHUNKED, body))


def test_error_reason_is_short():
    assert len(error_of(b"HTTP/1.1 20 OK\r\n\r\n").reason) <= 120


def test_nothing_after_a_parse_error():
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 20 OK\r\n\r\n")
    parser.feed(HELLO)
    parser.feed_eof()
    assert list(parser.events) == [parser.events[0]] and isinstance(parser.events[0], ParseError)
    assert parser.failed and not parser.complete and not parser.extra_bytes


def test_events_before_an_error_are_kept():
    events = parse(resp(CHUNKED, b"3\r\nabc\r\nzz\r\n"))
    assert isinstance(events[0], ResponseHead) and events[1] == BodyData(b"abc")
    assert isinstance(events[2], ParseError) and len(events) == 3


# -- the upstream closing early ------------------------------------------------------------------------


def test_eof_with_nothing_received():
    assert error_of([], eof=True) == ParseError(502, "upstream closed the connection without a response")


def test_eof_after_empty_feeds():
    assert error_of([b""], eof=True).reason == "upstream closed the connection without a response"


@pytest.mark.parametrize("pieces", [
    [b"H"],
    [b"HTTP/1.1 200 OK\r\n"],
    [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r"],
    [resp("Content-Length: 5", b"hell")],
    [resp("Content-Length: 5"), b"he"],
    [resp(CHUNKED)],
    [resp(CHUNKED, b"5\r\nhel")],
    [resp(CHUNKED, b"5\r\nhello\r\n")],
    [resp(CHUNKED, b"0\r\n")],
    [resp(CHUNKED, b"0\r\nX-T: 1\r\n")],
    [b"\r\n"],
])
def test_eof_before_the_response_ended(pieces):
    error = error_of(pieces, eof=True)
    assert error == ParseError(502, "upstream closed the connection before the response ended")


def test_eof_after_a_complete_response_is_a_no_op():
    events, parser = feed_all([HELLO], eof=True)
    assert events[-1] == EndOfMessage() and len(events) == 3 and not parser.failed


def test_eof_twice():
    events, parser = feed_all([resp("", b"ab")], eof=True)
    parser.feed_eof()
    assert list(parser.events) == events and events[-1] == EndOfMessage()


# -- bytes received, bytes too many --------------------------------------------------------------------


def test_received_counts_every_byte_fed():
    parser = ResponseParser()
    assert parser.received == 0
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    assert parser.received == 17
    parser.feed(b"Content-Length: 2\r\n\r\nok")
    assert parser.received == 17 + 23
    parser.feed(b"extra")
    assert parser.received == 17 + 23 + 5


def test_received_counts_after_an_error():
    parser = ResponseParser()
    parser.feed(b"BAD\r\n")
    parser.feed(b"more")
    assert parser.failed and parser.received == 9


def test_received_counts_an_interim_response_alone():
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert parser.received == 25 and list(parser.events) == []


def test_second_response_in_the_same_feed_is_extra():
    events, parser = feed_all([HELLO + HELLO])
    assert merged(events)[1:] == [BodyData(b"hello"), EndOfMessage()]
    assert parser.extra_bytes and head_of(events).keep_alive is False


def test_bytes_after_the_body_in_a_later_feed_are_extra():
    events, parser = feed_all([HELLO, b"garbage"])
    assert events[1:] == [BodyData(b"hello"), EndOfMessage()] and not parser.failed
    assert parser.extra_bytes and head_of(events).keep_alive is True  # already handed out: not rewritten


def test_stray_crlf_after_the_body_is_extra():
    events, parser = feed_all([HELLO + b"\r\n"])
    assert parser.extra_bytes and not parser.failed and events[-1] == EndOfMessage()


def test_bytes_after_a_chunked_body_are_extra():
    events, parser = feed_all([resp(CHUNKED, b"1\r\na\r\n0\r\n\r\n" + b"\r\n")])
    assert parser.extra_bytes and body_of(events) == b"a" and events[-1] == EndOfMessage()


def test_chunked_end_split_across_feeds_then_bytes():
    events, parser = feed_all([resp(CHUNKED, b"1\r\na\r\n0\r\n\r"), b"\nHTTP/1.1"])
    assert body_of(events) == b"a" and events[-1] == EndOfMessage()
    assert parser.extra_bytes and not parser.failed


def test_bytes_after_a_204_are_extra():
    events, parser = feed_all([resp("", b"oops", status_line=b"HTTP/1.1 204 No Content")])
    assert events[1:] == [EndOfMessage()] and parser.extra_bytes


def test_bytes_after_connection_close_response_are_extra_not_an_error():
    events, parser = feed_all([resp("Connection: close\nContent-Length: 1", b"a"), b"x"])
    assert not parser.failed and parser.extra_bytes and events[-1] == EndOfMessage()


def test_no_extra_bytes_when_the_response_ends_exactly():
    for pieces in ([HELLO], [HELLO[:10], HELLO[10:]], [resp(CHUNKED, b"0\r\n\r\n")]):
        assert not feed_all(pieces)[1].extra_bytes


def test_bytearray_and_memoryview_are_accepted():
    events, parser = feed_all([bytearray(HELLO[:20]), memoryview(HELLO[20:])])
    assert body_of(events) == b"hello" and parser.complete


# -- any split gives the same events -------------------------------------------------------------------

VALID = [
    (HELLO, "GET"),
    (resp("Content-Length: 0"), "GET"),
    (resp("Content-Length: 12\nX-A: b", b"\r\n\r\nbody\r\n\r\n"), "GET"),
    (resp(CHUNKED, b"3\r\nabc\r\n4;x=y\r\n\r\n\r\n\r\n0\r\nT: 1\r\nU: 2\r\n\r\n"), "GET"),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + HELLO, "GET"),
    (b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\r\n" + resp(CHUNKED, b"0\r\n\r\n"), "GET"),
    (resp("Content-Length: 5"), "HEAD"),
    (resp("", status_line=b"HTTP/1.1 304 Not Modified"), "GET"),
    (resp("Connection: keep-alive\nContent-Length: 2", b"ok", b"HTTP/1.0 200 OK"), "GET"),
]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(index=st.integers(0, len(VALID) - 1), cuts=st.lists(st.integers(0, 1000), max_size=12))
def test_any_split_gives_the_same_events(index, cuts):
    data, method = VALID[index]
    whole, _ = feed_all([data], method)
    pieces, parser = feed_all(split(data, cuts), method)
    assert merged(pieces) == merged(whole)
    assert whole[-1] == EndOfMessage() and parser.complete and not parser.extra_bytes
    assert parser.received == len(data)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(index=st.integers(0, len(VALID) - 1), cuts=st.lists(st.integers(0, 1000), max_size=8),
       extra=st.binary(min_size=1, max_size=30))
def test_any_split_with_trailing_bytes_marks_them_extra(index, cuts, extra):
    data, method = VALID[index]
    events, parser = feed_all(split(data + extra, cuts), method)
    assert merged(events)[1:] == merged(feed_all([data], method)[0])[1:]
    assert parser.complete and parser.extra_bytes and not parser.failed


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_garbage_never_raises(data, cuts):
    events, parser = feed_all(split(data, cuts), eof=True)
    assert parser.complete or parser.failed
    assert sum(isinstance(e, ParseError) for e in events) == (1 if parser.failed else 0)
