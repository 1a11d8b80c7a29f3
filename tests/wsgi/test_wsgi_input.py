"""wsgi.input: InputStream over a pull callable that hands out body pieces and then b""."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.wsgi.input import InputStream


class Pull:
    """Hands out the given pieces, then b""; fails the test if called again after b""."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.calls = 0
        self.ended = False

    def __call__(self) -> bytes:
        assert not self.ended, "pull() called again after it returned b''"
        self.calls += 1
        if not self.pieces:
            self.ended = True
            return b""
        return self.pieces.pop(0)


def stream(*pieces) -> tuple[InputStream, Pull]:
    pull = Pull(pieces)
    return InputStream(pull), pull


# -- laziness ------------------------------------------------------------------------------------------


def test_pull_not_called_before_first_read():
    _, pull = stream(b"abc")
    assert pull.calls == 0


def test_finished_false_before_reading():
    s, pull = stream(b"abc")
    assert not s.finished
    assert pull.calls == 0


def test_read_n_pulls_only_what_it_needs():
    s, pull = stream(b"abc", b"def", b"ghi")
    assert s.read(2) == b"ab"
    assert pull.calls == 1
    assert s.read(1) == b"c"
    assert pull.calls == 1
    assert s.read(4) == b"defg"
    assert pull.calls == 3


def test_read_zero_does_not_pull():
    s, pull = stream(b"abc")
    assert s.read(0) == b""
    assert pull.calls == 0
    assert s.read(3) == b"abc"


def test_readline_zero_does_not_pull():
    s, pull = stream(b"abc\n")
    assert s.readline(0) == b""
    assert pull.calls == 0
    assert s.readline() == b"abc\n"


def test_pull_never_called_after_eof():
    s, pull = stream(b"abc")
    assert s.read() == b"abc"
    assert pull.ended
    for _ in range(3):
        assert s.read() == b""
        assert s.read(10) == b""
        assert s.readline() == b""
        assert s.readlines() == []
        assert list(s) == []
    assert pull.calls == 2


def test_empty_body():
    s, pull = stream()
    assert s.read() == b""
    assert s.finished
    assert pull.calls == 1
    assert s.read(5) == b""
    assert s.readline() == b""


# -- read ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arg", [(), (-1,), (None,), (-100,)])
def test_read_all(arg):
    s, _ = stream(b"ab", b"cd", b"", b"never")
    assert s.read(*arg) == b"abcd"  # an empty piece is the end of the body
    assert s.finished


def test_read_all_after_partial_read():
    s, _ = stream(b"hello ", b"world")
    assert s.read(3) == b"hel"
    assert s.read() == b"lo world"
    assert s.finished


def test_read_n_larger_than_body():
    s, _ = stream(b"abc", b"de")
    assert s.read(100) == b"abcde"
    assert s.finished
    assert s.read(100) == b""


def test_read_exact_sizes_span_pieces():
    s, _ = stream(b"a", b"bc", b"def", b"ghij")
    assert [s.read(n) for n in (3, 3, 3, 3)] == [b"abc", b"def", b"ghi", b"j"]


def test_read_returns_bytes_not_bytearray():
    s, _ = stream(b"abc", b"def")
    assert type(s.read(2)) is bytes
    assert type(s.read()) is bytes
    s, _ = stream(b"a\nb")
    assert type(s.readline()) is bytes


def test_bytearray_and_memoryview_pieces():
    s, _ = stream(bytearray(b"ab"), memoryview(b"cd"))
    assert s.read() == b"abcd"


def test_finished_only_when_buffer_drained():
    s, _ = stream(b"abcdef")
    assert s.read(6) == b"abcdef"
    assert not s.finished  # the end not seen yet
    assert s.read(1) == b""
    assert s.finished


def test_finished_false_while_buffered_data_remains():
    s, _ = stream(b"ab\ncd")
    s.readline()
    assert not s.finished
    assert s.read() == b"cd"
    assert s.finished


# -- readline ------------------------------------------------------------------------------------------


def test_readline_basic():
    s, _ = stream(b"one\ntwo\nthree")
    assert s.readline() == b"one\n"
    assert s.readline() == b"two\n"
    assert s.readline() == b"three"
    assert s.readline() == b""


def test_readline_across_pieces():
    s, _ = stream(b"o", b"n", b"e\nt", b"wo", b"\n")
    assert s.readline() == b"one\n"
    assert s.readline() == b"two\n"
    assert s.readline() == b""


def test_readline_stops_pulling_at_newline():
    s, pull = stream(b"a\nb", b"c\n", b"d")
    assert s.readline() == b"a\n"
    assert pull.calls == 1
    assert s.readline() == b"bc\n"
    assert pull.calls == 2


@pytest.mark.parametrize("arg", [(), (-1,), (None,)])
def test_readline_unbounded(arg):
    s, _ = stream(b"x" * 1000, b"y\nz")
    assert s.readline(*arg) == b"x" * 1000 + b"y\n"


@pytest.mark.parametrize("size, lines", [
    (1, [b"h", b"e", b"l", b"l", b"o", b"\n", b"w", b"o", b"r", b"l", b"d"]),
    (3, [b"hel", b"lo\n", b"wor", b"ld"]),
    (5, [b"hello", b"\n", b"world"]),
    (6, [b"hello\n", b"world"]),
    (7, [b"hello\n", b"world"]),
    (100, [b"hello\n", b"world"]),
])
def test_readline_with_size(size, lines):
    s, _ = stream(b"hel", b"lo\nwor", b"ld")
    got = []
    while line := s.readline(size):
        assert len(line) <= size
        got.append(line)
    assert got == lines


def test_readline_size_does_not_pull_more_than_needed():
    s, pull = stream(b"abcdef", b"gh\n")
    assert s.readline(4) == b"abcd"
    assert pull.calls == 1
    assert s.readline(2) == b"ef"
    assert pull.calls == 1


def test_readline_size_exact_line_length():
    s, _ = stream(b"ab\ncd\n")
    assert s.readline(3) == b"ab\n"
    assert s.readline(3) == b"cd\n"
    assert s.readline(3) == b""


def test_readline_only_newlines():
    s, _ = stream(b"\n\n", b"\n")
    assert [s.readline(), s.readline(), s.readline(), s.readline()] == [b"\n", b"\n", b"\n", b""]


def test_readline_crlf_kept():
    s, _ = stream(b"a\r\nb\r\n")
    assert s.readline() == b"a\r\n"
    assert s.readline() == b"b\r\n"


# -- readlines and iteration ---------------------------------------------------------------------------


def test_readlines_all():
    s, _ = stream(b"a\nbb\n", b"ccc\nd")
    assert s.readlines() == [b"a\n", b"bb\n", b"ccc\n", b"d"]
    assert s.finished


@pytest.mark.parametrize("hint, expected", [
    (None, [b"a\n", b"bb\n", b"ccc\n", b"d"]),
    (-1, [b"a\n", b"bb\n", b"ccc\n", b"d"]),
    (0, [b"a\n", b"bb\n", b"ccc\n", b"d"]),
    (1, [b"a\n"]),
    (2, [b"a\n"]),
    (3, [b"a\n", b"bb\n"]),
    (5, [b"a\n", b"bb\n"]),
    (6, [b"a\n", b"bb\n", b"ccc\n"]),
    (9, [b"a\n", b"bb\n", b"ccc\n"]),
    (10, [b"a\n", b"bb\n", b"ccc\n", b"d"]),
    (1000, [b"a\n", b"bb\n", b"ccc\n", b"d"]),
])
def test_readlines_hint(hint, expected):
    s, _ = stream(b"a\nbb\nccc\nd")
    assert s.readlines(hint) == expected
    assert s.read() == b"a\nbb\nccc\nd"[sum(map(len, expected)):]


def test_readlines_matches_bytesio_semantics():
    import io

    body = b"a\nbb\nccc\ndddd\n\neeeee"
    for hint in (-1, 0, 1, 2, 3, 4, 5, 6, 9, 10, 15, 100):
        s, _ = stream(body[:4], body[4:])
        assert s.readlines(hint) == io.BytesIO(body).readlines(hint), hint


def test_iteration_yields_lines():
    s, _ = stream(b"one\ntw", b"o\nthree")
    assert list(s) == [b"one\n", b"two\n", b"three"]
    assert list(s) == []


def test_iteration_after_partial_read():
    s, _ = stream(b"abc\ndef\n")
    assert s.read(2) == b"ab"
    assert list(iter(s)) == [b"c\n", b"def\n"]


def test_mixed_operations():
    s, pull = stream(b"line1\nline2\n", b"rest of", b" body")
    assert s.readline() == b"line1\n"
    assert s.read(3) == b"lin"
    assert s.readline(10) == b"e2\n"
    assert next(iter(s)) == b"rest of body"
    assert s.read() == b""
    assert s.finished
    assert pull.ended


# -- property: any chunking, any mix of reads ----------------------------------------------------------


@st.composite
def chunked_body(draw):
    body = draw(st.binary(max_size=400) | st.text(alphabet="ab\n", max_size=400).map(str.encode))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=15))))
    pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
    return body, [p for p in pieces if p]  # an empty piece means the end


_operation = st.one_of(
    st.tuples(st.just("read"), st.none() | st.integers(-2, 60)),
    st.tuples(st.just("readline"), st.none() | st.integers(-2, 60)),
    st.tuples(st.just("readlines"), st.none() | st.integers(-1, 60)),
    st.tuples(st.just("next"), st.none()),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(case=chunked_body(), operations=st.lists(_operation, max_size=30))
def test_any_chunking_and_any_reads_give_back_the_body(case, operations):
    import io

    body, pieces = case
    s, pull = stream(*pieces)
    reference = io.BytesIO(body)
    out = bytearray()
    for name, arg in operations:
        if name == "next":
            got = next(iter(s), b"")
            want = next(iter(reference), b"")
        else:
            got = getattr(s, name)(arg)
            want = getattr(reference, name)(arg)
        assert got == want, (name, arg)
        out += b"".join(got) if name == "readlines" else got
    out += s.read()
    assert bytes(out) == body
    assert s.finished
    assert pull.ended
    assert pull.calls == len(pieces) + 1


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(case=chunked_body(), size=st.integers(1, 50))
def test_fixed_size_reads_reassemble(case, size):
    body, pieces = case
    s, pull = stream(*pieces)
    out = b""
    while True:
        got = s.read(size)
        assert len(got) <= size
        if not got:
            break
        out += got
    assert out == body
    assert pull.calls == len(pieces) + 1
