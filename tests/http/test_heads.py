"""The one head writer (http/heads.py) beyond build_head: our own replies, the proxy's heads, the request heads;
the trust rule the server and the proxy share; ClientGone."""

from __future__ import annotations

import pytest

from wsgistack.http import heads
from wsgistack.http.errors import ClientGone, error_body
from wsgistack.http.heads import (
    HOP_BY_HOP,
    PROXY_CREDENTIALS,
    UpstreamHeadTooLarge,
    build_head,
    error_reply,
    forwarded_request_head,
    proxied_response_head,
    reply_head,
    request_head,
)
from wsgistack.http.trust import ProxyTrust


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch):
    monkeypatch.setattr(heads, "http_date", lambda: "DATE")


def test_build_head_returns_the_status_code():
    assert build_head("201 Created", [("Content-Length", "0")], "GET", "1.1", True)[3] == 201


def test_hop_by_hop_set_is_rfc_9110_plus_trailer_and_proxy_credentials_apart():
    assert HOP_BY_HOP == {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                          "upgrade"}
    assert PROXY_CREDENTIALS == {"proxy-authenticate", "proxy-authorization"}


def test_an_apps_proxy_authenticate_passes_the_server():
    head = build_head("407 Proxy Authentication Required", [("Proxy-Authenticate", "Basic"),
                                                            ("Content-Length", "0")], "GET", "1.1", True)[0]
    assert b"\r\nProxy-Authenticate: Basic\r\n" in head


@pytest.mark.parametrize("keep_alive, version, closing", [
    (False, "1.1", "Connection: close\r\n"), (False, "1.0", "Connection: close\r\n"),
    (True, "1.1", ""), (True, "1.0", "Connection: keep-alive\r\n")])
def test_reply_head_order_and_closing_field(keep_alive, version, closing):
    head = reply_head("429 Too Many Requests", [("Content-Length", "0")], keep_alive, version,
                      late=[("Retry-After", "1")])
    assert head == (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nDate: DATE\r\nServer: wsgistack\r\n"
                    b"Retry-After: 1\r\n" + closing.encode() + b"\r\n")


def test_error_reply_gives_the_body_length_and_no_body_to_head():
    body = error_body(404, "nope")
    data, length = error_reply(404, "nope")
    assert data.endswith(b"\r\n\r\n" + body) and length == len(body)
    assert b"Connection: close\r\n" in data
    head, length = error_reply(404, "nope", "HEAD", keep_alive=True, version="1.0")
    assert head.endswith(b"Connection: keep-alive\r\n\r\n") and length == len(body)


def test_request_head():
    assert request_head("GET", "/health", [("Host", "a"), ("Connection", "close")]) == \
        b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def test_proxied_response_head_drops_hop_by_hop_named_and_proxy_fields():
    fields = [("Connection", "X-Foo"), ("X-Foo", "1"), ("Keep-Alive", "5"), ("Proxy-Authenticate", "Basic"),
              ("X-Accel-Buffering", "No"), ("Content-Length", "2"), ("X-Bar", "2")]
    head, framing, keep_alive, buffering = proxied_response_head(200, "OK", fields, "GET", "1.1", True, "rid")
    assert head == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Bar: 2\r\nX-Request-ID: rid\r\nDate: DATE\r\n"
                    b"Server: wsgistack\r\n\r\n")
    assert (framing.mode, keep_alive, buffering) == ("length", True, "no")


def test_forwarded_request_head():
    fields = [("Host", "h"), ("X-Forwarded-For", "1.1.1.1"), ("Proxy-Authorization", "x"), ("TE", "trailers"),
              ("Accept", "*/*")]
    head = forwarded_request_head("POST", "/p", fields, client_ip="9.9.9.9", scheme="http", server_port="80",
                                  trusted=True, request_id="r", body_length=3, default_host="d")
    assert head == (b"POST /p HTTP/1.1\r\nAccept: */*\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 9.9.9.9\r\n"
                    b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Forwarded-Port: 80\r\nX-Request-ID: r\r\n"
                    b"Content-Length: 3\r\n\r\n")


def test_forwarded_request_head_keeps_within_the_upstreams_limits():
    with pytest.raises(UpstreamHeadTooLarge):
        forwarded_request_head("GET", "/", [("X-Forwarded-For", "1.1.1.1, " * 1000)], client_ip="9.9.9.9",
                               scheme="http", server_port="80", trusted=True, request_id="r", body_length=None,
                               default_host="d")


def test_trust_everyone_networks_unix_and_nobody():
    assert ProxyTrust(("*",)).trusts("not-an-ip")
    trust = ProxyTrust(("10.0.0.0/8", "::1"))
    assert trust.trusts("10.1.2.3") and trust.trusts("::1") and not trust.trusts("11.0.0.1")
    assert trust.trusts("10.1.2.3") and not trust.trusts("not-an-ip")  # answered from the cache alike
    assert not ProxyTrust(()).trusts("127.0.0.1")
    assert ProxyTrust(()).trusts("", unix=True)


def test_client_gone_is_an_os_error():
    assert isinstance(ClientGone("gone"), OSError)
