"""wsgi/cgi_environ.py: the one environ of `wsgistack cgi`, uwsgi and FastCGI, from CGI meta-variables."""

from __future__ import annotations

import io

import pytest

from wsgistack.wsgi.cgi_environ import body_length, cgi_environ


def _environ(meta: dict[str, str], **options) -> dict:
    return cgi_environ(meta, lambda: b"", io.StringIO(), **options)


def test_what_the_sender_left_out_is_filled_in_as_pep_3333_requires():
    environ = _environ({"REQUEST_METHOD": "POST", "PATH_INFO": "/x", "QUERY_STRING": "a=1"})
    assert environ["SCRIPT_NAME"] == "" and environ["SERVER_NAME"] == "localhost"
    assert environ["SERVER_PORT"] == "80" and environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["RAW_URI"] == "/x?a=1" and environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input_terminated"] is True and environ["wsgi.run_once"] is False


def test_request_uri_is_the_raw_uri_and_https_gives_the_scheme():
    environ = _environ({"REQUEST_URI": "/a%2Fb?q", "PATH_INFO": "/a/b", "HTTPS": "on"})
    assert environ["RAW_URI"] == "/a%2Fb?q" and environ["wsgi.url_scheme"] == "https"
    assert _environ({"REQUEST_SCHEME": "https"})["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(("script", "path", "expected"), [
    ("/app", "/app/x", ("/app", "/x")),
    ("/app/", "/app/x", ("/app", "/x")),
    ("/app", "/app", ("/app", "")),
    ("/app", "/apple", ("/app", "/apple")),  # not at a segment boundary: PATH_INFO is left whole
    ("/", "/x", ("", "/x")),
])
def test_modifier1_30_cuts_script_name_from_path_info_at_a_segment_boundary(script, path, expected):
    environ = _environ({"SCRIPT_NAME": script, "PATH_INFO": path}, strip_script_name=True)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == expected


def test_a_proxy_header_never_reaches_the_app():
    """httpoxy: `Proxy: http://evil` arrives as HTTP_PROXY, the variable HTTP clients take their proxy from."""
    assert "HTTP_PROXY" not in _environ({"HTTP_PROXY": "http://evil.example:1", "HTTP_HOST": "h"})


def test_the_body_is_described_by_content_length_and_type_alone():
    """nginx passes the client's Content-Length and Content-Type as HTTP_* too (fastcgi_pass_request_headers):
    an app that read those could frame the body otherwise than the server does."""
    environ = _environ({"CONTENT_LENGTH": "5", "CONTENT_TYPE": "text/plain", "HTTP_CONTENT_LENGTH": "500",
                        "HTTP_CONTENT_TYPE": "application/json"})
    assert (environ["CONTENT_LENGTH"], environ["CONTENT_TYPE"]) == ("5", "text/plain")
    assert "HTTP_CONTENT_LENGTH" not in environ and "HTTP_CONTENT_TYPE" not in environ


@pytest.mark.parametrize(("text", "length"), [("", 0), ("12", 12), (" 7 ", 7)])
def test_body_length(text, length):
    assert body_length({"CONTENT_LENGTH": text}) == length


@pytest.mark.parametrize("text", ["-1", "1e3", "0x10", "12 3"])
def test_a_bad_body_length_is_refused(text):
    with pytest.raises(ValueError, match="is not a length"):
        body_length({"CONTENT_LENGTH": text})
