"""wsgi/mounts.py in process: which app a request goes to, what it sees of its path, the 404, the loading."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from wsgistack.config.values import mounts
from wsgistack.wsgi.loader import AppLoadError
from wsgistack.wsgi.mounts import Mounts, host_name, load_mounts


def named(name: str):
    """A WSGI app that answers with its name and what it saw of SCRIPT_NAME and PATH_INFO."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{name} {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode("latin-1")]

    return app


def call(app, path: str, host: str | None = "example.com", script_name: str = "") -> tuple[str, bytes]:
    """Call a WSGI app as the server would: (status, body)."""
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": script_name, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1"}
    if host is not None:
        environ["HTTP_HOST"] = host
    seen = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: seen.append((status, headers))))
    return seen[0][0], body


SITE = Mounts([("", "", named("site")), ("", "/admin", named("admin")), ("", "/admin/api", named("api")),
               ("admin.example.com", "", named("admin-host")), ("admin.example.com", "/static", named("files"))])


@pytest.mark.parametrize(("path", "expected"), [
    ("/", b"site '' '/'"),
    ("", b"site '' ''"),
    ("/about", b"site '' '/about'"),
    ("/admin", b"admin '/admin' ''"),
    ("/admin/", b"admin '/admin' '/'"),
    ("/admin/users/1", b"admin '/admin' '/users/1'"),
    ("/administrator", b"site '' '/administrator'"),  # a prefix matches at a segment boundary only
    ("/admin/api", b"api '/admin/api' ''"),  # the longest prefix wins, whatever the order given
    ("/admin/api/v1", b"api '/admin/api' '/v1'"),
    ("/admin/apis", b"admin '/admin' '/apis'"),
    ("/ADMIN", b"site '' '/ADMIN'"),  # paths are case-sensitive
])
def test_the_longest_prefix_at_a_segment_boundary_wins(path, expected):
    assert call(SITE, path) == ("200 OK", expected)


@pytest.mark.parametrize(("host", "path", "expected"), [
    ("admin.example.com", "/", b"admin-host '' '/'"),
    ("ADMIN.example.com:8443", "/x", b"admin-host '' '/x'"),  # any port, any case
    ("admin.example.com.", "/x", b"admin-host '' '/x'"),
    ("admin.example.com", "/static/a.css", b"files '/static' '/a.css'"),
    ("admin.example.com", "/admin/x", b"admin-host '' '/admin/x'"),  # the host's mounts come first
    ("www.example.com", "/admin/x", b"admin '/admin' '/x'"),
    (None, "/admin/x", b"admin '/admin' '/x'"),  # HTTP/1.0 without Host: SERVER_NAME, no host mount
])
def test_host_mounts_come_before_hostless_ones(host, path, expected):
    assert call(SITE, path, host=host) == ("200 OK", expected)


def test_a_host_whose_mounts_do_not_match_falls_back_to_the_hostless_ones():
    app = Mounts([("", "/", named("site")), ("api.example.com", "/v1", named("v1"))])
    assert call(app, "/v1/x", host="api.example.com") == ("200 OK", b"v1 '/v1' '/x'")
    assert call(app, "/v2", host="api.example.com") == ("200 OK", b"site '' '/v2'")


def test_outside_every_mount_is_a_plain_404_and_no_app_is_called():
    app = Mounts([("", "/admin", named("admin")), ("admin.example.com", "/", named("admin-host"))])
    status, body = call(app, "/other")
    assert status == "404 Not Found"
    assert body == b"404 Not Found\nNo app is mounted at this path.\n"
    assert call(app, "/administrator")[0] == "404 Not Found"


def test_the_prefix_goes_after_an_incoming_script_name():
    app = Mounts([("", "/admin", named("admin"))])
    assert call(app, "/admin/x", script_name="/site") == ("200 OK", b"admin '/site/admin' '/x'")


def test_a_prefix_with_non_ascii_matches_the_wsgi_string_of_its_utf8_bytes():
    # PATH_INFO holds the request's bytes read as latin-1 (PEP 3333); the prefix is compared the same way
    app = Mounts([("", "/café", named("cafe"))])
    wsgi_path = "/café/menu".encode().decode("latin-1")
    assert call(app, wsgi_path)[1] == f"cafe {'/café'.encode().decode('latin-1')!r} '/menu'".encode("latin-1")


def test_the_apps_iterable_is_returned_as_it_is():
    class Body:
        def __iter__(self):
            return iter([b"a", b"b"])

        def close(self):
            pass

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    result = Mounts([("", "/x", app)])({"PATH_INFO": "/x/y", "SCRIPT_NAME": ""}, lambda *args: None)
    assert isinstance(result, Body)  # its close() stays reachable for the server


@pytest.mark.parametrize(("host", "name"), [
    ("Example.COM", "example.com"), ("example.com:8000", "example.com"), ("[::1]:8000", "[::1]"), ("", ""),
])
def test_host_name(host, name):
    assert host_name(host) == name


# --- loading --------------------------------------------------------------------------------------------------

@pytest.fixture
def modules(tmp_path: Path, monkeypatch):
    """Two app modules in a temp folder on sys.path; `imports` counts each module's imports."""
    for name in ("mount_one", "mount_two"):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
            import builtins
            builtins.mount_imports = getattr(builtins, "mount_imports", []) + ["{name}"]
            def app(environ, start_response):
                start_response("200 OK", [])
                return [b"{name} " + environ["PATH_INFO"].encode()]
            def create(label, extra=""):
                def labelled(environ, start_response):
                    start_response("200 OK", [])
                    return [(label + extra).encode()]
                return labelled
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    import builtins
    for name in ("mount_one", "mount_two"):
        sys.modules.pop(name, None)
    if hasattr(builtins, "mount_imports"):
        del builtins.mount_imports


def test_load_mounts_loads_each_app_through_the_loader(modules):
    app = load_mounts(mounts({"/": "mount_one:app", "/two/": "mount_two:app",
                              "Api.Example.com/": "mount_two:create('api', extra='!')"}))
    assert call(app, "/x") == ("200 OK", b"mount_one /x")
    assert call(app, "/two/x") == ("200 OK", b"mount_two /x")
    assert call(app, "/x", host="api.example.com") == ("200 OK", b"api!")


def test_an_app_mounted_twice_is_loaded_once(modules):
    import builtins

    app = load_mounts(mounts({"/a": "mount_one:app", "/b": "mount_one:app"}))
    assert builtins.mount_imports == ["mount_one"]
    assert call(app, "/a/1")[1] == call(app, "/b/1")[1] == b"mount_one /1"


def test_a_mount_that_cannot_load_is_named_in_the_one_line(modules):
    with pytest.raises(AppLoadError) as caught:
        load_mounts(mounts({"/": "mount_one:app", "/admin": "mount_missing:app"}))
    assert str(caught.value) == "mount /admin: app 'mount_missing:app': no module named 'mount_missing'"
