"""run_app driving a recording ResponseSink: lazy head, lengths, write(), exc_info, errors, close(), files."""

from __future__ import annotations

import gc
import io
import logging
import os
import sys
import warnings
from wsgiref.validate import WSGIWarning, validator

import pytest

from wsgistack.http.errors import ClientGone
from wsgistack.http.heads import build_head
from wsgistack.http.parser import RequestHead, RequestParser
from wsgistack.wsgi.environ import ConnectionInfo, build_environ
from wsgistack.wsgi.file_wrapper import FileWrapper
from wsgistack.wsgi.input import InputStream
from wsgistack.wsgi.runner import ClientError, run_app


class RecordingSink:
    """A ResponseSink that checks the head the way the socket sink does (build_head) and records every call."""

    def __init__(self, method: str = "GET", version: str = "1.1", fail_body_with: Exception | None = None):
        self.method = method
        self.version = version
        self.calls: list[tuple] = []
        self.fail_body_with = fail_body_with
        self.file_bytes = b""

    def send_head(self, status, headers):
        build_head(status, headers, self.method, self.version, True)  # raises ResponseError if bad
        self.calls.append(("head", status, list(headers)))

    def send_body(self, data):
        if self.fail_body_with is not None:
            raise self.fail_body_with
        self.calls.append(("body", bytes(data)))

    def send_file(self, fd, offset, count):
        self.calls.append(("file", fd, offset, count))
        self.file_bytes = os.pread(fd, count, offset)

    def send_error(self, status, reason):
        self.calls.append(("error", status, reason))

    def end(self):
        self.calls.append(("end",))

    # -- views -----------------------------------------------------------------------------------------

    def kinds(self):
        return [call[0] for call in self.calls]

    @property
    def head(self):
        heads = [call for call in self.calls if call[0] == "head"]
        assert len(heads) == 1, self.calls
        return heads[0]

    def header(self, name):
        values = [v for n, v in self.head[2] if n.lower() == name.lower()]
        assert len(values) <= 1
        return values[0] if values else None

    @property
    def body(self):
        return b"".join(call[1] for call in self.calls if call[0] == "body")


def make_environ(method="GET", target="/", headers="Host: example.com", body=b"", version="1.1", errors=None):
    lines = [line for line in headers.split("\n") if line]
    data = f"{method} {target} HTTP/{version}\r\n".encode() + b"".join(
        line.encode() + b"\r\n" for line in lines) + b"\r\n" + body
    parser = RequestParser()
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, RequestHead)

    def pull():
        event = parser.next_event()
        return getattr(event, "data", b"")

    info = ConnectionInfo("127.0.0.1", "8000", "127.0.0.1", "50000")
    return build_environ(head, info, InputStream(pull), errors=errors or io.StringIO())


def run(app, method="GET", **kwargs):
    sink = RecordingSink(method=method, version=kwargs.get("version", "1.1"))
    result = run_app(app, make_environ(method=method, **kwargs), sink)
    return sink, result


class Closing:
    """An app iterable with close(), recording whether it was called; optionally raising at some point."""

    def __init__(self, pieces, raise_at: int | None = None, close_raises=False):
        self.pieces = list(pieces)
        self.raise_at = raise_at
        self.closed = 0
        self.close_raises = close_raises

    def __iter__(self):
        for index, piece in enumerate(self.pieces):
            if index == self.raise_at:
                raise RuntimeError("boom in iteration")
            yield piece
        if self.raise_at == len(self.pieces):
            raise RuntimeError("boom at the end")

    def close(self):
        self.closed += 1
        if self.close_raises:
            raise RuntimeError("boom in close")


# -- lazy head -----------------------------------------------------------------------------------------


def test_head_deferred_until_first_non_empty_piece():
    sink = RecordingSink()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        assert sink.calls == []
        yield b""
        assert sink.calls == []
        yield b""
        assert sink.calls == []
        yield b"first"
        assert sink.kinds() == ["head", "body"]
        yield b"second"

    result = run_app(app, make_environ(), sink)
    assert sink.kinds() == ["head", "body", "body", "end"]
    assert sink.body == b"firstsecond"
    assert sink.header("Content-Length") is None  # length unknown: the sink chunks
    assert result.status == 200
    assert result.complete


def test_start_response_may_be_called_during_iteration():
    def app(environ, start_response):
        yield b""
        start_response("201 Created", [])
        yield b"late"

    sink, result = run(app)
    assert sink.head[1] == "201 Created"
    assert sink.body == b"late"
    assert result.status == 201


@pytest.mark.parametrize("body", [[], (), iter([]), [b""], [b"", b""]])
def test_empty_body_sends_head_with_content_length_0(body):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    sink, result = run(app)
    assert sink.kinds() == ["head", "end"]
    assert sink.header("Content-Length") == "0"
    assert result.complete


def test_generator_body_without_pieces_gets_content_length_0():
    def app(environ, start_response):
        start_response("200 OK", [])
        yield from ()

    sink, _ = run(app)
    assert sink.header("Content-Length") == "0"


@pytest.mark.parametrize("body", [[b"hello"], (b"hello",), [bytearray(b"hello")]])
def test_single_item_list_gets_content_length(body):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    sink, result = run(app)
    assert sink.header("Content-Length") == "5"
    assert sink.body == b"hello"
    assert sink.kinds() == ["head", "body", "end"]
    assert result.status == 200 and result.complete


def test_multi_item_list_gets_no_content_length():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"a", b"b"]

    sink, _ = run(app)
    assert sink.header("Content-Length") is None
    assert sink.body == b"ab"


@pytest.mark.parametrize("name, val", [("Content-Length", "5"), ("content-length", "5"),
                                       ("Transfer-Encoding", "chunked")])
def test_app_framing_headers_not_overridden(name, val):
    def app(environ, start_response):
        start_response("200 OK", [(name, val)])
        return [b"hello"]

    sink, _ = run(app)
    framing = [(n, v) for n, v in sink.head[2] if n.lower() in ("content-length", "transfer-encoding")]
    assert framing == [(name, val)]


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified", "100 Continue"])
def test_no_content_length_added_for_bodiless_statuses(status):
    def app(environ, start_response):
        start_response(status, [])
        return []

    sink, result = run(app)
    assert sink.header("Content-Length") is None
    assert result.status == int(status[:3])


def test_no_content_length_added_for_head_requests():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"body of a GET"]

    sink, _ = run(app, method="HEAD")
    assert sink.header("Content-Length") is None


def test_headers_passed_to_sink_are_a_copy():
    headers = [("X-A", "1")]

    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"x"]

    sink, _ = run(app)
    assert headers == [("X-A", "1")]  # the Content-Length went into the runner's copy
    assert ("Content-Length", "1") in sink.head[2]


# -- write() -------------------------------------------------------------------------------------------


def test_write_callable():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one ")
        write(bytearray(b"two "))
        return [b"three"]

    sink, result = run(app)
    assert sink.kinds() == ["head", "body", "body", "body", "end"]
    assert sink.body == b"one two three"
    assert sink.header("Content-Length") is None
    assert result.complete


def test_write_empty_sends_head_but_no_body_piece():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"")
        assert sink.kinds() == ["head"]
        return []

    sink = RecordingSink()
    run_app(app, make_environ(), sink)
    assert sink.kinds() == ["head", "end"]


def test_write_str_is_an_error_before_head():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write("text")
        return []

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert sink.calls[0][1] == 500
    assert result.status == 500


def test_body_piece_of_str_is_an_error():
    def app(environ, start_response):
        start_response("200 OK", [])
        return ["text"]

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert result.status == 500


# -- start_response misuse and exc_info ----------------------------------------------------------------


def test_start_response_twice_without_exc_info_is_500(caplog):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"x"]

    sink, result = run(app)
    assert sink.calls == [("error", 500, "Internal server error")]
    assert result.status == 500
    assert not result.complete
    assert "start_response was called twice" in caplog.text


def test_exc_info_before_head_replaces_status_and_headers():
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("handled")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    sink, result = run(app)
    assert sink.head[1] == "500 Oops"
    assert ("X-First", "1") not in sink.head[2]
    assert sink.body == b"sorry"
    assert "error" not in sink.kinds()
    assert result.status == 500
    assert result.complete


def test_exc_info_first_call_is_fine():
    def app(environ, start_response):
        try:
            raise KeyError("x")
        except KeyError:
            start_response("503 Busy", [], sys.exc_info())
        return [b""]

    sink, _ = run(app)
    assert sink.head[1] == "503 Busy"


def test_exc_info_after_head_sent_reraises(caplog):
    seen = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise ValueError("late failure")
        except ValueError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except ValueError as exc:
                seen.append(exc)
                raise
        return [b"never"]

    with caplog.at_level(logging.ERROR, logger="wsgistack.server"):
        sink, result = run(app)
    assert len(seen) == 1 and str(seen[0]) == "late failure"
    assert sink.kinds() == ["head", "body"]
    assert "error" not in sink.kinds() and "end" not in sink.kinds()
    assert result.status == 200
    assert not result.complete
    assert "after the response started" in caplog.text
    assert "late failure" in caplog.text


def test_exc_info_after_head_in_iteration_closes_iterable(caplog):
    body = Closing([b"a"])

    def app(environ, start_response):
        start_response("200 OK", [])

        def gen():
            yield b"a"
            try:
                raise OSError("disk")
            except OSError:
                start_response("500 X", [], sys.exc_info())
            yield b"b"

        body.pieces = gen()
        return body

    sink, result = run(app)
    assert sink.kinds() == ["head", "body"]
    assert body.closed == 1
    assert not result.complete


# -- app failures --------------------------------------------------------------------------------------


def test_app_raising_before_head_is_500(caplog):
    def app(environ, start_response):
        raise ZeroDivisionError("app bug")

    with caplog.at_level(logging.ERROR, logger="wsgistack.server"):
        sink, result = run(app)
    assert sink.calls == [("error", 500, "Internal server error")]
    assert result.status == 500
    assert not result.complete
    assert "app bug" in caplog.text
    assert "GET" in caplog.text


def test_app_raising_after_start_response_before_body_is_500():
    def app(environ, start_response):
        start_response("200 OK", [])
        raise RuntimeError("after start_response")

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert result.status == 500


def test_iteration_raising_before_first_piece_is_500():
    body = Closing([b"a"], raise_at=0)

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert body.closed == 1
    assert result.status == 500


def test_iteration_raising_after_head_is_logged_not_500(caplog):
    body = Closing([b"a", b"b"], raise_at=1)

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    with caplog.at_level(logging.ERROR, logger="wsgistack.server"):
        sink, result = run(app)
    assert sink.kinds() == ["head", "body"]
    assert body.closed == 1
    assert result.status == 200
    assert not result.complete
    assert "boom in iteration" in caplog.text


def test_body_before_start_response_is_500():
    def app(environ, start_response):
        return [b"no status"]

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert result.status == 500


def test_app_returning_none_is_500():
    def app(environ, start_response):
        start_response("200 OK", [])

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert result.status == 500


@pytest.mark.parametrize("headers", [
    [("X-Evil", "a\r\nSet-Cookie: x=1")],
    [("X-Evil", "a\nb")],
    [("X-Evil\r\nY", "v")],
    [("X Evil", "v")],
    [("X", "\x00")],
    [("X", "\u2713")],
    ("X", "v"),
])
def test_bad_headers_give_500_never_a_head(headers):
    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"x"]

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert sink.calls[0][1] == 500
    assert result.status == 500


@pytest.mark.parametrize("status", ["200", "OK", "20 OK", "200 OK\r\nX: y", 200, b"200 OK"])
def test_bad_status_gives_500(status):
    def app(environ, start_response):
        start_response(status, [])
        return [b"x"]

    sink, result = run(app)
    assert sink.kinds() == ["error"]
    assert result.status == 500


@pytest.mark.parametrize("status, headers", [
    ("200 OK", [("Content-Length", "abc")]),
    ("200 OK", [("Content-Length", "1"), ("Content-Length", "2")]),
    ("200 \u2713", []),
])
def test_head_refused_by_the_sink_still_gets_500(status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"x"]

    sink, result = run(app)
    assert ("error", 500, "Internal server error") in sink.calls
    assert result.status == 500


def test_client_error_from_the_app_is_answered_with_its_status(caplog):
    def app(environ, start_response):
        raise ClientError("body too slow", status=408)

    sink, result = run(app)
    assert sink.calls == [("error", 408, "body too slow")]
    assert result.status == 408
    assert not result.complete


def test_client_error_after_head_is_not_answered():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"x")
        raise ClientError("gone", status=400)

    sink, result = run(app)
    assert sink.kinds() == ["head", "body"]
    assert result.status == 200


def test_client_gone_while_sending_is_quiet(caplog):
    body = Closing([b"a", b"b"])

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    sink = RecordingSink(fail_body_with=ClientGone("reset by peer"))
    with caplog.at_level(logging.ERROR, logger="wsgistack.server"):
        result = run_app(app, make_environ(), sink)
    assert sink.kinds() == ["head"]
    assert body.closed == 1
    assert not result.complete
    assert caplog.records == []


# -- close() -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raise_at", [None, 0, 1, 2])
def test_close_always_called_exactly_once(raise_at):
    body = Closing([b"a", b"b"], raise_at=raise_at)

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    sink, result = run(app)
    assert body.closed == 1
    assert result.complete is (raise_at is None)


def test_close_called_when_start_response_fails_in_iteration():
    body = Closing([b"a"])

    def app(environ, start_response):
        def gen():
            start_response("200 OK", [("Bad Name", "v")])
            yield b"a"

        body.pieces = gen()
        return body

    sink, _ = run(app)
    assert sink.kinds() == ["error"]
    assert body.closed == 1


def test_close_raising_is_logged_response_still_complete(caplog):
    body = Closing([b"a"], close_raises=True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    with caplog.at_level(logging.ERROR, logger="wsgistack.server"):
        sink, result = run(app)
    assert sink.kinds() == ["head", "body", "end"]
    assert result.complete
    assert "close()" in caplog.text


def test_generator_close_runs_finally():
    cleaned = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"a"
            yield b"b"
        finally:
            cleaned.append(True)

    sink = RecordingSink(fail_body_with=ClientGone("gone"))
    run_app(app, make_environ(), sink)
    assert cleaned == [True]


# -- file_wrapper --------------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    return path


def test_file_wrapper_real_file_uses_send_file(data_file):
    handle = open(data_file, "rb")
    expected_fd = handle.fileno()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](handle)

    sink, result = run(app)
    assert sink.kinds() == ["head", "file", "end"]
    _, fd, offset, count = sink.calls[1]
    assert fd == expected_fd
    assert (offset, count) == (0, 1024)
    assert sink.header("Content-Length") == "1024"
    assert sink.file_bytes == data_file.read_bytes()
    assert handle.closed  # FileWrapper.close is the file's close
    assert result.complete


def test_file_wrapper_honours_current_offset(data_file):
    handle = open(data_file, "rb")
    handle.seek(10)

    def app(environ, start_response):
        start_response("200 OK", [])
        return FileWrapper(handle)

    sink, _ = run(app)
    _, _, offset, count = sink.calls[1]
    assert (offset, count) == (10, 1014)
    assert sink.header("Content-Length") == "1014"
    assert sink.file_bytes == data_file.read_bytes()[10:]


def test_file_wrapper_offset_past_end_sends_nothing(data_file):
    handle = open(data_file, "rb")
    handle.seek(5000)

    def app(environ, start_response):
        start_response("200 OK", [])
        return FileWrapper(handle)

    sink, _ = run(app)
    assert sink.calls[1][2:] == (5000, 0)
    assert sink.header("Content-Length") == "0"


def test_file_wrapper_keeps_app_content_length(data_file):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "100")])
        return FileWrapper(open(data_file, "rb"))

    sink, _ = run(app)
    assert sink.header("Content-Length") == "100"
    assert sink.kinds() == ["head", "file", "end"]


def test_file_wrapper_after_write_sends_file_without_new_head(data_file):
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"prefix")
        return FileWrapper(open(data_file, "rb"))

    sink, _ = run(app)
    assert sink.kinds() == ["head", "body", "file", "end"]
    assert sink.header("Content-Length") is None


def test_file_wrapper_bytesio_is_iterated():
    data = b"0123456789" * 10
    buffer = io.BytesIO(data)

    def app(environ, start_response):
        start_response("200 OK", [])
        return FileWrapper(buffer, block_size=32)

    sink, result = run(app)
    assert sink.kinds() == ["head", "body", "body", "body", "body", "end"]
    assert [len(c[1]) for c in sink.calls if c[0] == "body"] == [32, 32, 32, 4]
    assert sink.body == data
    assert buffer.closed
    assert result.complete


def test_file_wrapper_over_pipe_is_iterated():
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"piped data")
    os.close(write_fd)
    handle = os.fdopen(read_fd, "rb")

    def app(environ, start_response):
        start_response("200 OK", [])
        return FileWrapper(handle)

    sink, _ = run(app)
    assert "file" not in sink.kinds()
    assert sink.body == b"piped data"
    assert handle.closed


def test_file_wrapper_without_close():
    class Reader:
        def __init__(self):
            self.parts = [b"ab", b"cd", b""]

        def read(self, size):
            return self.parts.pop(0)

    wrapper = FileWrapper(Reader())
    assert not hasattr(wrapper, "close")
    assert wrapper.sendfile_source() is None
    assert list(wrapper) == [b"ab", b"cd"]


def test_sendfile_source_of_closed_file(data_file):
    handle = open(data_file, "rb")
    handle.close()
    assert FileWrapper(handle).sendfile_source() is None


# -- wsgiref.validate ----------------------------------------------------------------------------------


def _validated_run(app, **kwargs):
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", WSGIWarning)
            sink = RecordingSink(method=kwargs.get("method", "GET"))
            result = run_app(validator(app), make_environ(**kwargs), sink)
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert unraisable == [], [u.exc_value for u in unraisable]
    assert "error" not in sink.kinds(), sink.calls
    assert result.complete
    return sink


def test_validator_simple_get(caplog):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    with caplog.at_level(logging.ERROR):
        sink = _validated_run(app, target="/caf%C3%A9?x=1", headers="Host: example.com:8080\nAccept: */*")
    assert sink.body == b"hello"
    assert caplog.records == []


def test_validator_post_reading_body():
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        first = stream.readline()
        rest = stream.read(int(environ["CONTENT_LENGTH"]) - len(first))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [first, rest]

    sink = _validated_run(app, method="POST",
                          headers="Host: x\nContent-Type: text/plain\nContent-Length: 11", body=b"line\nrest!!")
    assert sink.body == b"line\nrest!!"


def test_validator_chunked_post_iterating_body():
    def app(environ, start_response):
        lines = list(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return lines

    sink = _validated_run(app, method="POST", headers="Host: x\nTransfer-Encoding: chunked",
                          body=b"4\r\na\nb\n\r\n0\r\n\r\n")
    assert sink.body == b"a\nb\n"


def test_validator_write_and_generator():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w")

        def gen():
            yield b"g1"
            yield b"g2"

        return gen()

    sink = _validated_run(app)
    assert sink.body == b"wg1g2"


def test_validator_head_request_and_http10():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    _validated_run(app, method="HEAD")
    _validated_run(app, version="1.0", headers="")


def test_validator_file_wrapper(data_file):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(data_file, "rb"), 256)

    sink = _validated_run(app)
    assert sink.body == data_file.read_bytes()


def test_validator_exc_info_path():
    def app(environ, start_response):
        try:
            raise ValueError("x")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"err"]

    sink = _validated_run(app)
    assert sink.head[1] == "500 Internal Server Error"
