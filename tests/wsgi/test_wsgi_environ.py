"""build_environ from heads parsed out of real request bytes, ConnectionInfo and ProxyTrust."""

from __future__ import annotations

import io
import sys

import pytest

from wsgistack.http.parser import RequestHead, RequestParser
from wsgistack.http.trust import ProxyTrust
from wsgistack.wsgi.environ import ConnectionInfo, build_environ
from wsgistack.wsgi.file_wrapper import FileWrapper
from wsgistack.wsgi.input import InputStream

TCP = ConnectionInfo(server_name="0.0.0.0", server_port="8000", remote_addr="203.0.113.7", remote_port="54321")
PROXY = ConnectionInfo(server_name="0.0.0.0", server_port="8000", remote_addr="10.0.0.5", remote_port="40000")
UNIX = ConnectionInfo(server_name="/run/app.sock", server_port="", remote_addr="", remote_port="", unix=True)


def head_of(data: bytes) -> RequestHead:
    parser = RequestParser()
    parser.feed(data)
    head = parser.next_event()
    assert isinstance(head, RequestHead), head
    return head


def request(target: str = "/", headers: str = "Host: example.com", method: str = "GET", version: str = "1.1",
            body: bytes = b"") -> RequestHead:
    lines = [line for line in headers.split("\n") if line]
    data = f"{method} {target} HTTP/{version}\r\n".encode() + b"".join(
        line.encode("latin-1") + b"\r\n" for line in lines) + b"\r\n" + body
    return head_of(data)


def environ_for(target="/", headers="Host: example.com", info=TCP, trust=None, **kwargs):
    return build_environ(request(target, headers, **kwargs), info, InputStream(lambda: b""), trust=trust)


# -- PEP 3333 keys -------------------------------------------------------------------------------------

REQUIRED_STR = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL"]


def test_all_pep3333_keys_with_right_types():
    errors = io.StringIO()
    wsgi_input = InputStream(lambda: b"")
    environ = build_environ(request("/p?q=1", "Host: example.com\nContent-Type: text/plain\nContent-Length: 0",
                                    method="POST"),
                            TCP, wsgi_input, errors=errors, multithread=True)
    for key in REQUIRED_STR:
        assert type(environ[key]) is str, key
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input"] is wsgi_input
    assert environ["wsgi.errors"] is errors
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert environ["wsgi.file_wrapper"] is FileWrapper
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/p"
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "0"
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["REMOTE_PORT"] == "54321"
    assert environ["SERVER_SOFTWARE"] == "wsgistack"
    for key, val in environ.items():
        if key.isupper():
            assert type(val) is str, key  # PEP 3333: CGI keys are native strings


def test_defaults_errors_and_multithread():
    environ = environ_for()
    assert environ["wsgi.errors"] is sys.stderr
    assert environ["wsgi.multithread"] is False


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_server_protocol(version):
    assert environ_for(version=version)["SERVER_PROTOCOL"] == f"HTTP/{version}"


def test_no_http_prefix_for_content_headers():
    environ = environ_for(headers="Host: x\nContent-Type: application/json\nContent-Length: 2", method="POST",
                          body=b"{}")
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "2"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ


def test_no_content_keys_when_absent():
    environ = environ_for()
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ


def test_chunked_request_has_no_content_length():
    environ = environ_for(headers="Host: x\nTransfer-Encoding: chunked", method="POST", body=b"0\r\n\r\n")
    assert "CONTENT_LENGTH" not in environ
    assert environ["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert environ["wsgi.input_terminated"] is True


@pytest.mark.parametrize("name, key", [
    ("Accept", "HTTP_ACCEPT"),
    ("X-Request-Id", "HTTP_X_REQUEST_ID"),
    ("x-lower-case", "HTTP_X_LOWER_CASE"),
    ("User-Agent", "HTTP_USER_AGENT"),
    ("Authorization", "HTTP_AUTHORIZATION"),
    ("X-Forwarded-For", "HTTP_X_FORWARDED_FOR"),
])
def test_header_keys(name, key):
    environ = environ_for(headers=f"Host: x\n{name}: v a l")
    assert environ[key] == "v a l"


def test_duplicate_headers_joined_with_comma():
    environ = environ_for(headers="Host: x\nAccept: a/b\nAccept: c/d\naccept: e/f")
    assert environ["HTTP_ACCEPT"] == "a/b,c/d,e/f"


def test_duplicate_cookies_joined_with_semicolon():
    environ = environ_for(headers="Host: x\nCookie: a=1\nCookie: b=2; c=3")
    assert environ["HTTP_COOKIE"] == "a=1; b=2; c=3"


def test_underscore_headers_never_reach_the_environ():
    environ = environ_for(headers="Host: x\nX_Forwarded_For: 6.6.6.6\nX-Real: 1", info=PROXY,
                          trust=ProxyTrust(("10.0.0.0/8",)))
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert environ["REMOTE_ADDR"] == "10.0.0.5"
    assert environ["HTTP_X_REAL"] == "1"


def test_header_values_are_latin1_strings():
    head = head_of(b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n")
    environ = build_environ(head, TCP, InputStream(lambda: b""))
    assert environ["HTTP_X_NAME"] == "caf\xc3\xa9"
    assert environ["HTTP_X_NAME"].encode("latin-1").decode("utf-8") == "café"


# -- path, query, raw uri ------------------------------------------------------------------------------


@pytest.mark.parametrize("target, path, query", [
    ("/", "/", ""),
    ("/a/b", "/a/b", ""),
    ("/a?x=1&y=2", "/a", "x=1&y=2"),
    ("/a?", "/a", ""),
    ("/a?b?c", "/a", "b?c"),
    ("/caf%C3%A9", "/caf\xc3\xa9", ""),
    ("/a%20b", "/a b", ""),
    ("/a+b", "/a+b", ""),
    ("/%2F%2f", "///", ""),
    ("/%25", "/%", ""),
    ("/%zz", "/%zz", ""),
    ("/%", "/%", ""),
    ("/%ff%00", "/\xff\x00", ""),
    ("/s?q=%20%C3%A9&x=a+b", "/s", "q=%20%C3%A9&x=a+b"),
    ("/p;v=1?x", "/p;v=1", "x"),
    ("/a#frag", "/a", ""),
    ("http://example.com/abs?q=1", "/abs", "q=1"),
    ("https://example.com:8443/x/y", "/x/y", ""),
    ("http://example.com", "/", ""),
    ("*", "*", ""),
])
def test_path_and_query(target, path, query):
    method = "OPTIONS" if target == "*" else "GET"
    environ = environ_for(target, method=method)
    assert environ["PATH_INFO"] == path
    assert environ["QUERY_STRING"] == query
    assert environ["RAW_URI"] == target
    assert environ["REQUEST_URI"] == target


def test_path_info_percent_decoded_as_latin1():
    environ = environ_for("/caf%C3%A9?q=caf%C3%A9")
    assert environ["PATH_INFO"] == "cafÃ©".join(["/", ""])
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"
    assert environ["QUERY_STRING"] == "q=caf%C3%A9"
    assert environ["RAW_URI"] == "/caf%C3%A9?q=caf%C3%A9"


@pytest.mark.parametrize("target, path, query", [
    ("http://example.com?q=1", "/", "q=1"),
    ("http://example.com?next=/admin", "/", "next=/admin"),
])
def test_absolute_form_without_path_keeps_query(target, path, query):
    environ = environ_for(target)
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == (path, query)


def test_absolute_form_with_upper_case_scheme():
    assert environ_for("HTTP://example.com/x")["PATH_INFO"] == "/x"


# -- SERVER_NAME / SERVER_PORT -------------------------------------------------------------------------


@pytest.mark.parametrize("host, name, port", [
    ("example.com", "example.com", "80"),
    ("example.com:8080", "example.com", "8080"),
    ("example.com:", "example.com", "80"),
    ("127.0.0.1:5000", "127.0.0.1", "5000"),
    ("[::1]:8080", "[::1]", "8080"),
    ("[::1]", "[::1]", "80"),
    ("[2001:db8::1]:443", "[2001:db8::1]", "443"),
    ("EXAMPLE.com", "EXAMPLE.com", "80"),
])
def test_server_name_and_port_from_host(host, name, port):
    environ = environ_for(headers=f"Host: {host}")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)
    assert environ["HTTP_HOST"] == host


def test_server_name_and_port_from_connection_without_host():
    environ = environ_for(headers="", version="1.0")
    assert environ["SERVER_NAME"] == "0.0.0.0"
    assert environ["SERVER_PORT"] == "8000"


def test_https_listener_default_port_443():
    info = ConnectionInfo("0.0.0.0", "8443", "203.0.113.7", "1", url_scheme="https")
    environ = environ_for(headers="Host: example.com", info=info)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == "443"


def test_unix_socket_connection():
    environ = environ_for(headers="Host: app.local", info=UNIX)
    assert environ["SERVER_NAME"] == "app.local"
    assert environ["SERVER_PORT"] == "80"
    assert environ["REMOTE_ADDR"] == ""


# -- proxies -------------------------------------------------------------------------------------------


def test_untrusted_peer_proxy_headers_ignored():
    environ = environ_for(headers="Host: example.com\nX-Forwarded-For: 1.2.3.4\nX-Forwarded-Proto: https\n"
                                  "Forwarded: for=5.6.7.8;proto=https",
                          info=TCP, trust=ProxyTrust(("10.0.0.0/8",)))
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["SERVER_PORT"] == "80"
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"  # still visible, just not applied


def test_no_trust_object_means_nothing_applied():
    environ = environ_for(headers="Host: x\nX-Forwarded-For: 1.2.3.4\nX-Forwarded-Proto: https", info=PROXY)
    assert environ["REMOTE_ADDR"] == "10.0.0.5"
    assert environ["wsgi.url_scheme"] == "http"


def test_trusted_peer_x_forwarded_for_rightmost_and_proto():
    environ = environ_for(headers="Host: example.com\nX-Forwarded-For: 6.6.6.6, 198.51.100.9\n"
                                  "X-Forwarded-Proto: https",
                          info=PROXY, trust=ProxyTrust(("10.0.0.5",)))
    assert environ["REMOTE_ADDR"] == "198.51.100.9"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_NAME"] == "example.com"
    assert environ["SERVER_PORT"] == "443"


def test_trusted_proto_keeps_explicit_host_port():
    environ = environ_for(headers="Host: example.com:8443\nX-Forwarded-Proto: https", info=PROXY,
                          trust=ProxyTrust(("10.0.0.5",)))
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == "8443"


def test_repeated_x_forwarded_for_headers_rightmost_wins():
    environ = environ_for(headers="Host: x\nX-Forwarded-For: 6.6.6.6\nX-Forwarded-For: 198.51.100.9",
                          info=PROXY, trust=ProxyTrust(("10.0.0.5",)))
    assert environ["REMOTE_ADDR"] == "198.51.100.9"


@pytest.mark.parametrize("proto, scheme", [
    ("https", "https"), ("HTTPS", "https"), ("http", "http"), ("http, https", "https"),
    ("https, http", "http"), ("ftp", "http"), ("javascript", "http"), ("", "http"),
])
def test_x_forwarded_proto_values(proto, scheme):
    environ = environ_for(headers=f"Host: x\nX-Forwarded-Proto: {proto}", info=PROXY, trust=ProxyTrust(("*",)))
    assert environ["wsgi.url_scheme"] == scheme


@pytest.mark.parametrize("allowed, trusted", [
    (("*",), True),
    (("10.0.0.5",), True),
    (("10.0.0.0/8",), True),
    (("10.0.0.0/24",), True),
    (("10.0.1.0/24",), False),
    (("127.0.0.1", "10.0.0.4/31"), True),
    (("127.0.0.1",), False),
    ((), False),
    (("10.0.0.5/32",), True),
    (("10.0.0.1/8",), True),  # strict=False: host bits allowed
    (("::1",), False),
])
def test_proxy_trust_entries(allowed, trusted):
    trust = ProxyTrust(allowed)
    assert trust.trusts(PROXY.remote_addr) is trusted
    environ = environ_for(headers="Host: x\nX-Forwarded-For: 198.51.100.9", info=PROXY, trust=trust)
    assert environ["REMOTE_ADDR"] == ("198.51.100.9" if trusted else "10.0.0.5")


def test_proxy_trust_ipv6_network():
    trust = ProxyTrust(("2001:db8::/32",))
    assert trust.trusts("2001:db8::17")
    assert not trust.trusts("2001:db9::17")


def test_proxy_trust_unix_peers_always_trusted():
    trust = ProxyTrust(())
    assert trust.trusts(UNIX.remote_addr, unix=UNIX.unix)
    environ = environ_for(headers="Host: x\nX-Forwarded-For: 198.51.100.9\nX-Forwarded-Proto: https", info=UNIX,
                          trust=trust)
    assert environ["REMOTE_ADDR"] == "198.51.100.9"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == "443"


def test_proxy_trust_unparseable_peer_not_trusted():
    assert not ProxyTrust(("10.0.0.0/8",)).trusts("not-an-ip")
    assert ProxyTrust(("*",)).trusts("not-an-ip")


def test_proxy_trust_bad_entry_raises():
    with pytest.raises(ValueError):
        ProxyTrust(("not-a-network",))


@pytest.mark.parametrize("forwarded, addr, scheme", [
    ("for=198.51.100.9;proto=https", "198.51.100.9", "https"),
    ("for=198.51.100.9", "198.51.100.9", "http"),
    ("proto=https", "10.0.0.5", "https"),
    ('for="198.51.100.9:4711";proto=https', "198.51.100.9", "https"),
    ('for="[2001:db8::1]:4711";proto=https', "2001:db8::1", "https"),
    ('for="[2001:db8::1]"', "2001:db8::1", "http"),
    ("For=198.51.100.9;Proto=HTTPS", "198.51.100.9", "https"),
    ("for=6.6.6.6;proto=http, for=198.51.100.9;proto=https", "198.51.100.9", "https"),
    ("for=198.51.100.9;proto=https;by=10.0.0.5;host=example.com", "198.51.100.9", "https"),
    ("for=6.6.6.6,   for=198.51.100.9", "198.51.100.9", "http"),
    ("for=198.51.100.9;proto=gopher", "198.51.100.9", "http"),
])
def test_forwarded_header(forwarded, addr, scheme):
    environ = environ_for(headers=f"Host: example.com\nForwarded: {forwarded}", info=PROXY,
                          trust=ProxyTrust(("10.0.0.0/8",)))
    assert environ["REMOTE_ADDR"] == addr
    assert environ["wsgi.url_scheme"] == scheme
    assert environ["SERVER_PORT"] == ("443" if scheme == "https" else "80")


def test_forwarded_from_untrusted_peer_ignored():
    environ = environ_for(headers="Host: x\nForwarded: for=198.51.100.9;proto=https", info=TCP,
                          trust=ProxyTrust(("10.0.0.0/8",)))
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["wsgi.url_scheme"] == "http"


def test_x_forwarded_for_applied_after_forwarded():
    environ = environ_for(headers="Host: x\nForwarded: for=192.0.2.1\nX-Forwarded-For: 198.51.100.9", info=PROXY,
                          trust=ProxyTrust(("*",)))
    assert environ["REMOTE_ADDR"] == "198.51.100.9"


def test_empty_x_forwarded_for_value_keeps_peer():
    environ = environ_for(headers="Host: x\nX-Forwarded-For: 1.2.3.4,", info=PROXY, trust=ProxyTrust(("*",)))
    assert environ["REMOTE_ADDR"] == "10.0.0.5"


# -- the input stream is passed through ----------------------------------------------------------------


def test_wsgi_input_reads_body_via_pull():
    pieces = [b"hello ", b"world", b""]
    stream = InputStream(lambda: pieces.pop(0))
    environ = build_environ(request(method="POST", headers="Host: x\nContent-Length: 11"), TCP, stream)
    assert environ["wsgi.input"].read() == b"hello world"


# -- only an IP address may become REMOTE_ADDR (issue 10 item 8) ----------------------------------------

NOT_ADDRESSES = ["<script>x</script>", "unknown", "_hidden", "example.com", "1.2.3", "1.2.3.4.5", "01.2.3.4",
                 "256.1.1.1", "1.2.3.4:", "1.2.3.4:x", "1.2.3.4:80:80", "[::1", "[::1]x", "[::1]:x", "[1.2.3.4]",
                 "fe80::1%eth0", "[fe80::1%25eth0]", "::g", "1.2.3.4 5.6.7.8", "' OR 1=1 --", "\"\"",
                 "1.2.3.4\t<b>"]


@pytest.mark.parametrize("value", NOT_ADDRESSES)
def test_x_forwarded_for_that_is_not_an_address_keeps_the_peer(value):
    environ = environ_for(headers=f"Host: x\nX-Forwarded-For: 198.51.100.9, {value}", info=PROXY,
                          trust=ProxyTrust(("*",)))
    assert environ["REMOTE_ADDR"] == "10.0.0.5"
    assert environ["HTTP_X_FORWARDED_FOR"] == f"198.51.100.9, {value}"  # still there for who wants it


@pytest.mark.parametrize("value", NOT_ADDRESSES)
def test_forwarded_for_that_is_not_an_address_keeps_the_peer(value):
    quoted = value.replace('"', "")
    environ = environ_for(headers=f'Host: x\nForwarded: for="{quoted}";proto=https', info=PROXY,
                          trust=ProxyTrust(("*",)))
    assert environ["REMOTE_ADDR"] == "10.0.0.5"
    assert environ["wsgi.url_scheme"] == "https"  # the rest of the element still applies


@pytest.mark.parametrize("value, address", [
    ("198.51.100.9", "198.51.100.9"),
    (" 198.51.100.9 ", "198.51.100.9"),
    ("198.51.100.9:4711", "198.51.100.9"),
    ("2001:db8::1", "2001:db8::1"),
    ("2001:DB8::1", "2001:DB8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:4711", "2001:db8::1"),
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ("::1", "::1"),
])
def test_x_forwarded_for_address_with_optional_port(value, address):
    environ = environ_for(headers=f"Host: x\nX-Forwarded-For: 6.6.6.6,{value}", info=PROXY,
                          trust=ProxyTrust(("*",)))
    assert environ["REMOTE_ADDR"] == address


def test_a_bad_x_forwarded_for_does_not_undo_a_good_forwarded():
    environ = environ_for(headers="Host: x\nForwarded: for=192.0.2.1\nX-Forwarded-For: <b>", info=PROXY,
                          trust=ProxyTrust(("*",)))
    assert environ["REMOTE_ADDR"] == "192.0.2.1"


# -- absolute-form: the authority is the Host ----------------------------------------------------------


@pytest.mark.parametrize("target, host, name, port", [
    ("http://example.com/p", "other.example", "example.com", "80"),
    ("http://example.com:8080/p", "other.example:9", "example.com", "8080"),
    ("http://[::1]:81/p", "x", "[::1]", "81"),
])
def test_absolute_form_authority_is_http_host_and_server_name(target, host, name, port):
    environ = environ_for(target, headers=f"Host: {host}")
    assert environ["HTTP_HOST"] == target.split("/")[2]
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)
    assert environ["PATH_INFO"] == "/p"
    assert environ["RAW_URI"] == target


def test_absolute_form_in_http_1_0_without_host():
    environ = environ_for("http://example.com:81/x?y", headers="", version="1.0")
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com:81",
                                                                                       "example.com", "81")
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/x", "y")


def test_http_1_2_request_is_served_as_http_1_1():
    assert environ_for(version="1.2")["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_trailers_never_reach_the_environ():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
                b"X-Trailer: t\r\n\r\n")
    events = list(parser.events)
    assert not parser.failed
    environ = build_environ(events[0], TCP, InputStream(lambda: b""))
    assert "HTTP_X_TRAILER" not in environ
