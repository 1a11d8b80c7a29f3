"""Several apps in one `wsgistack serve` (`apps` / --mount), black box: two real Flask apps (tests/apps/site_app.py
at "/", tests/apps/admin_app.py at "/admin" and on a host), what each sees of its path, the links Flask's
url_for builds under the prefix, and the 404 outside every mount."""

from __future__ import annotations

import pytest
import requests

from commands import one_error_line, run
from servers import APPS


def get(server, path: str, host: str | None = None, **kwargs) -> requests.Response:
    headers = {"Host": host} if host else {}
    return requests.get(f"http://127.0.0.1:{server.port}{path}", headers=headers, timeout=10, **kwargs)


@pytest.mark.parametrize(("worker_class", "preload"), [("sync", False), ("event", False), ("event", True)])
def test_two_flask_apps_by_prefix_with_their_links(start_server, worker_class, preload):
    server = start_server("", "-k", worker_class, "-w", "1", "--mount", "/=site_app:app",
                          "--mount", "/admin=admin_app:app", *(["--preload"] if preload else []))
    admin = get(server, "/admin/").json()
    assert admin == {"app": "admin", "script_name": "/admin", "path_info": "/", "link": "/admin/page/users",
                     "external": f"http://127.0.0.1:{server.port}/admin/page/users"}
    page = get(server, admin["link"]).json()
    assert page == {"app": "admin", "script_name": "/admin", "path_info": "/page/users", "name": "users",
                    "home": "/admin/"}
    assert get(server, "/").json() == {"app": "site", "script_name": "", "path_info": "/", "link": "/x"}
    # a prefix matches at a segment boundary only
    assert get(server, "/administrator").json()["app"] == "site"
    # Flask's own answer to its mount point without the final slash: a redirect to it
    bare = get(server, "/admin", allow_redirects=False)
    assert (bare.status_code, bare.headers["Location"]) == (308, f"http://127.0.0.1:{server.port}/admin/")
    lines = server.access_lines()
    assert '"GET /admin/page/users HTTP/1.1" 200' in lines[1]  # the log shows the whole path


def test_host_mounts_and_the_404_outside_every_mount(start_server, tmp_path):
    (tmp_path / "wsgistack.toml").write_text(
        '[serve]\napps = { "/admin" = "admin_app:app", "Admin.Example.com/" = "admin_app:app", '
        '"admin.example.com/site" = "site_app:app" }\n', encoding="utf-8")
    server = start_server("", "-w", "1", "--config", str(tmp_path / "wsgistack.toml"))
    assert get(server, "/admin/").json()["script_name"] == "/admin"
    on_host = get(server, "/", host="admin.example.com:8080").json()
    assert (on_host["app"], on_host["script_name"], on_host["link"]) == ("admin", "", "/page/users")
    assert get(server, "/site/a", host="admin.example.com").json()["script_name"] == "/site"
    outside = get(server, "/elsewhere")
    assert (outside.status_code, outside.text) == (404, "404 Not Found\nNo app is mounted at this path.\n")
    assert outside.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert get(server, "/administrator").status_code == 404
    assert get(server, "/_wsgistack/health").text == "ready\n"  # the server's own, before any mount


def test_a_mount_that_cannot_load_stops_the_server_with_one_line_naming_it(tmp_path):
    result = run(APPS, "serve", "--mount", "/=site_app:app", "--mount", "/admin=no_such_module:app",
                 "-b", "127.0.0.1:0", "--error-log", str(tmp_path / "error.log"))
    assert result.returncode != 0
    log = (tmp_path / "error.log").read_text()
    assert "mount /admin: app 'no_such_module:app': no module named 'no_such_module'" in log
    assert "Traceback" not in log + result.stderr


def test_app_and_mount_together_is_one_line(tmp_path):
    line = one_error_line(run(APPS, "serve", "site_app:app", "--mount", "/admin=admin_app:app"))
    assert "both an app and mounts" in line
