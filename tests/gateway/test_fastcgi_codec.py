"""gateway/fastcgi.py, bytes only: records in, events out; the encoders; malformed input as values."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from wsgistack.gateway import fastcgi as f

NGINX_PARAMS = {  # what /etc/nginx/fastcgi_params sends for `GET /app/page?x=1`
    "QUERY_STRING": "x=1", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
    "SCRIPT_NAME": "/app/page", "REQUEST_URI": "/app/page?x=1", "DOCUMENT_URI": "/app/page",
    "DOCUMENT_ROOT": "/usr/share/nginx/html", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
    "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "nginx/1.22.1", "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "51234", "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_NAME": "localhost",
    "REDIRECT_STATUS": "200", "HTTP_HOST": "localhost:8080", "HTTP_USER_AGENT": "curl/8",
}


def events(data: bytes, parser: f.FastCGIParser | None = None) -> list:
    parser = parser or f.FastCGIParser()
    parser.feed(data)
    out = []
    while (event := parser.next_event()) is not None:
        out.append(event)
    return out


def raw(kind: int, request_id: int, content: bytes, padding: int = 0, version: int = 1) -> bytes:
    return struct.pack(">BBHHBx", version, kind, request_id, len(content), padding) + content + b"\0" * padding


def test_a_whole_request_gives_begin_params_stdin_and_its_end():
    data = f.request(1, NGINX_PARAMS, b"hello", keep_conn=True)
    assert events(data) == [f.BeginRequest(1, True), f.Params(1, NGINX_PARAMS), f.StdinData(1, b"hello"),
                            f.StdinEnd(1)]


@given(st.lists(st.integers(1, 50), max_size=30))
def test_any_split_of_the_bytes_gives_the_same_events(cuts):
    data = f.request(7, NGINX_PARAMS, b"x" * 70000)
    parser, got, at = f.FastCGIParser(), [], 0
    for cut in cuts:
        got += events(data[at:at + cut], parser)
        at += cut
    got += events(data[at:], parser)
    body = b"".join(e.data for e in got if isinstance(e, f.StdinData))
    assert [e for e in got if not isinstance(e, f.StdinData)] == [f.BeginRequest(7, False),
                                                                   f.Params(7, NGINX_PARAMS), f.StdinEnd(7)]
    assert body == b"x" * 70000


@given(st.dictionaries(st.text(st.characters(max_codepoint=255), min_size=1, max_size=300),
                       st.text(st.characters(max_codepoint=255), max_size=300), max_size=20))
def test_name_value_pairs_round_trip_with_short_and_long_lengths(pairs):
    assert f.decode_pairs(f.encode_pairs(pairs)) == list(pairs.items())


def test_four_byte_lengths_have_the_top_bit_set():
    assert f.encode_pairs({"N": "v" * 200})[:5] == b"\x01\x80\x00\x00\xc8"
    assert f.decode_pairs(b"\x01\x80\x00\x00\x02Nvv") == [("N", "vv")]


def test_truncated_pairs_are_malformed():
    for data in (b"\x05", b"\x01\x80\x00", b"\x04\x04abc", b"\x01\x02Nv"):
        assert f.decode_pairs(data) is None


def test_padding_is_skipped_on_input_and_written_on_output():
    data = (raw(f.BEGIN_REQUEST, 1, struct.pack(">HB5x", 1, 0), padding=3)
            + raw(f.PARAMS, 1, f.encode_pairs({"A": "b"}), padding=5) + raw(f.PARAMS, 1, b"", padding=7)
            + raw(f.STDIN, 1, b"abc", padding=255) + raw(f.STDIN, 1, b""))
    assert events(data) == [f.BeginRequest(1, False), f.Params(1, {"A": "b"}), f.StdinData(1, b"abc"),
                            f.StdinEnd(1)]
    assert len(f.record(f.STDOUT, 1, b"abc")) == 16 and f.record(f.STDOUT, 1, b"abc")[6] == 5


def test_params_may_split_a_pair_across_records():
    encoded = f.encode_pairs(NGINX_PARAMS)
    data = (f.begin_request(3) + f.record(f.PARAMS, 3, encoded[:11]) + f.record(f.PARAMS, 3, encoded[11:])
            + f.record(f.PARAMS, 3))
    assert events(data)[1] == f.Params(3, NGINX_PARAMS)


def test_large_output_is_split_into_records_of_at_most_65535_bytes():
    data = b"y" * 200_000
    records = f.read_records(f.stream(f.STDOUT, 1, data))
    assert all(len(r.content) <= 65535 for r in records) and len(records) == 4
    assert b"".join(r.content for r in records) == data
    assert f.stream(f.STDOUT, 1, b"") == b""


def test_end_response_is_an_empty_stdout_then_end_request_complete():
    records = f.read_records(f.end_response(5, app_status=0))
    assert [(r.kind, r.request_id, r.content) for r in records] == [
        (f.STDOUT, 5, b""), (f.END_REQUEST, 5, b"\0\0\0\0\0\0\0\0")]


def test_authorizer_and_filter_roles_are_refused_and_their_records_dropped():
    for role in (f.AUTHORIZER, f.FILTER):
        data = (f.record(f.BEGIN_REQUEST, 2, struct.pack(">HB5x", role, 1)) + f.record(f.PARAMS, 2, b"")
                + f.record(f.STDIN, 2, b"body") + f.record(f.STDIN, 2))
        parser = f.FastCGIParser()
        assert events(data, parser) == [f.Refused(2, f.UNKNOWN_ROLE, True)]
        assert not parser.draining and not parser.started


def test_a_second_request_while_one_is_open_is_refused_cant_mpx_conn():
    parser = f.FastCGIParser()
    first = events(f.begin_request(1) + f.record(f.PARAMS, 1, b""), parser)
    assert first == [f.BeginRequest(1, False), f.Params(1, {})]
    assert events(f.request(2, {"A": "b"}), parser) == [f.Refused(2, f.CANT_MPX_CONN, False)]
    assert events(f.record(f.STDIN, 1, b"one") + f.record(f.STDIN, 1), parser) == [
        f.StdinData(1, b"one"), f.StdinEnd(1)]
    parser.request_done()
    assert events(f.request(2, {"A": "b"}), parser)[:2] == [f.BeginRequest(2, False), f.Params(2, {"A": "b"})]


def test_get_values_and_unknown_management_types():
    query = f.record(f.GET_VALUES, 0, f.encode_pairs({"FCGI_MAX_CONNS": "", "FCGI_MPXS_CONNS": ""}))
    assert events(query + f.record(42, 0, b"??")) == [f.GetValues(("FCGI_MAX_CONNS", "FCGI_MPXS_CONNS")),
                                                      f.UnknownType(42)]
    answer = f.read_records(f.get_values_result({"FCGI_MPXS_CONNS": "0"}))[0]
    assert (answer.kind, answer.request_id, f.decode_pairs(answer.content)) == (
        f.GET_VALUES_RESULT, 0, [("FCGI_MPXS_CONNS", "0")])
    assert f.unknown_type(42) == f.record(f.UNKNOWN_TYPE, 0, b"\x2a" + bytes(7))


def test_malformed_input_is_a_protocol_error_and_nothing_after_it_counts():
    begin = f.begin_request(1)
    cases = {
        "version": raw(f.BEGIN_REQUEST, 1, struct.pack(">HB5x", 1, 0), version=2),
        "short begin": raw(f.BEGIN_REQUEST, 1, b"\0\1"),
        "stdin before params end": begin + f.record(f.PARAMS, 1, b"\x01\x01ab") + f.record(f.STDIN, 1, b"x"),
        "unknown id": begin + f.record(f.PARAMS, 9, b""),
        "bad pairs": begin + f.record(f.PARAMS, 1, b"\x09\x01ab") + f.record(f.PARAMS, 1, b""),
        "begin twice": begin + begin,
        "stdout from the peer": begin + f.record(f.STDOUT, 1, b"x"),
        "params after their end": begin + f.record(f.PARAMS, 1) + f.record(f.PARAMS, 1, b"\x01\x01ab"),
        "stdin on id 0": f.record(f.STDIN, 0, b"x"),
    }
    for name, data in cases.items():
        parser = f.FastCGIParser()
        got = events(data + f.request(3, {"A": "b"}), parser)
        assert isinstance(got[-1], f.ProtocolError), name
        assert parser.failed and not any(getattr(e, "request_id", 0) == 3 for e in got), name
        assert events(f.request(4, {}), parser) == []


def test_truncated_input_waits_for_more_and_says_a_request_has_started():
    parser = f.FastCGIParser()
    assert events(f.request(1, NGINX_PARAMS)[:13], parser) == [] and parser.started
    assert not f.FastCGIParser().started


def test_params_past_the_limits_are_refused_with_a_status_and_the_rest_dropped():
    limits = f.ParamLimits(request_line=100, fields=3, field_size=50)
    cases = [({"REQUEST_URI": "/" + "a" * 200}, 414), ({f"HTTP_X_{n}": "v" for n in range(4)}, 431),
             ({"HTTP_X": "v" * 60}, 431), ({"HTTP_X": "v" * 100_000}, 431)]
    for params, status in cases:
        parser = f.FastCGIParser(limits)
        got = events(f.request(1, params, b"body" * 10), parser)
        assert [type(e) for e in got] == [f.BeginRequest, f.TooLarge] and got[1].status == status, params
        assert not parser.draining and not parser.started  # its stdin came whole and was dropped
        assert events(f.request(1, {"A": "b"}), parser)[1] == f.Params(1, {"A": "b"})


def test_a_request_answered_early_has_its_stdin_dropped_up_to_its_end():
    parser = f.FastCGIParser()
    events(f.begin_request(1, keep_conn=True) + f.record(f.PARAMS, 1), parser)
    parser.request_done()
    assert parser.draining
    assert events(f.record(f.STDIN, 1, b"late") + f.record(f.STDIN, 1), parser) == []
    assert not parser.draining


def test_abort_ends_the_stdin():
    parser = f.FastCGIParser()
    got = events(f.begin_request(1) + f.record(f.PARAMS, 1) + f.record(f.ABORT_REQUEST, 1), parser)
    assert got[-1] == f.AbortRequest(1)
    parser.request_done()
    assert not parser.draining


def test_health_request_and_answer_round_trip():
    parser = f.FastCGIParser()
    got = events(f.health_request("/_health"), parser)
    assert got[1].params["REQUEST_URI"] == "/_health" and got[-1] == f.StdinEnd(1)
    answer = (f.stream(f.STDOUT, 1, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nready\n")
              + f.end_response(1))
    assert f.read_health_answer(answer) == (200, b"ready\n")
    assert f.read_health_answer(answer[:-16])[0] == 0  # no END_REQUEST: not an answer
    assert f.read_health_answer(b"")[0] == 0
    assert f.split_cgi_response(b"Content-Type: x\r\n\r\nbody") == (200, [("Content-Type", "x")], b"body")


def test_an_abort_for_a_request_no_longer_open_is_ignored():
    parser = f.FastCGIParser()
    assert events(f.record(f.ABORT_REQUEST, 1) + f.request(2, {"A": "b"}), parser)[:2] == [
        f.BeginRequest(2, False), f.Params(2, {"A": "b"})]
    assert not parser.failed


@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([
    f.begin_request(1, keep_conn=True), f.record(f.PARAMS, 1, f.encode_pairs({"A": "b"})), f.record(f.PARAMS, 1),
    f.record(f.STDIN, 1, b"x"), f.record(f.STDIN, 1), f.record(f.ABORT_REQUEST, 1), f.begin_request(2),
    f.record(f.GET_VALUES, 0, b"\x01\x00N"), f.record(77, 0)])), max_size=12))
def test_no_input_raises_and_every_event_is_one_the_connection_knows(pieces):
    known = (f.BeginRequest, f.Params, f.StdinData, f.StdinEnd, f.AbortRequest, f.GetValues, f.UnknownType,
             f.Refused, f.TooLarge, f.ProtocolError)
    parser = f.FastCGIParser(f.ParamLimits(100, 5, 50))
    for piece in pieces:
        for event in events(piece, parser):
            assert isinstance(event, known)
        if parser.request_id and pieces.index(piece) % 3 == 2:
            parser.request_done()
