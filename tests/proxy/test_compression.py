"""gzip: the setting, Accept-Encoding, when to compress, the streaming compressor and the rewritten head."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgistack.proxy.compression import (
    DEFAULT_TYPES,
    GzipSettings,
    GzipStream,
    accepts_gzip,
    gzip_headers,
    should_compress,
)

# --- the setting --------------------------------------------------------------------------------------------


def test_from_value_booleans_and_defaults():
    assert GzipSettings.from_value(True) == GzipSettings()
    assert GzipSettings.from_value(False) == GzipSettings(enabled=False)
    assert GzipSettings() == GzipSettings(enabled=True, min_length=1024, level=1, types=DEFAULT_TYPES)


def test_from_value_table():
    settings = GzipSettings.from_value(
        {"enabled": True, "min_length": "1k", "level": 6, "types": ["text/HTML", "application/json"]})
    assert settings == GzipSettings(min_length=1024, level=6, types=("text/html", "application/json"))
    assert GzipSettings.from_value({"min_length": 0}).min_length == 0
    assert GzipSettings.from_value({"types": "text/css, text/plain"}).types == ("text/css", "text/plain")
    assert GzipSettings.from_value({"types": ["*"]}).types == ("*",)
    assert GzipSettings.from_value({}) == GzipSettings()


@pytest.mark.parametrize("value, message", [
    ("yes", r"is not true, false or a table"),
    (1, r"is not true, false or a table"),
    ({"levle": 5}, r"^unknown key 'levle' \(known: enabled, min_length, level, types\)"),
    ({"level": 0}, r"^level: "),
    ({"level": 10}, r"^level: 10 is not a level from 1 to 9"),
    ({"level": True}, r"^level: "),
    ({"min_length": "lots"}, r"^min_length: 'lots' is not a size"),
    ({"min_length": -1}, r"^min_length: "),
    ({"types": []}, r"^types: "),
    ({"types": ["html"]}, r"^types: 'html' is not a media type"),
    ({"types": [3]}, r"^types: "),
    ({"enabled": "perhaps"}, r"^enabled: "),
])
def test_from_value_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        GzipSettings.from_value(value)


# --- Accept-Encoding ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, accepted", [
    ("gzip", True),
    ("GZIP", True),
    ("gzip, deflate, br", True),
    ("br, gzip", True),
    ("deflate,gzip", True),
    ("  gzip  ;  q=0.5 ", True),
    ("gzip;q=1", True),
    ("gzip;q=1.0", True),
    ("gzip;Q=0.001", True),
    ("gzip;q=0", False),
    ("gzip;q=0.0", False),
    ("gzip;q=0.000", False),
    ("gzip; q=0, deflate", False),
    ("gzip;q=junk", False),
    ("gzip;q=2", False),
    ("gzip;q=-1", False),
    ("gzip;q=nan", False),
    ("x-gzip", True),
    ("x-gzip;q=0", False),
    ("*", True),
    ("*;q=0.1", True),
    ("*;q=0", False),
    ("gzip;q=0, *", False),   # named explicitly: the explicit refusal wins
    ("gzip, *;q=0", True),
    ("identity", False),
    ("identity, deflate, br", False),
    ("gzipped", False),
    ("notgzip", False),
    ("", False),
    (None, False),
    (",,,", False),
    ("gzip;level=9", True),   # other parameters are ignored
])
def test_accepts_gzip(value, accepted):
    assert accepts_gzip(value) is accepted


# --- should_compress ----------------------------------------------------------------------------------------

SETTINGS = GzipSettings()
ACCEPTS = [("Accept-Encoding", "gzip, deflate")]
HTML = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "5000")]


def test_should_compress_an_ordinary_page():
    assert should_compress(SETTINGS, "GET", 200, ACCEPTS, HTML)


@pytest.mark.parametrize("settings, method, status, request_headers, response_headers, expected", [
    (GzipSettings(enabled=False), "GET", 200, ACCEPTS, HTML, False),
    (SETTINGS, "HEAD", 200, ACCEPTS, HTML, False),
    (SETTINGS, "head", 200, ACCEPTS, HTML, False),
    (SETTINGS, "POST", 200, ACCEPTS, HTML, True),
    (SETTINGS, "GET", 200, [], HTML, False),
    (SETTINGS, "GET", 200, [("accept-encoding", "br")], HTML, False),
    (SETTINGS, "GET", 200, [("accept-encoding", "br"), ("ACCEPT-ENCODING", "gzip")], HTML, True),  # fields join
    (SETTINGS, "GET", 200, [("Accept-Encoding", "gzip;q=0")], HTML, False),
    (SETTINGS, "GET", 201, ACCEPTS, HTML, False),
    (SETTINGS, "GET", 204, ACCEPTS, HTML, False),
    (SETTINGS, "GET", 206, ACCEPTS, HTML, False),
    (SETTINGS, "GET", 301, ACCEPTS, HTML, False),
    (SETTINGS, "GET", 304, ACCEPTS, HTML, False),
    (SETTINGS, "GET", 404, ACCEPTS, HTML, True),
    (SETTINGS, "GET", 500, ACCEPTS, HTML, True),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("Content-Encoding", "br")], False),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("content-encoding", "gzip")], False),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("Content-Range", "bytes 0-4999/9000")], False),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "image/png")], False),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "application/octet-stream")], False),
    (SETTINGS, "GET", 200, ACCEPTS, [("content-type", "APPLICATION/JSON")], True),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "image/svg+xml")], True),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "text/html ; charset=utf-8")], True),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Length", "5000")], False),  # no type: not known to be text
    (GzipSettings(types=("*",)), "GET", 200, ACCEPTS, [("Content-Type", "image/png")], True),
    (GzipSettings(types=("text/csv",)), "GET", 200, ACCEPTS, [("Content-Type", "text/csv")], True),
    (GzipSettings(types=("text/csv",)), "GET", 200, ACCEPTS, HTML, False),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "text/html"), ("Content-Length", "1023")], False),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "text/html"), ("Content-Length", "1024")], True),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "text/html"), ("Content-Length", "0")], False),
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "text/html")], True),  # streamed, length unknown
    (SETTINGS, "GET", 200, ACCEPTS, [("Content-Type", "text/html"), ("Content-Length", "x")], False),
    (GzipSettings(min_length=0), "GET", 200, ACCEPTS, [("Content-Type", "text/html"), ("Content-Length", "1")],
     True),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("Cache-Control", "public, no-transform")], False),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("cache-control", "No-Transform")], False),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("Cache-Control", "max-age=60"), ("Cache-Control", "no-transform")],
     False),
    (SETTINGS, "GET", 200, ACCEPTS, HTML + [("Cache-Control", "max-age=60, no-store")], True),
])
def test_should_compress(settings, method, status, request_headers, response_headers, expected):
    assert should_compress(settings, method, status, request_headers, response_headers) is expected


def test_should_compress_takes_any_iterable_of_headers():
    assert should_compress(SETTINGS, "GET", 200, iter(ACCEPTS), iter(HTML))


# --- GzipStream ---------------------------------------------------------------------------------------------

def test_round_trip_in_many_pieces():
    body = b"".join(b"line %d of a very compressible body\n" % i for i in range(20000))
    stream = GzipStream(level=6)
    pieces = [stream.compress(body[i:i + 997]) for i in range(0, len(body), 997)]
    out = b"".join(pieces) + stream.finish()
    assert gzip.decompress(out) == body
    assert len(out) < len(body) // 10
    assert b"" in pieces  # zlib buffers; callers must expect empty pieces


def test_output_is_the_gzip_format():
    stream = GzipStream()
    out = stream.compress(b"hello") + stream.finish()
    assert out[:2] == b"\x1f\x8b"  # the gzip magic, not a zlib or raw deflate stream
    assert gzip.decompress(out) == b"hello"


def test_empty_body_is_a_valid_gzip_member():
    assert gzip.decompress(GzipStream().finish()) == b""


def test_flush_makes_everything_so_far_decodable():
    stream = GzipStream()
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    first = stream.compress(b"event: one\n\n") + stream.flush()
    assert decoder.decompress(first) == b"event: one\n\n"
    second = stream.compress(b"event: two\n\n") + stream.flush()
    assert decoder.decompress(second) == b"event: two\n\n"
    decoder.decompress(stream.finish())
    assert decoder.eof


def test_finish_twice_and_compress_after_finish():
    stream = GzipStream()
    stream.compress(b"x")
    stream.finish()
    assert stream.finish() == b"" and stream.flush() == b""
    with pytest.raises(ValueError):
        stream.compress(b"more")


@pytest.mark.parametrize("level", [0, 10, -1])
def test_bad_level(level):
    with pytest.raises(ValueError):
        GzipStream(level)


@given(pieces=st.lists(st.binary(max_size=3000), max_size=30), level=st.integers(1, 9),
       flushes=st.sets(st.integers(0, 29)))
def test_round_trip_property(pieces, level, flushes):
    stream = GzipStream(level)
    out = []
    for index, piece in enumerate(pieces):
        out.append(stream.compress(piece))
        if index in flushes:
            out.append(stream.flush())
    out.append(stream.finish())
    assert gzip.decompress(b"".join(out)) == b"".join(pieces)


def test_incompressible_data_round_trips():
    body = os.urandom(200_000)
    stream = GzipStream(9)
    out = b"".join(stream.compress(body[i:i + 4096]) for i in range(0, len(body), 4096)) + stream.finish()
    assert gzip.decompress(out) == body


# --- gzip_headers -------------------------------------------------------------------------------------------

def test_headers_plain_case():
    headers = [("Content-Type", "text/html"), ("Content-Length", "5000"), ("ETag", '"abc"'),
               ("Accept-Ranges", "bytes"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert gzip_headers(headers) == [
        ("Content-Type", "text/html"), ("ETag", 'W/"abc"'), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
        ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"),
    ]
    assert headers[1] == ("Content-Length", "5000")  # the input list is left alone


@pytest.mark.parametrize("etag, expected", [
    ('"abc"', 'W/"abc"'),
    ('W/"abc"', 'W/"abc"'),
    ('  "abc" ', 'W/"abc"'),
    ('""', 'W/""'),
    ("abc", None),   # not an entity tag: dropped, as nginx does
])
def test_headers_etag_made_weak(etag, expected):
    etags = [value for name, value in gzip_headers([("etag", etag)]) if name.lower() == "etag"]
    assert etags == ([] if expected is None else [expected])


@pytest.mark.parametrize("vary, expected", [
    ([], [("Vary", "Accept-Encoding")]),
    ([("Vary", "Origin")], [("Vary", "Origin, Accept-Encoding")]),
    ([("vary", "Origin, Cookie")], [("vary", "Origin, Cookie, Accept-Encoding")]),
    ([("Vary", "accept-encoding")], [("Vary", "accept-encoding")]),
    ([("Vary", "Origin,Accept-Encoding")], [("Vary", "Origin,Accept-Encoding")]),
    ([("Vary", "*")], [("Vary", "*")]),
    ([("Vary", "Origin"), ("Vary", "Accept-Encoding")], [("Vary", "Origin"), ("Vary", "Accept-Encoding")]),
    ([("Vary", "Origin"), ("Vary", "Cookie")], [("Vary", "Origin, Accept-Encoding"), ("Vary", "Cookie")]),
    ([("Vary", "")], [("Vary", "Accept-Encoding")]),
])
def test_headers_vary_merge(vary, expected):
    rewritten = gzip_headers([("Content-Type", "text/html")] + vary)
    assert [(n, v) for n, v in rewritten if n.lower() == "vary"] == expected
    if vary != [("Vary", "*")]:  # "*" already covers every header
        assert sum(1 for n, v in rewritten if n.lower() == "vary" and "accept-encoding" in v.lower()) == 1


def test_headers_encoding_named_once():
    rewritten = gzip_headers([("Content-Encoding", "identity"), ("content-length", "10")])
    assert [(n, v) for n, v in rewritten if n.lower() in ("content-encoding", "content-length")] == \
        [("Content-Encoding", "gzip")]
