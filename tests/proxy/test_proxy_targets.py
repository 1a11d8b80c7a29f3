"""How the proxy reads a request-target: routes match the normalised path, bad targets and Hosts never go upstream.

One proxy for the module, in front of two `wsgistack serve` upstreams of tests/apps/target_app.py (which
answers what it saw, and its name): `/admin/` goes to "admin", `/login` (limit_req, 1 a minute) and `/`
to "public". Every spelling of `/admin/...` must reach "admin", no spelling of `/login` may escape its
limit, an absolute-form target is routed by its path with its authority as Host, and every target or Host
nginx refuses gets a 400 from the proxy with nothing in either upstream's access log.
"""

from __future__ import annotations

import itertools
import json

import pytest
from servers import APPS, Server
from polling import wait_for
from proxies import Proxy, send_until_closed

ROUTES = """
[proxy]
listen = ["127.0.0.1:0"]
access_log = "{folder}/access.log"

[proxy.upstreams.admin]
servers = ["127.0.0.1:{admin}"]

[proxy.upstreams.public]
servers = ["127.0.0.1:{public}"]

[[proxy.routes]]
path = "/admin/"
upstream = "admin"

[[proxy.routes]]
path = "/login"
upstream = "public"
limit_req = { rate = "1r/m", nodelay = true }

[[proxy.routes]]
path = "/"
upstream = "public"
"""


_SETTLE = itertools.count(1)


class Site:
    """The proxy and its two upstreams."""

    def __init__(self, proxy: Proxy, admin: Server, public: Server):
        self.proxy, self.admin, self.public = proxy, admin, public

    def upstream_lines(self) -> int:
        return len(self.admin.access_lines()) + len(self.public.access_lines())

    def settle(self) -> None:
        """Wait until the upstreams logged every earlier request: a request to each, whose line (each upstream
        has one worker, logging in order) comes after theirs. An upstream logs once its answer is written, a
        moment after the client may have it: a count read before the last line landed was one short."""
        token = f"settle-{next(_SETTLE)}"
        get(self, f"/{token}")
        get(self, f"/admin/{token}")

        def logged() -> bool:
            return all(lines and token in lines[-1] for lines in (self.admin.access_lines(),
                                                                   self.public.access_lines()))
        wait_for(logged, message="the upstreams' access logs to catch up")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("targets")
    started: list = []
    try:
        upstreams = []
        for name in ("admin", "public"):
            (folder / name).mkdir()
            server = Server(folder / name, "target_app:app", ["-w", "1", "-k", "event"],
                            env={"TARGET_APP_NAME": name}, cwd=APPS)
            started.append(server)
            upstreams.append(server)
        for server in upstreams:
            server.wait_ready()
        (folder / "proxy").mkdir()
        toml = ROUTES.replace("{folder}", str(folder / "proxy")).replace("{admin}", str(upstreams[0].port)) \
            .replace("{public}", str(upstreams[1].port))
        proxy = Proxy(folder / "proxy", toml, [])
        started.append(proxy)
        proxy.wait_ready()
        yield Site(proxy, *upstreams)
    finally:
        for process in reversed(started):
            process.stop()


def exchange(site: Site, data: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send one raw request (with Connection: close added by the caller); the status and body of the answer."""
    answer = send_until_closed(site.proxy.port, data, timeout)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    body = answer.partition(b"\r\n\r\n")[2]
    return int(answer[9:12]), body


def get(site: Site, target: str, host: str = "site.test", version: str = "1.1") -> tuple[int, dict | bytes]:
    host_line = f"Host: {host}\r\n" if host is not None else ""
    status, body = exchange(site, f"GET {target} HTTP/{version}\r\n{host_line}Connection: close\r\n\r\n"
                            .encode("latin-1"))
    return status, (json.loads(body) if status == 200 else body)


@pytest.mark.parametrize("target", [
    "/admin/secret",
    "/%61dmin/secret",
    "/%61%64%6d%69%6e/secret",
    "/admin%2fsecret",
    "/admin%2Fsecret",
    "//admin/secret",
    "//admin//secret",
    "/x/../admin/secret",
    "/./admin/secret",
    "/x/%2e%2e/admin/secret",
    "/public/..%2fadmin%2fsecret",
])
def test_every_spelling_of_an_admin_path_reaches_the_admin_route(site, target):
    status, seen = get(site, target)
    assert status == 200
    assert seen["name"] == "admin"
    # what the app sees in PATH_INFO is the path the route matched, never a path outside it
    assert seen["PATH_INFO"] == "/admin/secret"


def test_a_plain_target_is_forwarded_as_the_client_sent_it(site):
    status, seen = get(site, "/admin/a%20b%2Fc?x=%41")
    assert (status, seen["name"]) == (200, "admin")
    assert seen["RAW_URI"] == "/admin/a%20b%2Fc?x=%41"  # nothing re-encoded when nothing needs it
    assert seen["PATH_INFO"] == "/admin/a b/c" and seen["QUERY_STRING"] == "x=%41"


def test_a_dot_segment_target_is_forwarded_normalised_with_its_query(site):
    status, seen = get(site, "/x/../admin//a%20b?q=1")
    assert (status, seen["name"]) == (200, "admin")
    assert seen["RAW_URI"] == "/admin/a%20b?q=1"
    assert seen["QUERY_STRING"] == "q=1"


def test_other_paths_reach_the_public_route(site):
    for target in ("/", "/administrator", "/x/admin/secret", "/%2561dmin/secret"):
        status, seen = get(site, target)
        assert (status, seen["name"]) == (200, "public"), target


def test_limit_req_on_login_is_not_escaped_by_another_spelling(site):
    status, seen = get(site, "/login")
    assert (status, seen["name"]) == (200, "public")
    for target in ("/login", "/%6cogin", "/%6C%6F%67%69%6E", "/login%2f", "/login/", "//login",
                   "/x/../login", "/./login", "/login?x=1"):
        status, _ = get(site, target)
        assert status == 429, target


@pytest.mark.parametrize("target, host", [
    ("http://site.test/admin/secret", "other.test"),
    ("http://site.test:8080/admin/secret", "site.test"),
    ("HTTP://SITE.TEST/admin/%2e%2e/admin/secret", "x"),
])
def test_absolute_form_is_routed_by_its_path_with_its_authority_as_host(site, target, host):
    status, seen = get(site, target, host=host)
    assert (status, seen["name"]) == (200, "admin")
    assert seen["PATH_INFO"] == "/admin/secret"
    assert seen["RAW_URI"].startswith("/admin/")  # forwarded in origin-form
    assert seen["HTTP_HOST"] == target.split("/")[2]


def test_absolute_form_in_http_1_0_without_host(site):
    status, seen = get(site, "http://site.test:81/admin/secret", host=None, version="1.0")
    assert (status, seen["name"], seen["HTTP_HOST"]) == (200, "admin", "site.test:81")


def test_options_asterisk_goes_to_the_root_route(site):
    status, _ = exchange(site, b"OPTIONS * HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert status == 200


REFUSED = [
    ("bad-escape", b"GET /a%zz HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("truncated-escape", b"GET /a% HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("short-escape", b"GET /admin/a%4 HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("nul", b"GET /a%00b HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("climb", b"GET /x/../../y HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("encoded-climb", b"GET /%2e%2e/%2e%2e/y HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("root-parent", b"GET /.. HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("host-with-slash", b"GET / HTTP/1.1\r\nHost: x/x\r\n\r\n"),
    ("empty-host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n"),
    ("empty-host-1.0", b"GET / HTTP/1.0\r\nHost:\r\n\r\n"),
    ("host-list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@site.test\r\n\r\n"),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: site.test:99999\r\n\r\n"),
    ("two-hosts-1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("two-hosts-1.1", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
    ("userinfo-in-target", b"GET http://u@site.test/ HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("asterisk-with-get", b"GET * HTTP/1.1\r\nHost: site.test\r\n\r\n"),
    ("forbidden-trailer", (b"POST / HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"1\r\na\r\n0\r\nHost: evil\r\n\r\n")),
]


@pytest.mark.parametrize("data", [data for _, data in REFUSED], ids=[name for name, _ in REFUSED])
def test_targets_and_hosts_nginx_refuses_get_400_and_never_reach_an_upstream(site, data):
    site.settle()
    before = site.upstream_lines()
    status, body = exchange(site, data)
    assert status == 400, body
    assert b"Traceback" not in body
    # a request sent after it on a new connection is answered and logged upstream: the refused one was not
    status, _ = get(site, "/marker")
    assert status == 200
    wait_for(lambda: site.upstream_lines() == before + 1, message="the marker request's log line")
    lines = site.admin.access_lines() + site.public.access_lines()
    assert sum("/marker" in line for line in lines[-1:]) == 1


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.2\r\nHost: site.test\r\nConnection: close\r\n\r\n", 200),
    (b"GET / HTTP/2.0\r\nHost: site.test\r\n\r\n", 505),
    (b"GET / HTTP/1.1\nHost: site.test\n\n", 400),
    (b"POST / HTTP/1.1\r\nHost: site.test\r\nExpect: foo\r\nContent-Length: 0\r\n\r\n", 417),
    (b"POST / HTTP/1.1\r\nHost: site.test\r\nContent-Length: \t5\t\r\nConnection: close\r\n\r\nhello", 200),
])
def test_version_line_endings_expect_and_ows_answered_as_serve_answers_them(site, data, status):
    answer, body = exchange(site, data)
    assert answer == status, body
    if status == 200 and data.startswith(b"POST"):
        assert json.loads(body)["body"] == "hello"
