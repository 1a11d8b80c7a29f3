"""The response side: build_head framing and validation, Framing, dates, simple_response and error bodies."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import pytest

from wsgistack.http import dates, heads
from wsgistack.http.dates import http_date
from wsgistack.http.errors import HTTPError, error_body, status_line_text
from wsgistack.http.framing import Framing
from wsgistack.http.heads import (
    CONTINUE,
    SERVER_NAME,
    ResponseError,
    build_head,
    check_headers,
    check_status,
    simple_response,
)

DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d{4} \d\d:\d\d:\d\d GMT$")


def head_lines(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(status line, [(name, value)]) of a head, checking it is CRLF-terminated and ends with a blank line."""
    assert head.endswith(b"\r\n\r\n")
    text = head.decode("latin-1")
    lines = text[:-4].split("\r\n")
    for line in lines:
        assert "\n" not in line and "\r" not in line
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(": ")
        assert sep, line
        fields.append((name, value))
    return lines[0], fields


def names(fields) -> list[str]:
    return [name.lower() for name, _ in fields]


def value(fields, name):
    found = [v for n, v in fields if n.lower() == name.lower()]
    assert len(found) <= 1, found
    return found[0] if found else None


def build(status="200 OK", headers=None, method="GET", version="1.1", keep_alive=True):
    headers = [("Date", DATE)] + list(headers or []) if headers is None or not any(
        n.lower() == "date" for n, _ in headers) else list(headers)
    return build_head(status, headers, method, version, keep_alive)[:3]


# -- framing -------------------------------------------------------------------------------------------


def test_content_length_gives_length_framing():
    head, framing, keep = build(headers=[("Content-Length", "5")])
    status, fields = head_lines(head)
    assert status == "HTTP/1.1 200 OK"
    assert value(fields, "Content-Length") == "5"
    assert "transfer-encoding" not in names(fields)
    assert framing.mode == "length"
    assert keep is True
    assert framing.encode(b"hello") == b"hello"
    assert framing.complete
    assert framing.finish() == b""
    assert framing.sent == 5


def test_length_framing_truncates_extra_bytes():
    _, framing, _ = build(headers=[("Content-Length", "5")])
    assert framing.encode(b"hel") == b"hel"
    assert framing.encode(b"lo world") == b"lo"
    assert framing.encode(b"more") == b""
    assert framing.sent == 5
    assert framing.complete


def test_length_framing_short_body_is_incomplete():
    _, framing, _ = build(headers=[("Content-Length", "10")])
    framing.encode(b"abc")
    assert framing.remaining == 7
    assert not framing.complete


def test_length_zero():
    head, framing, _ = build(headers=[("Content-Length", "0")])
    assert framing.mode == "length"
    assert framing.complete
    assert framing.encode(b"x") == b""


@pytest.mark.parametrize("data", [b"a", b"hello", b"x" * 15, b"y" * 16, b"z" * 255, b"\r\n0\r\n\r\n", b"q" * 70000])
def test_chunked_encoding_bytes(data):
    head, framing, keep = build()
    _, fields = head_lines(head)
    assert value(fields, "Transfer-Encoding") == "chunked"
    assert "content-length" not in names(fields)
    assert framing.mode == "chunked"
    assert keep is True
    assert framing.encode(data) == b"%x\r\n" % len(data) + data + b"\r\n"
    assert framing.finish() == b"0\r\n\r\n"
    assert framing.sent == len(data)
    assert framing.complete


def test_chunked_encoding_exact_hex():
    _, framing, _ = build()
    assert framing.encode(b"0123456789abcdef") == b"10\r\n0123456789abcdef\r\n"
    assert framing.encode(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


def test_chunked_never_emits_an_empty_chunk_for_empty_data():
    _, framing, _ = build()
    assert framing.encode(b"") == b""  # an empty chunk would end the body early
    assert framing.sent == 0


def test_http10_without_length_is_close_delimited():
    head, framing, keep = build(version="1.0", keep_alive=True)
    _, fields = head_lines(head)
    assert framing.mode == "close"
    assert keep is False
    assert value(fields, "Connection") == "close"
    assert "transfer-encoding" not in names(fields)
    assert framing.encode(b"raw") == b"raw"
    assert framing.finish() == b""
    assert framing.complete


def test_http10_with_length_keep_alive_says_keep_alive():
    head, framing, keep = build(headers=[("Content-Length", "2")], version="1.0", keep_alive=True)
    _, fields = head_lines(head)
    assert keep is True
    assert value(fields, "Connection") == "keep-alive"
    assert framing.mode == "length"


def test_http11_keep_alive_has_no_connection_header():
    head, _, keep = build(headers=[("Content-Length", "2")], version="1.1", keep_alive=True)
    _, fields = head_lines(head)
    assert keep is True
    assert "connection" not in names(fields)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_not_keep_alive_says_close(version):
    head, _, keep = build(headers=[("Content-Length", "2")], version=version, keep_alive=False)
    _, fields = head_lines(head)
    assert keep is False
    assert value(fields, "Connection") == "close"


def test_head_request_has_no_body_but_keeps_content_length():
    head, framing, keep = build(headers=[("Content-Length", "1234")], method="HEAD")
    _, fields = head_lines(head)
    assert framing.mode == "none"
    assert value(fields, "Content-Length") == "1234"
    assert framing.encode(b"body") == b""
    assert framing.finish() == b""
    assert framing.complete
    assert keep is True


def test_head_request_without_length_is_not_chunked():
    head, framing, keep = build(method="HEAD")
    _, fields = head_lines(head)
    assert framing.mode == "none"
    assert "transfer-encoding" not in names(fields)
    assert keep is True


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified", "100 Continue", "103 Early Hints"])
def test_statuses_without_body(status):
    head, framing, keep = build(status=status)
    _, fields = head_lines(head)
    assert framing.mode == "none"
    assert "transfer-encoding" not in names(fields)
    assert framing.encode(b"ignored") == b""
    assert framing.finish() == b""
    assert keep is True


def test_204_drops_content_length():
    head, framing, _ = build(status="204 No Content", headers=[("Content-Length", "10"), ("X-A", "1")])
    _, fields = head_lines(head)
    assert "content-length" not in names(fields)
    assert value(fields, "X-A") == "1"
    assert framing.mode == "none"


def test_1xx_drops_content_length():
    head, _, _ = build(status="103 Early Hints", headers=[("Content-Length", "10")])
    assert "content-length" not in names(head_lines(head)[1])


def test_304_keeps_content_length():
    head, framing, _ = build(status="304 Not Modified", headers=[("Content-Length", "10")])
    assert value(head_lines(head)[1], "Content-Length") == "10"
    assert framing.mode == "none"


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_204_on_http10_keep_alive(version):
    head, _, keep = build(status="204 No Content", version=version, keep_alive=True)
    assert keep is True
    expected = "keep-alive" if version == "1.0" else None
    assert value(head_lines(head)[1], "Connection") == expected


# -- headers the server owns ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, val", [
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "websocket"),
    ("Proxy-Connection", "keep-alive"),
    ("connection", "Upgrade"),
    ("TRANSFER-ENCODING", "gzip"),
])
def test_hop_by_hop_headers_from_the_app_are_removed(name, val):
    head, _, keep = build(headers=[("Content-Length", "1"), (name, val), ("X-Kept", "1")])
    _, fields = head_lines(head)
    assert (name, val) not in fields
    assert name.lower() not in names(fields) or name.lower() == "connection" and not keep
    assert value(fields, "X-Kept") == "1"
    assert keep is True


def test_app_transfer_encoding_chunked_does_not_double_chunk():
    head, framing, _ = build(headers=[("Transfer-Encoding", "chunked")])
    _, fields = head_lines(head)
    assert [v for n, v in fields if n.lower() == "transfer-encoding"] == ["chunked"]
    assert framing.mode == "chunked"


@pytest.mark.parametrize("val", ["close", "Close", "CLOSE", "keep-alive, close"])
def test_app_connection_close_is_honoured(val):
    head, _, keep = build(headers=[("Content-Length", "1"), ("Connection", val)], keep_alive=True)
    _, fields = head_lines(head)
    assert keep is False
    assert [v for n, v in fields if n.lower() == "connection"] == ["close"]


def test_app_cannot_turn_keep_alive_on():
    head, _, keep = build(headers=[("Content-Length", "1"), ("Connection", "keep-alive")], keep_alive=False,
                          version="1.0")
    _, fields = head_lines(head)
    assert keep is False
    assert [v for n, v in fields if n.lower() == "connection"] == ["close"]


def test_date_and_server_added():
    head, _, _, _ = build_head("200 OK", [("Content-Length", "0")], "GET", "1.1", True)
    _, fields = head_lines(head)
    assert IMF_FIXDATE.match(value(fields, "Date"))
    assert value(fields, "Server") == SERVER_NAME == "wsgistack"


def test_app_date_and_server_kept_not_duplicated():
    head, _, _, _ = build_head("200 OK", [("date", DATE), ("SERVER", "mine"), ("Content-Length", "0")],
                            "GET", "1.1", True)
    _, fields = head_lines(head)
    assert [v for n, v in fields if n.lower() == "date"] == [DATE]
    assert [v for n, v in fields if n.lower() == "server"] == ["mine"]


def test_app_headers_keep_order_case_and_duplicates():
    headers = [("X-B", "2"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("x-a", "1"), ("Content-Length", "0")]
    head, _, _ = build(headers=headers)
    _, fields = head_lines(head)
    assert fields[:6] == [("Date", DATE)] + headers


def test_status_line_is_always_http11():
    head, _, _ = build(status="404 Not Found", version="1.0", headers=[("Content-Length", "0")])
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_custom_reason_phrase_and_latin1_kept():
    head, _, _ = build(status="299 Caf\xe9 \tOK", headers=[("Content-Length", "0")])
    assert head.startswith("HTTP/1.1 299 Caf\xe9 \tOK\r\n".encode("latin-1"))


def test_latin1_header_value_encoded_as_latin1():
    head, _, _ = build(headers=[("X-Name", "caf\xe9"), ("Content-Length", "0")])
    assert b"X-Name: caf\xe9\r\n" in head


def test_empty_header_value_allowed():
    head, _, _ = build(headers=[("X-Empty", ""), ("Content-Length", "0")])
    assert b"X-Empty: \r\n" in head


# -- Content-Length checks -----------------------------------------------------------------------------


def test_duplicate_equal_content_length_sent_once():
    head, framing, _ = build(headers=[("Content-Length", "3"), ("content-length", "3")])
    _, fields = head_lines(head)
    assert [v for n, v in fields if n.lower() == "content-length"] == ["3"]
    assert framing.remaining == 3


@pytest.mark.parametrize("headers", [
    [("Content-Length", "3"), ("Content-Length", "4")],
    [("Content-Length", "0"), ("content-length", "1")],
])
def test_conflicting_content_lengths_refused(headers):
    with pytest.raises(ResponseError):
        build(headers=headers)


@pytest.mark.parametrize("val", ["-1", "+3", "3.0", "0x10", "abc", "", " ", "1 2", "3, 3", "1e3"])
def test_invalid_content_length_refused(val):
    with pytest.raises(ResponseError):
        build(headers=[("Content-Length", val)])


def test_superscript_digit_content_length_is_a_response_error():
    with pytest.raises(ResponseError):
        build(headers=[("Content-Length", "\u00b2")])


# -- response splitting and malformed input ------------------------------------------------------------


@pytest.mark.parametrize("val", [
    "a\r\nSet-Cookie: evil=1", "a\nX: y", "a\rb", "a\x00b", "\r\n", "a\x7f", "a\x01", "a\x1b[0m", "a\x0b", "a\x0c",
    "v\n",
])
def test_control_characters_in_values_refused(val):
    with pytest.raises(ResponseError):
        check_headers([("X-Evil", val)])
    with pytest.raises(ResponseError):
        build(headers=[("X-Evil", val)])


def test_tab_in_value_allowed():
    check_headers([("X", "a\tb")])


@pytest.mark.parametrize("name", [
    "X Evil", "X:Evil", "X\r\nEvil", "\r\nX", "X\rY", "X\x00", "X(", "X)", "X,Y", "X/Y", "X@Y", "X[Y]", "X=Y",
    "X{Y}", "X\"Y", "X?", "X\\Y", "", " X", "X ", "X\t", "caf\xe9", "X\u2713", "X;Y", "X<Y>",
])
def test_non_token_names_refused(name):
    with pytest.raises(ResponseError):
        check_headers([(name, "v")])


@pytest.mark.parametrize("name", ["X-Foo\n", "Set-Cookie\n"])
def test_header_name_with_trailing_lf_refused(name):
    with pytest.raises(ResponseError):
        check_headers([(name, "v")])


@pytest.mark.parametrize("name", ["X-Ok", "x", "!#$%&'*+-.^_`|~", "Content-Type", "A1"])
def test_token_names_accepted(name):
    check_headers([(name, "v")])


@pytest.mark.parametrize("val", ["\u2713", "caf\u00e9\u20ac", "\U0001f600"])
def test_non_latin1_values_refused(val):
    with pytest.raises(ResponseError):
        check_headers([("X", val)])


@pytest.mark.parametrize("headers", [
    ("X", "v"),
    [("X", "v", "extra")],
    [["X", "v"]],
    [("X",)],
    [(b"X", "v")],
    [("X", b"v")],
    [("X", 1)],
    [(None, "v")],
    {"X": "v"},
    None,
])
def test_malformed_header_lists_refused(headers):
    with pytest.raises(ResponseError):
        check_headers(headers)


def test_check_headers_accepts_empty_list():
    check_headers([])


@pytest.mark.parametrize("status, code", [
    ("200 OK", 200),
    ("404 Not Found", 404),
    ("100 Continue", 100),
    ("599 Custom", 599),
    ("200 ", 200),
    ("418 I'm a teapot", 418),
    ("200 OK with spaces\tand tab", 200),
])
def test_check_status_accepts(status, code):
    assert check_status(status) == code


@pytest.mark.parametrize("status", [
    "200", "20 OK", "2000 OK", "200OK", " 200 OK", "099 Low", "abc OK", "OK 200", "",
    "200 OK\r\nX: y", "200 OK\r\n", "200 OK\r", "200 O\x00K", "200 O\x7fK", "200 \nX", "\n200 OK",
    "２００ OK",
])
def test_check_status_refuses(status):
    with pytest.raises(ResponseError):
        check_status(status)


@pytest.mark.parametrize("status", [200, b"200 OK", None, ("200", "OK"), 200.0])
def test_check_status_refuses_non_str(status):
    with pytest.raises(ResponseError):
        check_status(status)


def test_status_with_trailing_lf_refused():
    with pytest.raises(ResponseError):
        check_status("200 OK\n")


@pytest.mark.parametrize("status", ["200 \u2713", "200 \u20ac", "2\u0660\u0660 OK"])
def test_non_latin1_status_is_a_response_error(status):
    with pytest.raises(ResponseError):
        build_head(status, [("Content-Length", "0")], "GET", "1.1", True)


@pytest.mark.parametrize("status", ["200 OK\r\nSet-Cookie: x=1", "200\r\n", 200])
def test_build_head_refuses_bad_status(status):
    with pytest.raises(ResponseError):
        build_head(status, [], "GET", "1.1", True)


def test_build_head_refuses_bad_headers_before_building():
    with pytest.raises(ResponseError):
        build_head("200 OK", [("X", "ok"), ("Y", "a\r\nZ: b")], "GET", "1.1", True)


def test_remembered_fields_and_statuses_change_nothing_of_the_checks():
    """Checked fields and statuses are remembered (heads.py); what was refused before still is."""
    fields = [("Content-Type", "text/plain"), ("Content-Length", "2")]
    first = build_head("200 OK", list(fields), "GET", "1.1", True)
    for _ in range(3):
        check_status("200 OK")
        check_headers(list(fields))
    assert build_head("200 OK", list(fields), "GET", "1.1", True)[0] == first[0]
    for bad in ([("Content-Type", "text/plain\r\nX: y")], [["Content-Type", "text/plain"]],
                [("Content-Type", "text/plain", "x")], [("Content-Length", "x")]):
        with pytest.raises(ResponseError):
            check_headers(bad)
    with pytest.raises(ResponseError):
        check_status("200 OK\r\n")


def test_the_memory_of_checked_fields_is_bounded():
    for n in range(heads._SEEN_MAX * 2 + 10):
        check_headers([("Set-Cookie", f"id={n}")])
        check_status(f"299 Status {n}")
    assert len(heads._seen_fields) <= heads._SEEN_MAX
    assert len(heads._seen_statuses) <= heads._SEEN_MAX
    head, _, _, _ = build_head("200 OK", [("Set-Cookie", "id=1")], "GET", "1.1", True)
    assert b"\r\nSet-Cookie: id=1\r\n" in head


# -- Framing directly ----------------------------------------------------------------------------------


def test_framing_none_swallows_everything():
    framing = Framing("none")
    assert framing.encode(b"abc") == b""
    assert framing.finish() == b""
    assert framing.complete
    assert framing.sent == 0


def test_framing_close_passes_bytes_through():
    framing = Framing("close")
    assert framing.encode(b"abc") == b"abc"
    assert framing.encode(b"") == b""
    assert framing.sent == 3
    assert framing.complete


# -- dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("when, expected", [
    (784111777, "Sun, 06 Nov 1994 08:49:37 GMT"),
    (784111777.999, "Sun, 06 Nov 1994 08:49:37 GMT"),
    (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
    (1, "Thu, 01 Jan 1970 00:00:01 GMT"),
    (1700000000, "Tue, 14 Nov 2023 22:13:20 GMT"),
    (4102444800, "Fri, 01 Jan 2100 00:00:00 GMT"),
])
def test_http_date_is_imf_fixdate(when, expected):
    assert http_date(when) == expected
    assert IMF_FIXDATE.match(http_date(when))


def test_http_date_now_is_close_to_now():
    import time

    now = time.time()
    parsed = parsedate_to_datetime(http_date()).timestamp()
    assert abs(parsed - now) <= 2


def test_http_date_cached_within_a_second(monkeypatch):
    calls = []
    real = dates.formatdate

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(dates, "formatdate", counting)
    monkeypatch.setattr(dates, "_cache", (-1, ""))  # as after import
    first = http_date(1000000.1)
    assert http_date(1000000.5) == first
    assert http_date(1000000.999) == first
    assert len(calls) == 1
    second = http_date(1000001.0)
    assert second != first
    assert len(calls) == 2
    assert http_date(1000000.2) == first  # going back reformats, never serves the wrong second
    assert len(calls) == 3


def test_http_date_of_epoch_on_fresh_cache(monkeypatch):
    monkeypatch.setattr(dates, "_cache", (-1, ""))  # as after import
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


# -- simple_response, errors ---------------------------------------------------------------------------


def test_simple_response_full():
    out = simple_response("404 Not Found", b"nope\n")
    head, _, body = out.partition(b"\r\n\r\n")
    status, fields = head_lines(head + b"\r\n\r\n")
    assert status == "HTTP/1.1 404 Not Found"
    assert value(fields, "Content-Type") == "text/plain; charset=utf-8"
    assert value(fields, "Content-Length") == "5"
    assert IMF_FIXDATE.match(value(fields, "Date"))
    assert value(fields, "Server") == "wsgistack"
    assert value(fields, "Connection") == "close"
    assert body == b"nope\n"


def test_simple_response_keep_alive_and_content_type():
    out = simple_response("200 OK", b"{}", content_type="application/json", close=False)
    head, _, body = out.partition(b"\r\n\r\n")
    _, fields = head_lines(head + b"\r\n\r\n")
    assert value(fields, "Connection") is None
    assert value(fields, "Content-Type") == "application/json"
    assert body == b"{}"


def test_simple_response_head_only():
    out = simple_response("500 Internal Server Error", b"0123456789", head_only=True)
    assert out.endswith(b"\r\n\r\n")
    _, fields = head_lines(out)
    assert value(fields, "Content-Length") == "10"
    assert b"0123456789" not in out


def test_simple_response_empty_body():
    out = simple_response("204 No Content", b"")
    assert out.endswith(b"\r\n\r\n")
    assert value(head_lines(out)[1], "Content-Length") == "0"


def test_continue_constant():
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("status, text", [
    (400, "400 Bad Request"),
    (404, "404 Not Found"),
    (405, "405 Method Not Allowed"),
    (408, "408 Request Timeout"),
    (417, "417 Expectation Failed"),
    (431, "431 Request Header Fields Too Large"),
    (500, "500 Internal Server Error"),
    (505, "505 HTTP Version Not Supported"),
    (599, "599 Unknown"),
    (299, "299 Unknown"),
])
def test_status_line_text(status, text):
    assert status_line_text(status) == text


@pytest.mark.parametrize("status", [413, 414, 422, 503])
def test_status_line_text_uses_the_standard_phrase(status):
    from http import HTTPStatus

    assert status_line_text(status) == f"{status} {HTTPStatus(status).phrase}"


def test_error_body_content():
    assert error_body(431, "Too many request header fields") == \
        b"431 Request Header Fields Too Large\nToo many request header fields\n"


def test_error_body_replaces_non_latin1():
    body = error_body(400, "bad \u2713 thing")
    assert body == b"400 Bad Request\nbad ? thing\n"


def test_error_body_in_simple_response_is_consistent():
    body = error_body(413, "Request body too large")
    out = simple_response(status_line_text(413), body)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert rest == body
    assert value(head_lines(head + b"\r\n\r\n")[1], "Content-Length") == str(len(body))


def test_http_error():
    error = HTTPError(414, "Request-URI too long")
    assert error.status == 414
    assert error.reason == "Request-URI too long"
    assert str(error) == "414 Request-URI too long"
