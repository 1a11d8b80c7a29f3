"""gunicorn's `access_log_format` atoms in --access-log-format: records built as the server builds them, and
one real `wsgistack serve` writing a line in gunicorn's default format."""

from __future__ import annotations

import base64
import os
import re
import time

import pytest
import requests
from polling import wait_for

from wsgistack.config.errors import ConfigError
from wsgistack.http.parser import RequestHead, RequestParser
from wsgistack.observe.accesslog import AccessRecord, compile_format
from wsgistack.proxy.accesslog import check_format
from wsgistack.wsgi.environ import ConnectionInfo, build_environ
from wsgistack.wsgi.input import InputStream

GUNICORN_DEFAULT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
TCP = ConnectionInfo(server_name="0.0.0.0", server_port="8000", remote_addr="203.0.113.7", remote_port="54321")
STARTED = 1_700_000_000.25
LOCAL = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(int(STARTED)))


def head_of(raw: bytes) -> RequestHead:
    parser = RequestParser()
    parser.feed(raw)
    head = parser.next_event()
    assert isinstance(head, RequestHead), head
    return head


def record(headers: str = "Host: example.com\r\nReferer: http://ref/\r\nUser-Agent: ua/1.0\r\n",
           target: str = "/a%20b?x=1&y=2", method: str = "GET", status: int = 201, sent: int = 17,
           duration: float = 1.2345678) -> AccessRecord:
    """An AccessRecord as the event worker makes one: build_environ over a parsed head."""
    head = head_of(f"{method} {target} HTTP/1.1\r\n{headers}\r\n".encode("latin-1"))
    environ = build_environ(head, TCP, InputStream(lambda: b""))
    return AccessRecord(environ, status, sent, STARTED, duration)


def test_gunicorn_default_format():
    line = compile_format(GUNICORN_DEFAULT)(record())
    assert line == f'203.0.113.7 - - [{LOCAL}] "GET /a%20b?x=1&y=2 HTTP/1.1" 201 17 "http://ref/" "ua/1.0"'
    # the same line as nginx's combined format, which is what gunicorn's default is modelled on
    assert line == compile_format("combined")(record())


@pytest.mark.parametrize(("atom", "expected"), [
    ("h", "203.0.113.7"),
    ("l", "-"),
    ("u", "-"),
    ("t", f"[{LOCAL}]"),
    ("r", "GET /a%20b?x=1&y=2 HTTP/1.1"),
    ("m", "GET"),
    ("U", "/a b"),
    ("q", "x=1&y=2"),
    ("H", "HTTP/1.1"),
    ("s", "201"),
    ("B", "17"),
    ("b", "17"),
    ("f", "http://ref/"),
    ("a", "ua/1.0"),
    ("T", "1"),
    ("M", "1234"),
    ("D", "1234567"),
    ("L", "1.234567"),
    ("p", "PID"),  # this process: the test formats in-process
    ("{user-agent}i", "ua/1.0"),
    ("{User-Agent}i", "ua/1.0"),
    ("{x-missing}i", "-"),
    ("{content-type}i", "text/plain"),  # CONTENT_TYPE in the environ, not HTTP_CONTENT_TYPE
    ("{content-type}o", "-"),  # response headers are not in the record
    ("{REMOTE_PORT}e", "54321"),
    ("{remote_port}e", "54321"),  # gunicorn matches environ names without regard to case
    ("{wsgi.url_scheme}e", "http"),
    ("{no_such_thing}e", "-"),
])
def test_each_atom(atom, expected):
    headers = "Host: example.com\r\nReferer: http://ref/\r\nUser-Agent: ua/1.0\r\nContent-Type: text/plain\r\n"
    expected = str(os.getpid()) if expected == "PID" else expected
    assert compile_format(f"<%({atom})s>")(record(headers)) == f"<{expected}>"


def test_missing_values_and_empty_body():
    line = compile_format('%(u)s %(b)s %(B)s "%(f)s" "%(a)s" "%(q)s" %(T)s %(M)s %(D)s %(L)s')(
        record("Host: example.com\r\n", target="/", status=204, sent=0, duration=0.0))
    assert line == '- - 0 "-" "-" "" 0 0 0 0.000000'


def test_basic_auth_user():
    auth = base64.b64encode(b"ann:secret").decode()
    assert compile_format("%(u)s")(record(f"Host: example.com\r\nAuthorization: Basic {auth}\r\n")) == "ann"


def test_percent_and_dollar_are_text_in_a_gunicorn_template():
    assert compile_format("%(s)s 100%% $status $$ %(m)s")(record()) == "201 100% $status $$ GET"


def test_values_are_escaped_as_in_nginx_templates():
    line = compile_format('"%(a)s"')(record('Host: example.com\r\nUser-Agent: evil" \\ agent\r\n'))
    assert line == '"evil\\x22 \\x5C agent"'


@pytest.mark.parametrize(("template", "named"), [
    ("%(zz)s", "%(zz)s"),
    ('%(h)s "%(r)s" %(zz)s', "%(zz)s"),
    ("%({x}q)s", "%({x}q)s"),
    ("%(h)s %(s)d", "%(s)d"),
])
def test_unknown_atom_is_a_config_error(template, named):
    with pytest.raises(ValueError) as error:
        compile_format(template)
    message = str(error.value)
    assert named in message and "\n" not in message
    # the proxy's config check (and the worker's boot, which catches ConfigError) refuse it too
    with pytest.raises(ConfigError, match=re.escape(named)):
        check_format(template)


def test_serve_writes_gunicorn_default_format(start_server, tmp_path):
    access = tmp_path / "gunicorn-access.log"
    server = start_server("behaviour_app:app", "--access-logfile", str(access),
                          "--access-logformat", GUNICORN_DEFAULT)
    response = requests.get(f"http://127.0.0.1:{server.port}/hello?x=1", timeout=10,
                            headers={"Referer": "http://ref.example/page", "User-Agent": "gunicorn-ua/2"})
    assert response.status_code == 200
    lines = wait_for(lambda: access.exists() and access.read_text().splitlines(), message="an access log line")
    assert len(lines) == 1, lines
    expected = (r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /hello\?x=1 HTTP/1\.1" 200 6 '
                r'"http://ref\.example/page" "gunicorn-ua/2"')
    assert re.fullmatch(expected, lines[0]), lines[0]
