"""`wsgistack cgi APP` black-box: run as a CGI/1.1 script (RFC 3875) with the meta-variables in its
environment and the body on stdin, directly and under a real CGI host (Python's own http.server --cgi)."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

from commands import BASE_ENV
from polling import wait_for
from servers import APPS

APPS_CODE = '''from flask import Flask, url_for

flask_app = Flask(__name__)


@flask_app.route("/page/<name>")
def page(name):
    return url_for("page", name=name) + " " + name


def proxies(environ, start_response):
    import os

    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr((environ.get("HTTP_PROXY"), os.environ.get("HTTP_PROXY"))).encode()]


def cut_short(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"the first half"
    raise RuntimeError("the second half failed")
'''


def cgi(cwd: Path, app: str, meta: dict[str, str], body: bytes = b"") -> subprocess.CompletedProcess:
    env = {**BASE_ENV, "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", **meta}
    return subprocess.run([sys.executable, "-m", "wsgistack", "cgi", app], cwd=cwd, env=env, input=body,
                          capture_output=True, timeout=30, check=False)


def split(output: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("Status: "), output
    return lines[0][len("Status: "):], dict(line.split(": ", 1) for line in lines[1:]), body


def test_a_post_reads_content_length_bytes_of_stdin_and_no_more():
    done = cgi(APPS, "behaviour_app:app", {"REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "CONTENT_LENGTH": "6",
                                           "CONTENT_TYPE": "application/octet-stream"}, body=b"abcdef and more")
    status, headers, body = split(done.stdout)
    assert (status, done.returncode) == ("200 OK", 0), done.stderr
    assert b'"length":6' in body and headers["Content-Length"] == str(len(body))


def test_a_proxy_header_becomes_no_proxy_of_the_app(tmp_path):
    """httpoxy: a client's `Proxy:` header is HTTP_PROXY in the script's environment, the variable HTTP clients
    take their proxy from: neither the environ nor the process's environment keeps it."""
    (tmp_path / "apps.py").write_text(APPS_CODE)
    done = cgi(tmp_path, "apps:proxies", {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_PROXY": "http://evil:1"})
    assert split(done.stdout)[2] == b"(None, None)", done.stderr


def test_flask_links_carry_the_scripts_path(tmp_path):
    (tmp_path / "apps_code.py").write_text(APPS_CODE)
    done = cgi(tmp_path, "apps_code:flask_app", {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cgi-bin/app.cgi",
                                                 "PATH_INFO": "/page/users", "SERVER_NAME": "example.org"})
    assert split(done.stdout)[::2] == ("200 OK", b"/cgi-bin/app.cgi/page/users users")
    head = cgi(tmp_path, "apps_code:flask_app", {"REQUEST_METHOD": "HEAD", "PATH_INFO": "/page/users"})
    status, headers, body = split(head.stdout)
    assert (status, body) == ("200 OK", b"") and int(headers["Content-Length"]) > 0


def test_a_response_cut_short_is_a_whole_500_never_half_of_one(tmp_path):
    (tmp_path / "apps_code.py").write_text(APPS_CODE)
    done = cgi(tmp_path, "apps_code:cut_short", {"REQUEST_METHOD": "GET", "PATH_INFO": "/"})
    status, headers, body = split(done.stdout)
    assert status == "500 Internal Server Error" and b"first half" not in done.stdout
    assert headers["Content-Length"] == str(len(body)) and done.returncode == 1
    assert b"the second half failed" in done.stderr  # the traceback goes to the host's error log


def test_bad_input_and_an_app_that_does_not_import(tmp_path):
    bad = cgi(APPS, "behaviour_app:app", {"REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "CONTENT_LENGTH": "x"})
    assert split(bad.stdout)[0] == "400 Bad Request" and bad.returncode == 1
    missing = cgi(tmp_path, "no_such_module:app", {"REQUEST_METHOD": "GET"})
    assert split(missing.stdout)[0] == "500 Internal Server Error" and missing.returncode == 1
    lines = missing.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsgistack cgi: error: ") and "no_such_module" in lines[0]


def test_under_a_real_cgi_host(tmp_path):
    """Python's http.server --cgi runs cgi-bin/app.cgi, the two-line script the docs show."""
    (tmp_path / "apps_code.py").write_text(APPS_CODE)
    script = tmp_path / "cgi-bin" / "app.cgi"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\ncd {tmp_path} && exec {sys.executable} -m wsgistack cgi apps_code:flask_app\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # as root, http.server runs scripts as nobody, who may not read this checkout's venv: keep our own uid
    serve = ("import http.server, os; http.server.nobody_uid = os.getuid; "
             f"http.server.test(HandlerClass=http.server.CGIHTTPRequestHandler, port={port}, bind='127.0.0.1')")
    host = subprocess.Popen([sys.executable, "-c", serve], cwd=tmp_path, env=BASE_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def answer():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/app.cgi/page/docs", timeout=10) as r:
                    return r.status, r.read()
            except OSError:
                return None
        assert wait_for(answer, 20, message="the CGI host") == (200, b"/cgi-bin/app.cgi/page/docs docs")
    finally:
        host.terminate()
        host.wait(10)
