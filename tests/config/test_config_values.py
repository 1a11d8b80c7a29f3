"""The parsers of wsgistack.config.values: what each accepts (text from the command line or the environment,
and native TOML types) and what each rejects with a ValueError."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgistack.config import values

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


# -- whole ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "raw", "expected"),
    [
        (0, "0", 0),
        (0, 0, 0),
        (1, "1", 1),
        (1, 1, 1),
        (1, "4", 4),
        (1, 4, 4),
        (1, " 12 ", 12),
        (1, "+3", 3),
        (0, "4094", 4094),
        (0, 10**12, 10**12),
    ],
)
def test_whole_accepts(minimum, raw, expected):
    result = values.whole(minimum)(raw)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "raw",
    ["abc", "", "   ", "1.5", "4.0", "1e3", "0x10", "four", 1.5, 4.0, True, False, None, [1], {"a": 1}],
)
def test_whole_rejects_non_integers(raw):
    with pytest.raises(ValueError, match="not a whole number"):
        values.whole(0)(raw)


@pytest.mark.parametrize(("minimum", "raw"), [(1, "0"), (1, 0), (0, "-1"), (0, -1), (5, 4), (1, "-7")])
def test_whole_rejects_below_minimum(minimum, raw):
    with pytest.raises(ValueError, match=f"below the minimum of {minimum}"):
        values.whole(minimum)(raw)


@given(st.integers(min_value=1, max_value=10**9))
def test_whole_text_and_native_agree(number):
    parse = values.whole(1)
    assert parse(str(number)) == parse(number) == number


# -- seconds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0.0), (0, 0.0), ("30", 30.0), (30, 30.0), ("2.5", 2.5), (2.5, 2.5), (" 7 ", 7.0), ("1e1", 10.0),
     (0.001, 0.001)],
)
def test_seconds_accepts(raw, expected):
    result = values.seconds(raw)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize("raw", ["abc", "", "5s", "1m", None, [5], True, False, "nan", float("nan")])
def test_seconds_rejects_non_numbers(raw):
    with pytest.raises(ValueError):
        values.seconds(raw)


@pytest.mark.parametrize("raw", ["-1", -1, -0.5, "-0.001"])
def test_seconds_rejects_negative(raw):
    with pytest.raises(ValueError, match="zero or more seconds"):
        values.seconds(raw)


@pytest.mark.parametrize("raw", ["inf", "Infinity", "1e400", float("inf")])
def test_seconds_rejects_infinity(raw):
    with pytest.raises(ValueError):
        values.seconds(raw)


# -- size ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        (0, 0),
        ("1048576", 1048576),
        (1048576, 1048576),
        ("512k", 512 * KIB),
        ("512K", 512 * KIB),
        ("512kb", 512 * KIB),
        ("512 KB", 512 * KIB),
        ("10m", 10 * MIB),
        ("10M", 10 * MIB),
        ("10MB", 10 * MIB),
        ("10mb", 10 * MIB),
        ("1g", GIB),
        ("1G", GIB),
        ("1GB", GIB),
        ("100b", 100),
        ("  10m  ", 10 * MIB),
    ],
)
def test_size_accepts(raw, expected):
    result = values.size(raw)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "raw",
    ["lots", "", "m", "10t", "10 tb", "1.5m", "1.5", 1.5, "-1", "-1m", -1, "10mm", "10bb", "0x10", True, False,
     None, [10]],
)
def test_size_rejects(raw):
    with pytest.raises(ValueError):
        values.size(raw)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "k", "m", "g"]), st.booleans())
def test_size_units_multiply(number, unit, with_b):
    factor = {"": 1, "k": KIB, "m": MIB, "g": GIB}[unit]
    text = f"{number}{unit}{'b' if with_b else ''}"
    assert values.size(text) == values.size(text.upper()) == number * factor


# -- boolean -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [True, "true", "TRUE", "True", "yes", "YES", "on", "On", "1", 1, " true "])
def test_boolean_true(raw):
    assert values.boolean(raw) is True


@pytest.mark.parametrize("raw", [False, "false", "FALSE", "no", "No", "off", "OFF", "0", 0, " off "])
def test_boolean_false(raw):
    assert values.boolean(raw) is False


@pytest.mark.parametrize("raw", ["", "maybe", "y", "n", "t", "f", "2", 2, -1, "1.0", 1.0, None, [], "enabled"])
def test_boolean_rejects(raw):
    with pytest.raises(ValueError, match="not true or false"):
        values.boolean(raw)


# -- text / optional_text ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["x", "app:app", "module:create_app()", " padded ", "-", "ünïcode"])
def test_text_accepts_non_empty_strings_unchanged(raw):
    assert values.text(raw) == raw


@pytest.mark.parametrize("raw", ["", "   ", "\t\n", None, 3, 0, True, ["app"], b"app"])
def test_text_rejects(raw):
    with pytest.raises(ValueError, match="not a non-empty string"):
        values.text(raw)


@pytest.mark.parametrize(("raw", "expected"), [("x", "x"), ("/var/run/w.pid", "/var/run/w.pid"), ("", None),
                                               (None, None), ("-", "-")])
def test_optional_text_accepts(raw, expected):
    assert values.optional_text(raw) == expected


@pytest.mark.parametrize("raw", [3, 0, True, ["x"], 1.5, b"x"])
def test_optional_text_rejects_non_strings(raw):
    with pytest.raises(ValueError, match="not a string"):
        values.optional_text(raw)


# -- text_list -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a", ("a",)),
        ("a,b", ("a", "b")),
        (" a , b ,c ", ("a", "b", "c")),
        ("a,,b,", ("a", "b")),
        ("10.0.0.1, 10.0.0.2", ("10.0.0.1", "10.0.0.2")),
        ("*", ("*",)),
        (["a"], ("a",)),
        (["a", "b"], ("a", "b")),
        ([" a ", "", "b"], ("a", "b")),
        (("a", "b"), ("a", "b")),
        (["127.0.0.1:8000", "unix:/tmp/s.sock"], ("127.0.0.1:8000", "unix:/tmp/s.sock")),
    ],
)
def test_text_list_accepts(raw, expected):
    result = values.text_list(raw)
    assert result == expected
    assert isinstance(result, tuple)


def test_text_list_does_not_split_list_items_on_commas():
    # splitting repeated flags / TOML arrays on commas is the loader's job for repeatable options only
    assert values.text_list(["a,b"]) == ("a,b",)


@pytest.mark.parametrize("raw", ["", "  ", ",", " , ,", [], [""], ["  ", ""], ()])
def test_text_list_rejects_empty(raw):
    with pytest.raises(ValueError, match="the list is empty"):
        values.text_list(raw)


@pytest.mark.parametrize("raw", [None, 3, 1.5, True, {"a": 1}, {"a"}])
def test_text_list_rejects_non_lists(raw):
    with pytest.raises(ValueError, match="not a list of strings"):
        values.text_list(raw)


# -- umask ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("022", 0o022),
        ("22", 0o022),
        ("0o22", 0o022),
        ("0O22", 0o022),
        ("0o022", 0o022),
        (" 027 ", 0o027),
        ("0", 0),
        ("000", 0),
        ("777", 0o777),
        ("0o777", 0o777),
        (0o022, 0o022),  # TOML: umask = 0o022
        (18, 18),
        (0, 0),
        (0o777, 0o777),
        (None, None),
        ("", None),
    ],
)
def test_umask_accepts(raw, expected):
    assert values.umask(raw) == expected


@pytest.mark.parametrize("raw", ["8", "088", "abc", "0x12", "0o", "0o8", "1.5", 1.5, True, False, [18]])
def test_umask_rejects_non_octal(raw):
    with pytest.raises(ValueError, match="not an octal number"):
        values.umask(raw)


@pytest.mark.parametrize("raw", ["1000", "0o1000", 0o1000, 512, -1, "-1", "-0o22"])
def test_umask_rejects_out_of_range(raw):
    with pytest.raises(ValueError, match="between 000 and 777"):
        values.umask(raw)


@given(st.integers(min_value=0, max_value=0o777))
def test_umask_octal_text_roundtrip(mask):
    assert values.umask(f"{mask:03o}") == values.umask(f"0o{mask:o}") == values.umask(mask) == mask


# -- choice --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("sync", "sync"), ("thread", "thread"), ("THREAD", "thread"),
                                               (" Sync ", "sync")])
def test_choice_accepts_case_insensitively(raw, expected):
    assert values.choice("sync", "thread")(raw) == expected


@pytest.mark.parametrize("raw", ["nosuch", "", "gevent", "syn", None, 1, True, ["sync"]])
def test_choice_rejects_and_lists_the_allowed_words(raw):
    with pytest.raises(ValueError, match="is not one of: sync, thread"):
        values.choice("sync", "thread")(raw)


# -- every error is one short line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "raw"),
    [
        (values.whole(1), "a\nb"),
        (values.seconds, "a\nb"),
        (values.size, "a\nb"),
        (values.boolean, "a\nb"),
        (values.text, "\n"),
        (values.optional_text, 3),
        (values.text_list, "\n,\n"),
        (values.umask, "a\nb"),
        (values.choice("x"), "a\nb"),
    ],
)
def test_errors_are_one_line(parse, raw):
    with pytest.raises(ValueError) as info:
        parse(raw)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 200


def test_finite_float_seconds_survive():
    assert math.isclose(values.seconds("0.25"), 0.25)
