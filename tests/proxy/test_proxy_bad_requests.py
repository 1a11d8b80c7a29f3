"""Malformed and smuggling requests stop at the proxy with the right 4xx/5xx; the upstream never sees them.

The proxy parses with the same strict core as the server (tests/http has the byte-level cases); these tests
check that its answers reach the client whole, that the connection is closed after them, and that nothing
of a refused request is passed upstream (the upstream's access log stays empty).
"""

from __future__ import annotations

import socket
import time

import pytest
from polling import wait_for
from proxies import send_until_closed, start_proxy, start_upstream, upstream_address


@pytest.fixture
def proxy_and_upstream(start_proxy, start_upstream):
    upstream = start_upstream("a")
    proxy = start_proxy(args=["--listen", "127.0.0.1:0", "--upstream", upstream_address(upstream),
                              "--access-log", "access.log"])
    return proxy, upstream


def exchange(proxy, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes the connection."""
    return send_until_closed(proxy.port, data, timeout)


BAD = [
    ("content-length-and-chunked",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("two-content-lengths",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
    ("bad-chunk-size", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
     400),
    ("gzip-transfer-coding",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    ("bare-lf-in-value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX\r\n\r\n", 400),
    ("http-2-0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
    ("uri-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("header-too-large", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ("not-http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
]


@pytest.mark.parametrize("data, status", [(data, status) for _, data, status in BAD],
                         ids=[name for name, _, _ in BAD])
def test_a_bad_request_is_answered_by_the_proxy_and_never_forwarded(proxy_and_upstream, data, status):
    proxy, upstream = proxy_and_upstream
    answer = exchange(proxy, data)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"Connection: close" in answer.split(b"\r\n\r\n", 1)[0]
    assert b"Traceback" not in answer
    wait_for(lambda: len(proxy.access_lines()) == 1, message="the refusal's access-log line")
    assert f'" {status} '.encode() in proxy.access_lines()[0].encode()
    assert upstream.access_lines() == []  # nothing of it went upstream
    assert "Traceback" not in proxy.log()


def test_a_good_request_before_garbage_is_answered_first(proxy_and_upstream):
    proxy, upstream = proxy_and_upstream
    answer = exchange(proxy, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\x00\r\n\r\n")
    first, _, rest = answer.partition(b"\r\n\r\na")
    assert first.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"HTTP/1.1 400 " in rest
    wait_for(lambda: len(upstream.access_lines()) == 1, message="the good request upstream")


def test_a_smuggled_second_request_in_a_body_stays_a_body(proxy_and_upstream):
    proxy, upstream = proxy_and_upstream
    smuggled = b"GET /status/418 HTTP/1.1\r\nHost: a\r\n\r\n"
    data = (b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(smuggled)
            + smuggled)
    answer = exchange(proxy, data)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1, answer[:300]
    assert b'"length":%d' % len(smuggled) in answer
    wait_for(lambda: len(upstream.access_lines()) == 1, message="one request upstream")
    assert "418" not in upstream.access_lines()[0]


def test_a_client_that_half_closes_gets_every_answer_then_the_close(proxy_and_upstream):
    proxy, _ = proxy_and_upstream
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /name HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        began, data = time.monotonic(), b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 ") == 2
    assert time.monotonic() - began < 2  # closed after the answers, not at the keep-alive timeout
