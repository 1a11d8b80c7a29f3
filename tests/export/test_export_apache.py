"""`wsgistack export apache`: the vhost and .wsgi files it writes pass `apache2 -t`, and a real Apache with
Debian's mod_wsgi serves the bundled example from them as `wsgistack serve` does."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # the Apache harness, apache.py
from apache import EXAMPLES, Apache, apache_fixture, example_answers, require_apache  # noqa: F401

from wsgistack.export import render
from wsgistack.stack.compose import load_stack

SEVERAL = """\
[serve]
workers = 1

[serve.web]
app = "flask_app.app:create_app()"

[serve.api]
app = "flask_app/app.py"
max_requests = 1000
max_requests_jitter = 10
worker_class = "gevent"

[proxy]
listen = ["127.0.0.1:8000"]
gzip = { enabled = true }

[[proxy.routes]]
path = "/api/"
upstream = "api"
client_max_body_size = "2k"

[[proxy.routes]]
path = "/static/"
static = "flask_app/static"

[[proxy.routes]]
path = "/"
upstream = "web"
"""


def project(tmp_path: Path, toml: str | None = None) -> Path:
    """The bundled example copied to tmp_path/examples (the .wsgi files are written beside its toml)."""
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    if toml is not None:
        (folder / "wsgistack.toml").write_text(toml)
    return folder


def export(folder: Path, port: int) -> Path:
    """`wsgistack export apache -o` the project's folder, its proxy moved to 127.0.0.1:port; the vhost's path."""
    env = {**os.environ, "WSGISTACK_PROXY_LISTEN": f"127.0.0.1:{port}"}
    done = subprocess.run([sys.executable, "-m", "wsgistack", "export", "apache", "-c",
                           str(folder / "wsgistack.toml"), "-o", str(folder)],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(folder / name) for name in
                                   ["examples.conf", *(f"{server.name}.wsgi" for server in
                                                       load_stack(str(folder / "wsgistack.toml")).servers)]]
    return folder / "examples.conf"


def mod_wsgi_site(folder: Path) -> Callable[[int], str]:
    """The server config's part for the exported vhost, on the port the harness chose."""
    def body(port: int) -> str:
        return ("WSGISocketPrefix {tmp}/run/wsgi\n"
                "WSGIRestrictEmbedded On\n"  # daemon mode only, as the vhost asks
                f"Include {export(folder, port)}\n")
    return body


def test_the_vhost_of_the_example_passes_apache_t(tmp_path):
    require_apache("wsgi")
    folder = project(tmp_path)
    apache = Apache(tmp_path / "apache", mod_wsgi_site(folder), modules=("wsgi",))
    apache.configure(8000)  # written and checked, never started: any port does
    apache.check()
    vhost = (folder / "examples.conf").read_text()
    assert "<VirtualHost 127.0.0.1:8000>" in vhost and "WSGIApplicationGroup %{GLOBAL}" in vhost
    # [serve] leaves threads to "auto", which mod_wsgi cannot say: its own default of 15
    assert "WSGIDaemonProcess examples-app processes=2 \\\n    threads=15 \\\n" in vhost
    assert f"python-home={sys.prefix}" in vhost and f"python-path={folder}" in vhost
    assert f"WSGIScriptAlias / {folder}/app.wsgi process-group=examples-app" in vhost
    assert f"Alias /static/ {folder}/flask_app/static/" in vhost
    assert "# not translated: [programs.jobs]" in vhost
    assert "load_app('flask_app/app.py')" in (folder / "app.wsgi").read_text()


def test_apache_serves_the_example_from_the_export_as_serve_does(start_apache, start_server, tmp_path):
    require_apache("wsgi")
    folder = project(tmp_path)
    apache = start_apache(mod_wsgi_site(folder), modules=("wsgi",))
    served = start_server("flask_app/app.py", "--workers", "1", cwd=folder)
    expected = example_answers(served.port)
    assert [answer[1] for answer in expected] == [200, 200, 200, 200, 200, 404, 200, 200, 400, 400, 201, 303]
    assert example_answers(apache.port) == expected, apache.error_log()
    # the static route is the vhost's Alias: Apache's own file handler answers, not Flask
    connection = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=20)
    connection.request("GET", "/static/style.css")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.getheader("Accept-Ranges") == "bytes" and response.getheader("Content-Type") == "text/css"


def test_several_app_servers_each_in_its_own_daemon_group(start_apache, tmp_path):
    """[serve.web] (a factory) at /, [serve.api] at /api/: one WSGIScriptAlias each, longest first, each to its
    own daemon; the app under /api/ still sees the whole path, as behind the proxy."""
    require_apache("wsgi")
    folder = project(tmp_path, SEVERAL)
    apache = start_apache(mod_wsgi_site(folder), modules=("wsgi",))
    vhost = (folder / "examples.conf").read_text()
    api_alias = vhost.index(f"WSGIScriptAlias /api {folder}/api.wsgi process-group=examples-api")
    assert api_alias < vhost.index(f"WSGIScriptAlias / {folder}/web.wsgi process-group=examples-web")
    assert "maximum-requests=1000" in vhost and "LimitRequestBody 2048" in vhost
    for note in ("[serve.api] max_requests_jitter = 10", "[serve.api] worker_class = 'gevent'", "[proxy.gzip]"):
        assert f"# not translated: {note}" in vhost
    assert "load_app('flask_app.app:create_app()')" in (folder / "web.wsgi").read_text()

    health = requests.get(apache.url("/api/health"), timeout=20)
    assert health.status_code == 200, apache.error_log()
    with open(f"/proc/{health.json()['pid']}/cmdline", "rb") as cmdline:
        # display-name=%{GROUP}: "(wsgi:examples-api)", cut to the length of Apache's argv[0]
        assert cmdline.read().startswith(b"(wsgi:examples-ap")
    page = requests.get(apache.url("/"), timeout=20)
    assert page.status_code == 200 and 'href="/api/notes"' in page.text
    assert requests.get(apache.url("/api/no-such"), timeout=20).status_code == 404


def test_render_in_process_needs_no_apache(tmp_path):
    """No [proxy]: a virtual host on the app server's own bind, its keep-alive and body limit translated."""
    (tmp_path / "site").mkdir()
    toml = tmp_path / "site" / "wsgistack.toml"
    toml.write_text('[serve]\napp = "pkg:create_app(\'prod\')"\nbind = ["0.0.0.0:9000", "unix:/tmp/x.sock"]\n'
                    'keep_alive = 0\nmax_body_size = "1m"\ntimeout = 0\nworker_class = "sync"\nworkers = 3\n')
    files = render("apache", load_stack(str(toml)))
    assert list(files) == ["site.conf", "app.wsgi"]
    vhost = files["site.conf"]
    assert "<VirtualHost *:9000>" in vhost and "KeepAlive Off" in vhost and "LimitRequestBody 1048576" in vhost
    assert "processes=3 \\\n    threads=1" in vhost and "request-timeout" not in vhost
    assert "# not translated: [serve] bind unix:/tmp/x.sock" in vhost
    assert "load_app(\"pkg:create_app('prod')\")" in files["app.wsgi"]
    compile(files["app.wsgi"], "app.wsgi", "exec")
    # the vhost names the entry files where they are written: beside the toml by default, else -o's folder
    assert f"WSGIScriptAlias / \"{tmp_path / 'site' / 'app.wsgi'}\"" in vhost or \
        f"WSGIScriptAlias / {tmp_path / 'site' / 'app.wsgi'}" in vhost
    elsewhere = render("apache", load_stack(str(toml)), str(tmp_path / "out"))["site.conf"]
    assert str(tmp_path / "out" / "app.wsgi") in elsewhere and str(tmp_path / "site" / "app.wsgi") not in elsewhere
