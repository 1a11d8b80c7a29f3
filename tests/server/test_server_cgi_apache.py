"""`wsgistack cgi` under a real Apache (mod_cgid): the two-line script in a ScriptAlias'd folder runs the
bundled example app, and Apache answers what `wsgistack serve` answers."""

from __future__ import annotations

import http.client
import stat
import sys
import urllib.request
from pathlib import Path

from apache import EXAMPLES, apache_fixture, example_answers  # noqa: F401
from polling import wait_for

WSGISTACK = Path(sys.executable).parent / "wsgistack"  # the venv's command, as a user's script names it



def cgi_site(tmp_path: Path, app: str = "flask_app/app.py") -> str:
    """The two-line script the docs show, in tmp_path/cgi-bin (the app found from the example's folder, as
    serve finds it there), and the server config's part that runs it.

    /cgi-bin/ is the ScriptAlias'd folder; the same script also answers at the root (the rest of the path is its
    PATH_INFO, SCRIPT_NAME is empty), so its pages and links there are those of `wsgistack serve`."""
    folder = tmp_path / "cgi-bin"
    folder.mkdir()
    script = folder / "app.cgi"
    script.write_text(f"#!/bin/sh\ncd {EXAMPLES} && exec {WSGISTACK} cgi {app}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return (f"ScriptAlias /cgi-bin/ {folder}/\n"
            f"ScriptAlias / {script}/\n"
            f"<Directory {folder}>\n    Require all granted\n</Directory>\n")


def test_apache_runs_the_example_through_wsgistack_cgi_as_serve_does(start_apache, start_server, tmp_path):
    apache = start_apache(cgi_site(tmp_path), modules=("cgid",))
    served = start_server("flask_app/app.py", "--workers", "1", cwd=EXAMPLES)
    expected = example_answers(served.port)
    assert [answer[1] for answer in expected] == [200, 200, 200, 200, 200, 404, 200, 200, 400, 400, 201, 303]
    assert example_answers(apache.port) == expected, apache.error_log()


def test_links_carry_the_scripts_path_under_apache(start_apache, tmp_path):
    """Under /cgi-bin/app.cgi, Apache's SCRIPT_NAME reaches Flask: its links and redirects name the script."""
    apache = start_apache(cgi_site(tmp_path), modules=("cgid",))
    with urllib.request.urlopen(apache.url("/cgi-bin/app.cgi/"), timeout=20) as response:
        page = response.read().decode()
    assert 'action="/cgi-bin/app.cgi/notes"' in page and 'href="/cgi-bin/app.cgi/static/style.css"' in page
    connection = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    connection.request("POST", "/cgi-bin/app.cgi/notes", body=b"text=hi",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()  # the socket closes with the response: Apache's lingering close then ends at once
    connection.close()
    assert (response.status, response.getheader("Location")) == (303, "/cgi-bin/app.cgi/")


def test_a_missing_app_is_a_500_with_its_reason_in_apaches_error_log(start_apache, tmp_path):
    apache = start_apache(cgi_site(tmp_path, "no_such_module:app"), modules=("cgid",))
    connection = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    connection.request("GET", "/cgi-bin/app.cgi/")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 500
    wait_for(lambda: "wsgistack cgi: error: " in apache.error_log(), 10, message="the reason in the error log")
    assert "no_such_module" in apache.error_log()
