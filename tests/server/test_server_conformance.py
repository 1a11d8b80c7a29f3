"""RFC 9112 rules through a real `wsgistack serve`, for each worker class that uses wsgistack's parser.

The byte-level cases are in tests/http; these check that every class answers them the same way on the
wire: Host rules (400 for an invalid or repeated Host, in HTTP/1.0 too), request-target forms, HTTP/1.x
minor versions, chunk extensions with whitespace, forbidden trailers, a target of 8,000 octets, and which
X-Forwarded-For values may become REMOTE_ADDR. One server per class for the whole module, many requests
to it (tests/apps/target_app.py answers what the app saw, as JSON).
"""

from __future__ import annotations

import json

import pytest
from servers import APPS, Server
from rawhttp import Reader, closed_by_peer

CLASSES = ["event", "thread", "gevent", "sync"]


@pytest.fixture(scope="module", params=CLASSES)
def server(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"conformance-{request.param}")
    server = Server(folder, "target_app:app", ["-w", "1", "-k", request.param, "--forwarded-allow-ips", "*"],
                    cwd=APPS)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def ask(server: Server, data: bytes):
    """Send one raw request on a new connection; its response (the app's view parsed when it is 200)."""
    with server.connect(timeout=10) as sock:
        sock.sendall(data)
        response = Reader(sock).one()
        if response.status >= 400:
            assert closed_by_peer(sock)  # an error answer closes the connection
    seen = json.loads(response.body) if response.status == 200 else None
    return response, seen


def get(target: str = "/", host: str | None = "example.com", version: str = "1.1", extra: str = "") -> bytes:
    host_line = f"Host: {host}\r\n" if host is not None else ""
    return f"GET {target} HTTP/{version}\r\n{host_line}{extra}Connection: close\r\n\r\n".encode("latin-1")


@pytest.mark.parametrize("data", [
    get(host="a b"), get(host="x/x"), get(host=""), get(host="a, b"), get(host="u@example.com"),
    get(host="example.com:99999"), get(host="example.com:port"), get(host="[::1"),
    get(host="a b", version="1.0"), get(host="", version="1.0"),
    b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    get("http://user@example.com/p"), get("http://example.com:99999/p"), get("ftp://example.com/p"),
    b"GET * HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"POST * HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nHost: evil\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nAuthorization: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
])
def test_invalid_host_target_or_trailer_is_400(server, data):
    response, _ = ask(server, data)
    assert response.status == 400


@pytest.mark.parametrize("minor", [2, 5, 9])
def test_http_1_x_minor_versions_are_served_as_http_1_1(server, minor):
    response, seen = ask(server, get(version=f"1.{minor}"))
    assert response.status == 200
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"


@pytest.mark.parametrize("version", ["2.0", "3.0", "0.9"])
def test_other_major_versions_are_505(server, version):
    response, _ = ask(server, get(version=version))
    assert response.status == 505


def test_absolute_form_authority_replaces_host(server):
    response, seen = ask(server, get("http://app.example:8080/p/q?x=1", host="other.example"))
    assert response.status == 200
    assert (seen["HTTP_HOST"], seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("app.example:8080", "app.example",
                                                                            "8080")
    assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/p/q", "x=1")


def test_options_asterisk_is_served(server):
    response, seen = ask(server, b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert response.status == 200
    assert seen["REQUEST_METHOD"] == "OPTIONS"


def test_a_target_of_8000_octets_is_served(server):
    target = "/" + "a" * 7999
    response, seen = ask(server, get(target))
    assert response.status == 200
    assert seen["PATH_INFO"] == target


def test_chunk_extensions_with_whitespace_and_allowed_trailers(server):
    response, seen = ask(server, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                                 b"\r\n3 ; a = b\r\nabc\r\n2\t;\tz\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert response.status == 200
    assert seen["body"] == "abcde"
    assert seen["HTTP_X_TRAILER"] is None  # trailers never become headers


def test_content_length_with_tabs_around_the_value(server):
    response, seen = ask(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \t5\t\r\nConnection: close\r\n"
                                 b"\r\nhello")
    assert (response.status, seen["body"]) == (200, "hello")


@pytest.mark.parametrize("value, address", [
    ("<script>x</script>", "127.0.0.1"),
    ("unknown", "127.0.0.1"),
    ("1.2.3.4.5", "127.0.0.1"),
    ("198.51.100.9", "198.51.100.9"),
    ("198.51.100.9:4711", "198.51.100.9"),
    ("[2001:db8::1]:4711", "2001:db8::1"),
])
def test_only_an_ip_address_from_x_forwarded_for_becomes_remote_addr(server, value, address):
    response, seen = ask(server, get(extra=f"X-Forwarded-For: {value}\r\n"))
    assert response.status == 200
    assert seen["REMOTE_ADDR"] == address
