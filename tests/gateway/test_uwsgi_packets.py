"""The uwsgi packet codec (wsgistack/gateway/uwsgi.py), bytes only: what is accepted, what is refused and why."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgistack.gateway.uwsgi import (
    PacketReader,
    UwsgiRequest,
    encode_packet,
    health_request,
    read_health_answer,
)
from wsgistack.http.parser import Limits, ParseError

DEFAULT_LIMITS = Limits()
GET = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/a?b=1", "PATH_INFO": "/a", "QUERY_STRING": "b=1"}


def read(data: bytes, limits: Limits = DEFAULT_LIMITS, step: int = 0) -> UwsgiRequest | ParseError | None:
    """Feed `data` whole, or `step` bytes at a time; the reader's outcome."""
    reader = PacketReader(limits)
    if not step:
        return reader.feed(data)
    outcome = None
    for start in range(0, len(data), step):
        outcome = reader.feed(data[start:start + step]) or outcome
    return outcome


def refused(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParseError:
    outcome = read(data, limits)
    assert isinstance(outcome, ParseError), outcome
    return outcome


def raw_packet(block: bytes, modifier1: int = 0, modifier2: int = 0) -> bytes:
    return struct.pack("<BHB", modifier1, len(block), modifier2) + block


def pair(key: bytes, value: bytes) -> bytes:
    return struct.pack("<H", len(key)) + key + struct.pack("<H", len(value)) + value


# -- accepted ----------------------------------------------------------------------------------------------


def test_a_get_gives_its_vars_method_and_target():
    request = read(encode_packet(GET))
    assert isinstance(request, UwsgiRequest)
    assert request.vars == GET
    assert (request.method, request.target, request.content_length, request.leftover) == ("GET", "/a?b=1", 0, b"")
    assert not request.strip_script_name


def test_body_bytes_that_came_with_the_vars_are_the_leftover():
    request = read(encode_packet({**GET, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5"}) + b"hello")
    assert isinstance(request, UwsgiRequest)
    assert (request.content_length, request.leftover) == (5, b"hello")


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64])
def test_the_packet_may_arrive_in_any_pieces(step):
    data = encode_packet({**GET, "HTTP_X_LONG": "v" * 300}) + b"body"
    request = read(data, step=step)
    assert isinstance(request, UwsgiRequest)
    assert request.vars["HTTP_X_LONG"] == "v" * 300


def test_modifier1_30_asks_for_script_name_to_be_stripped():
    request = read(encode_packet({**GET, "SCRIPT_NAME": "/app"}, modifier1=30))
    assert isinstance(request, UwsgiRequest) and request.strip_script_name


def test_modifier2_is_not_looked_at():
    assert isinstance(read(encode_packet(GET, modifier2=7)), UwsgiRequest)


def test_without_request_uri_the_target_is_rebuilt():
    request = read(encode_packet({"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/s", "PATH_INFO": "/p",
                                  "QUERY_STRING": "q"}))
    assert isinstance(request, UwsgiRequest) and request.target == "/s/p?q"


def test_values_are_latin1_native_strings_as_pep_3333_wants():
    block = pair(b"REQUEST_METHOD", b"GET") + pair(b"PATH_INFO", "/café".encode())
    request = read(raw_packet(block))
    assert isinstance(request, UwsgiRequest)
    assert request.vars["PATH_INFO"] == "/café".encode().decode("latin-1")
    assert request.vars["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"


def test_an_empty_value_is_a_value():
    request = read(encode_packet({**GET, "CONTENT_TYPE": "", "CONTENT_LENGTH": ""}))
    assert isinstance(request, UwsgiRequest)
    assert request.vars["CONTENT_TYPE"] == "" and request.content_length == 0


def test_repeated_header_vars_are_joined_as_the_http_environ_joins_them():
    packet = encode_packet([*GET.items(), ("HTTP_ACCEPT", "a"), ("HTTP_ACCEPT", "b"),
                            ("HTTP_COOKIE", "x=1"), ("HTTP_COOKIE", "y=2")])
    request = read(packet)
    assert isinstance(request, UwsgiRequest)
    assert request.vars["HTTP_ACCEPT"] == "a,b" and request.vars["HTTP_COOKIE"] == "x=1; y=2"


def test_the_clients_content_length_and_type_fields_are_not_passed_as_http_vars():
    request = read(encode_packet({**GET, "HTTP_CONTENT_LENGTH": "9", "HTTP_CONTENT_TYPE": "a/b"}))
    assert isinstance(request, UwsgiRequest)
    assert "HTTP_CONTENT_LENGTH" not in request.vars and "HTTP_CONTENT_TYPE" not in request.vars


def test_nothing_is_returned_until_the_vars_are_whole_and_only_once():
    data = encode_packet(GET)
    reader = PacketReader(Limits())
    assert not reader.started
    assert reader.feed(data[:-1]) is None and reader.started
    assert isinstance(reader.feed(data[-1:]), UwsgiRequest)
    assert reader.feed(b"more") is None


# -- refused -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modifier1", [1, 5, 17, 29, 31, 255])
def test_modifiers_other_than_0_and_30_are_refused(modifier1):
    error = refused(encode_packet(GET, modifier1=modifier1))
    assert error.status == 400 and f"modifier1 {modifier1}" in error.reason


def test_a_modifier_is_refused_from_the_header_alone():
    assert isinstance(read(struct.pack("<BHB", 9, 1000, 0)), ParseError)


def test_an_empty_var_block_is_refused():
    assert refused(raw_packet(b"")).status == 400


def test_a_key_running_past_the_block_is_refused():
    block = pair(b"REQUEST_METHOD", b"GET") + struct.pack("<H", 50) + b"SHORT"
    assert "key runs past" in refused(raw_packet(block)).reason


def test_a_value_running_past_the_block_is_refused():
    block = pair(b"REQUEST_METHOD", b"GET") + struct.pack("<H", 4) + b"PATH" + struct.pack("<H", 99) + b"/x"
    assert "value runs past" in refused(raw_packet(block)).reason


def test_a_lone_length_byte_is_refused():
    assert refused(raw_packet(pair(b"REQUEST_METHOD", b"GET") + b"\x01")).status == 400


@pytest.mark.parametrize("key", [b"", b"WITH SPACE", b"CTRL\x01", b"NON\xffASCII", b"NEW\nLINE"])
def test_keys_must_be_printable_ascii_tokens(key):
    assert refused(raw_packet(pair(b"REQUEST_METHOD", b"GET") + pair(key, b"v"))).status == 400


def test_a_missing_request_method_is_refused():
    assert "REQUEST_METHOD" in refused(encode_packet({"PATH_INFO": "/"})).reason


@pytest.mark.parametrize("method", ["", "G ET", "GET\r\n", "GÉT"])
def test_a_method_must_be_a_token(method):
    assert refused(encode_packet({"REQUEST_METHOD": method})).status == 400


@pytest.mark.parametrize("length", ["-1", "1e3", "0x10", "abc", "1 2"])
def test_content_length_must_be_a_length(length):
    assert refused(encode_packet({**GET, "CONTENT_LENGTH": length})).status == 400


def test_a_content_length_sent_twice_with_different_values_is_refused():
    assert "twice" in refused(encode_packet([*GET.items(), ("CONTENT_LENGTH", "1"), ("CONTENT_LENGTH", "0")])).reason
    request = read(encode_packet([*GET.items(), ("CONTENT_LENGTH", "1"), ("CONTENT_LENGTH", "1")]))
    assert isinstance(request, UwsgiRequest) and request.content_length == 1


def test_a_repeated_cgi_var_takes_the_last_value_as_a_later_uwsgi_param_means():
    request = read(encode_packet([*GET.items(), ("PATH_INFO", "/b")]))
    assert isinstance(request, UwsgiRequest) and request.vars["PATH_INFO"] == "/b"


# -- limits --------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413():
    error = refused(encode_packet({**GET, "CONTENT_LENGTH": "1001"}), Limits(body_size=1000))
    assert error.status == 413
    assert isinstance(read(encode_packet({**GET, "CONTENT_LENGTH": "1000"}), Limits(body_size=1000)), UwsgiRequest)


def test_a_var_block_over_the_head_limit_is_refused_from_its_header():
    limits = Limits(request_line=100, fields=2, field_size=100)
    error = read(struct.pack("<BHB", 0, limits.head_size + 1, 0), limits)
    assert isinstance(error, ParseError) and error.status == 431


def test_uri_vars_are_held_to_the_request_line_limit():
    limits = Limits(request_line=50)
    assert refused(encode_packet({**GET, "REQUEST_URI": "/" + "a" * 50}), limits).status == 414
    assert isinstance(read(encode_packet({**GET, "REQUEST_URI": "/" + "a" * 49}), limits), UwsgiRequest)


def test_other_vars_are_held_to_the_field_size_limit():
    limits = Limits(field_size=40)
    assert refused(encode_packet({**GET, "HTTP_X": "v" * 40}), limits).status == 431
    assert isinstance(read(encode_packet({**GET, "HTTP_X": "v" * 30}), limits), UwsgiRequest)


def test_the_var_count_is_held_to_the_field_count_and_the_cgi_vars():
    limits = Limits(fields=10)
    many = [(f"HTTP_X_{n}", "v") for n in range(10 + 64)]
    assert isinstance(read(encode_packet(many[:-len(GET)] + list(GET.items())), limits), UwsgiRequest)
    assert refused(encode_packet([*GET.items(), *many]), limits).status == 431


def test_a_connection_that_ends_inside_the_packet_is_a_truncated_packet():
    reader = PacketReader(Limits())
    reader.feed(encode_packet(GET)[:7])
    assert reader.truncated().status == 400 and "7 bytes" in reader.truncated().reason


# -- properties ----------------------------------------------------------------------------------------------

_names = st.from_regex(r"HTTP_[A-Z0-9_]{1,20}", fullmatch=True)
_values = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=200)


@given(st.dictionaries(_names, _values, max_size=30), st.sampled_from([0, 30]), st.integers(1, 97))
def test_any_encoded_request_decodes_to_the_same_vars_in_any_pieces(extra, modifier1, step):
    sent = {**GET, **extra}
    request = read(encode_packet(sent, modifier1=modifier1) + b"tail", step=step)
    assert isinstance(request, UwsgiRequest)
    assert request.vars == sent and request.modifier1 == modifier1
    assert b"tail".startswith(request.leftover)  # what came in the same piece as the vars' end


@given(st.binary(max_size=300))
def test_any_bytes_give_a_request_an_error_or_a_wait_never_an_exception(data):
    outcome = read(data)
    assert outcome is None or isinstance(outcome, (UwsgiRequest, ParseError))
    if isinstance(outcome, ParseError):
        assert outcome.status in (400, 413, 414, 431)


@given(st.binary(min_size=4, max_size=300), st.integers(1, 50))
def test_the_outcome_does_not_depend_on_how_bytes_are_cut(data, step):
    assert read(data) == read(data, step=step)


# -- the self-check ------------------------------------------------------------------------------------------


def test_the_health_request_is_a_get_of_the_path():
    request = read(health_request("/_wsgistack/health"))
    assert isinstance(request, UwsgiRequest)
    assert (request.method, request.target, request.vars["PATH_INFO"]) == ("GET", "/_wsgistack/health",
                                                                         "/_wsgistack/health")


def test_the_health_answer_is_read_as_status_and_body():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n"
    assert read_health_answer(answer) == (200, b"ready\n")
    assert read_health_answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\ndraining\n") == (503, b"draining\n")
    assert read_health_answer(b"") == (0, b"")
    assert read_health_answer(b"garbage\r\n\r\nx")[0] == 0
