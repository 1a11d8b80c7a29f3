"""The same routes through real nginx and through `wsgistack proxy`, compared answer by answer.

One module-wide setup: an upstream (tests/apps/upstream_app.py), a static folder, and both fronts configured
alike (nginx: `location /static/ { alias ...; gzip_static on; }` and `location / { proxy_pass ...; }`;
wsgistack: the same two routes in TOML). Every request goes over a raw socket with the same bytes to both.

What is compared: the status, the body, and the headers a client or a cache acts on: Content-Type,
Content-Length, Content-Range, ETag, Last-Modified, Content-Encoding, Location, Set-Cookie (every field,
in order), Cache-Control and Vary. What is not, and why:
- Date, Server, Connection, Keep-Alive, X-Request-ID: per-front by nature (and Server/Date are a documented
  difference);
- the bodies of errors each front makes itself (404/403/413/416 pages): nginx writes HTML, wsgistack plain
  text; only the status (and Content-Range on 416) is compared there;
- Accept-Ranges and Transfer-Encoding are not compared in general (framing, not content), but a chunked
  upstream answer must stay chunked on both.
Some nginx settings make the fronts equivalent where nginx's defaults differ from wsgistack's documented
behaviour: `charset utf-8` for static text (wsgistack always names the charset), `if_modified_since before`
(wsgistack answers 304 for any date not older than the file), `gzip_vary on` (wsgistack always sends Vary
beside a .gz sibling), `disable_symlinks on` (wsgistack never follows a symlink out of the root), and
`location ~ /\\. { deny all; }` (wsgistack never serves dotfiles). gzip of proxied responses is off on both:
compressed bytes depend on the zlib settings, and gzip has its own tests.

The documented differences ("Where it differs from nginx" in docs/proxy.md) are asserted as documented, not
as equal: traversal and dotfiles are 404 in wsgistack and a 4xx in nginx, a directory without its trailing
slash is 403 in wsgistack and a 301 in nginx, several ranges are one 206 multipart in nginx and the whole file
in wsgistack ("a single Range"); neither ever leaks the secret file.

Not compared, because the fronts legitimately disagree and neither is wrong: If-None-Match together with an
older If-Modified-Since (wsgistack follows RFC 9110 13.2.2 and looks at If-None-Match alone: 304; nginx wants
both to hold: 200), and a Range on a file with a .gz sibling from a gzip client (nginx sends the whole .gz,
wsgistack the range of the plain file).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest
from servers import APPS, Server
from nginx import Nginx, require_nginx
from proxies import Proxy, upstream_address

HOST = "example.test"
MTIME = 1_700_000_000  # every static file's mtime, so ETag and Last-Modified are known in advance
SECRET = b"TOP-SECRET-nginx-comparison-5e1d"
MIB = 1024 * 1024
# the headers that matter, lower-cased; everything else is framing or per-front
COMPARED = ("content-type", "content-length", "content-range", "etag", "last-modified", "content-encoding",
            "location", "set-cookie", "cache-control", "vary")
CACHE_CONTROL = "public, max-age=3600"

NGINX_CONFIG = r"""
upstream up {
    server {upstream};
    keepalive 8;
    keepalive_timeout 4s;
}
server {
    listen 127.0.0.1:{port};
    client_max_body_size 10m;
    location /static/ {
        alias {site}/static/;
        gzip_static on;
        gzip_vary on;
        if_modified_since before;
        disable_symlinks on from={site}/static;
        charset utf-8;
        charset_types text/plain text/css text/html application/javascript application/json;
        add_header Cache-Control "public, max-age=3600";
    }
    location ~ /\. { deny all; }
    location / {
        proxy_pass http://up;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
"""

WSGISTACK_CONFIG = """
[proxy]
listen = ["127.0.0.1:0"]
client_max_body_size = "10m"
gzip = false

[proxy.upstreams.up]
servers = ["{upstream}"]
keepalive = 8  # keepalive_timeout: 4 s by default, as nginx's `keepalive_timeout 4s` above

[[proxy.routes]]
path = "/static/"
static = "{site}/static"
cache_control = "public, max-age=3600"

[[proxy.routes]]
path = "/"
upstream = "up"
"""


# --- talking HTTP over raw sockets ----------------------------------------------------------------------------

@dataclass
class Answer:
    """One response as it arrived: status, header fields in order (names lower-cased), decoded body."""

    status: int
    fields: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        """Every value of a header, in order (Set-Cookie may repeat)."""
        return [value for key, value in self.fields if key == name]

    def get(self, name: str) -> str | None:
        """The single value of a header, or None."""
        values = self.all(name)
        return values[0] if values else None

    def view(self, body: bool = True) -> dict[str, object]:
        """What the comparison looks at; a long body as its length and digest, so a failure reads well."""
        seen: dict[str, object] = {"status": self.status}
        if body:
            seen["body"] = self.body if len(self.body) <= 200 else (len(self.body), _digest(self.body))
        seen.update({name: self.all(name) for name in COMPARED})
        return seen


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def exchange(port: int, method: str, target: str, headers: dict[str, str] | None = None,
             body: bytes = b"", timeout: float = 10.0) -> Answer:
    """Send one request exactly as given (Connection: close) and read one whole response."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body and not any(name.lower() in ("content-length", "transfer-encoding") for name in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            pass  # the front answered (413) and stopped reading before the body was all sent
        return _read_response(sock, method, time.monotonic() + timeout)


def _read_response(sock: socket.socket, method: str, deadline: float) -> Answer:
    buffer = bytearray()

    def more() -> bool:
        if time.monotonic() > deadline:
            raise AssertionError(f"no whole response before the deadline: {bytes(buffer[:300])!r}")
        try:
            piece = sock.recv(262144)
        except ConnectionResetError:
            piece = b""
        buffer.extend(piece)
        return bool(piece)

    while b"\r\n\r\n" not in buffer:
        if not more():
            raise AssertionError(f"connection closed inside the head: {bytes(buffer[:300])!r}")
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    fields = [(name.strip().lower(), value.strip())
              for name, _, value in (line.partition(":") for line in header_lines)]
    lookup = dict(fields)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Answer(status, fields, b"")
    if "chunked" in lookup.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            while b"\r\n" not in buffer:
                if not more():
                    raise AssertionError("connection closed inside a chunk size")
            size_line, _, _ = bytes(buffer).partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            needed = len(size_line) + 2 + size + 2
            while len(buffer) < needed:
                if not more():
                    raise AssertionError("connection closed inside a chunk")
            body += buffer[len(size_line) + 2:len(size_line) + 2 + size]
            del buffer[:needed]
            if size == 0:
                return Answer(status, fields, bytes(body))
    if "content-length" in lookup:
        length = int(lookup["content-length"])
        while len(buffer) < length:
            if not more():
                raise AssertionError(f"connection closed after {len(buffer)} of {length} body bytes")
        return Answer(status, fields, bytes(buffer[:length]))
    while more():
        pass
    return Answer(status, fields, bytes(buffer))


# --- the setup: one upstream, one folder, both fronts ---------------------------------------------------------

@dataclass
class Fronts:
    """nginx and wsgistack proxy in front of the same upstream and the same static folder."""

    nginx: Nginx
    wsgistack: Proxy
    files: dict[str, bytes]

    def both(self, method: str, target: str, headers: dict[str, str] | None = None,
             body: bytes = b"") -> tuple[Answer, Answer]:
        """The same request to nginx, then to wsgistack: (nginx's answer, wsgistack's answer)."""
        return (exchange(self.nginx.port, method, target, headers, body),
                exchange(self.wsgistack.port, method, target, headers, body))


def build_site(site: Path) -> dict[str, bytes]:
    """The static folder (and a secret beside it); returns the served files' bytes by URL path."""
    static = site / "static"
    (static / "sub").mkdir(parents=True)
    (static / "emptydir").mkdir()
    (static / ".git").mkdir()
    css = b"body { color: #333; }\n" * 200
    files = {
        "/static/hello.txt": b"hello static\n",
        "/static/data.bin": os.urandom(3000) + bytes(range(256)),
        "/static/style.css": css,
        "/static/style.css.gz": gzip.compress(css, mtime=0),
        "/static/sub/index.html": b"<!doctype html><title>sub</title><p>index of sub</p>\n",
        "/static/page.html": b"<!doctype html><p>page</p>\n",
    }
    for url, data in files.items():
        (site / url.removeprefix("/")).write_bytes(data)
    (static / ".env").write_bytes(SECRET)
    (static / ".git" / "config").write_bytes(SECRET)
    (site / "secret.txt").write_bytes(SECRET)
    (static / "leak.txt").symlink_to(site / "secret.txt")
    (static / "leakdir").symlink_to(site)
    for path in [*site.rglob("*"), site]:
        if not path.is_symlink():
            os.utime(path, (MTIME, MTIME))
    return files


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fronts]:
    """Started once for the module (the fixtures in proxies.py are per test); everything stops at the end."""
    require_nginx()
    tmp = tmp_path_factory.mktemp("vs-nginx")
    files = build_site(tmp / "site")
    stops = []
    try:
        (tmp / "upstream").mkdir()
        upstream = Server(tmp / "upstream", "upstream_app:app", ["-w", "1"], env={"UPSTREAM_NAME": "a"},
                          cwd=APPS)
        stops.append(upstream.stop)
        upstream.wait_ready()
        values = {"upstream": upstream_address(upstream), "site": tmp / "site"}
        nginx = Nginx(tmp / "nginx", NGINX_CONFIG, **values)
        stops.append(nginx.stop)
        nginx.start()
        (tmp / "wsgistack").mkdir()
        toml = WSGISTACK_CONFIG
        for key, value in values.items():
            toml = toml.replace("{" + key + "}", str(value))
        proxy = Proxy(tmp / "wsgistack", toml, [])
        stops.append(proxy.stop)
        proxy.wait_ready()
        yield Fronts(nginx, proxy, files)
    finally:
        for stop in reversed(stops):
            stop()


def pattern(size: int) -> bytes:
    """upstream_app.pattern(): bytes(range(256)) over and over."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


# --- proxied: the same answers --------------------------------------------------------------------------------

PROXIED = [
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/status/404"),
    ("GET", "/status/500"),
    ("GET", "/status/204"),
    ("GET", "/status/304"),
    ("GET", "/stream"),
    ("GET", "/big"),
    ("GET", "/big?size=0"),
    ("GET", "/headers-out"),
    ("GET", "/json"),
    ("GET", "/no-such-route"),
]


@pytest.mark.parametrize(("method", "target"), PROXIED, ids=[f"{m} {t}" for m, t in PROXIED])
def test_proxied_answers_are_the_same(fronts, method, target):
    by_nginx, by_wsgistack = fronts.both(method, target)

    assert by_wsgistack.view() == by_nginx.view()


def test_big_and_stream_bodies_are_the_upstreams_bytes(fronts):
    for target in ("/big", "/stream"):
        for answer in fronts.both("GET", target):
            assert answer.body == pattern(MIB), target
    big = fronts.both("GET", "/big")
    assert [answer.get("content-length") for answer in big] == [str(MIB)] * 2


def test_a_streamed_answer_stays_chunked_on_both(fronts):
    by_nginx, by_wsgistack = fronts.both("GET", "/stream?size=300000")

    assert by_nginx.get("transfer-encoding") == by_wsgistack.get("transfer-encoding") == "chunked"
    assert by_nginx.get("content-length") is by_wsgistack.get("content-length") is None
    assert by_nginx.body == by_wsgistack.body == pattern(300000)


def test_both_cookies_stay_two_fields_with_the_custom_headers(fronts):
    for answer in fronts.both("GET", "/headers-out"):
        assert answer.all("set-cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
        assert answer.all("x-custom") == ["1"]
        assert answer.all("cache-control") == ["public, max-age=60"]


def test_the_app_sees_the_same_request(fronts):
    by_nginx, by_wsgistack = fronts.both("GET", "/echo?x=1&y=2")
    seen_by_nginx, seen_by_wsgistack = json.loads(by_nginx.body), json.loads(by_wsgistack.body)

    def request_of(seen: dict) -> tuple:
        return seen["method"], seen["path"], seen["query"], seen["headers"].get("Host"), seen["body_length"]

    assert request_of(seen_by_wsgistack) == request_of(seen_by_nginx) == ("GET", "/echo", "x=1&y=2", HOST, 0)
    assert seen_by_nginx["headers"].get("X-Forwarded-For") == "127.0.0.1"
    assert seen_by_wsgistack["headers"].get("X-Forwarded-For") == "127.0.0.1"


QUERIES = [
    "q=a%20b%2Fc&u=%E2%9C%93&p=1+2",
    "eq=%3D%26%3F%23&empty=&flag",
    "path=/a/b?c=d",
    "odd=%zz%2",
    "semi=a;b,c",
]


@pytest.mark.parametrize("query", QUERIES)
def test_an_encoded_query_reaches_the_app_unchanged(fronts, query):
    for answer in fronts.both("GET", f"/echo?{query}"):
        assert answer.status == 200
        assert json.loads(answer.body)["query"] == query


def test_a_1mib_upload_reaches_the_app_whole_through_both(fronts):
    data = os.urandom(MIB)
    expected = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    by_nginx, by_wsgistack = fronts.both("POST", "/upload", {"Content-Type": "application/octet-stream"}, data)

    assert (by_nginx.status, json.loads(by_nginx.body)) == (200, expected)
    assert (by_wsgistack.status, json.loads(by_wsgistack.body)) == (200, expected)
    assert by_wsgistack.view(body=False) == by_nginx.view(body=False)


def test_a_body_of_exactly_the_limit_passes_both(fronts):
    data = pattern(10 * MIB)

    for answer in fronts.both("POST", "/upload", body=data):
        assert answer.status == 200
        assert json.loads(answer.body)["length"] == 10 * MIB


def chunked(data: bytes, piece: int = 65536) -> bytes:
    """`data` in Transfer-Encoding: chunked framing."""
    chunks = [data[start:start + piece] for start in range(0, len(data), piece)]
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize("how", ["announced", "sent", "chunked"])
def test_a_body_one_byte_over_the_limit_is_413_on_both(fronts, how):
    size = 10 * MIB + 1
    if how == "chunked":
        headers, body = {"Transfer-Encoding": "chunked"}, chunked(pattern(size))
    else:
        headers, body = {"Content-Length": str(size)}, (pattern(size) if how == "sent" else b"")

    statuses = [answer.status for answer in fronts.both("POST", "/upload", headers, body)]

    assert statuses == [413, 413]


# --- static: the same answers ---------------------------------------------------------------------------------

def etag_of(data: bytes) -> str:
    """nginx's ETag: mtime and size in hex."""
    return f'"{MTIME:x}-{len(data):x}"'


LAST_MODIFIED = formatdate(MTIME, usegmt=True)
BEFORE = formatdate(MTIME - 3600, usegmt=True)
AFTER = formatdate(MTIME + 3600, usegmt=True)

STATIC = [
    ("GET", "/static/hello.txt", {}),
    ("HEAD", "/static/hello.txt", {}),
    ("GET", "/static/data.bin", {}),
    ("GET", "/static/page.html", {}),
    ("GET", "/static/sub/", {}),
    ("GET", "/static/sub/index.html", {}),
    ("GET", "/static/style.css", {}),
    ("GET", "/static/style.css", {"Accept-Encoding": "gzip"}),
    ("GET", "/static/style.css", {"Accept-Encoding": "gzip, deflate, br"}),
    ("HEAD", "/static/style.css", {"Accept-Encoding": "gzip"}),
    ("GET", "/static/style.css", {"Accept-Encoding": "gzip;q=0"}),
    ("GET", "/static/data.bin", {"Range": "bytes=0-9"}),
    ("GET", "/static/data.bin", {"Range": "bytes=-5"}),
    ("GET", "/static/data.bin", {"Range": "bytes=3000-"}),
    ("GET", "/static/data.bin", {"Range": "bytes=100-99999"}),
    ("GET", "/static/hello.txt", {"If-None-Match": etag_of(b"hello static\n")}),
    ("GET", "/static/hello.txt", {"If-None-Match": "W/" + etag_of(b"hello static\n")}),
    ("GET", "/static/hello.txt", {"If-None-Match": '"other", ' + etag_of(b"hello static\n")}),
    ("GET", "/static/hello.txt", {"If-None-Match": '"other"'}),
    ("GET", "/static/hello.txt", {"If-Modified-Since": LAST_MODIFIED}),
    ("GET", "/static/hello.txt", {"If-Modified-Since": AFTER}),
    ("GET", "/static/hello.txt", {"If-Modified-Since": BEFORE}),
    ("GET", "/static/style.css", {"If-None-Match": etag_of(b"body { color: #333; }\n" * 200)}),
    ("GET", "/static/data.bin", {"Range": "bytes=0-9", "If-Range": '"stale-tag"'}),
]


@pytest.mark.parametrize(("method", "target", "headers"), STATIC,
                         ids=[f"{m} {t} {h}" for m, t, h in STATIC])
def test_static_answers_are_the_same(fronts, method, target, headers):
    by_nginx, by_wsgistack = fronts.both(method, target, headers)

    assert by_wsgistack.view() == by_nginx.view()


def test_static_validators_are_nginx_s_format(fronts):
    data = fronts.files["/static/data.bin"]

    for answer in fronts.both("GET", "/static/data.bin"):
        assert (answer.status, answer.body) == (200, data)
        assert answer.get("etag") == etag_of(data)
        assert answer.get("last-modified") == LAST_MODIFIED
        assert answer.get("content-length") == str(len(data))
        assert answer.get("cache-control") == CACHE_CONTROL


def test_a_range_request_gets_the_same_slice(fronts):
    data = fronts.files["/static/data.bin"]
    cases = {"bytes=0-9": (data[:10], f"bytes 0-9/{len(data)}"),
             "bytes=-5": (data[-5:], f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}"),
             f"bytes={len(data) - 3}-": (data[-3:], f"bytes {len(data) - 3}-{len(data) - 1}/{len(data)}")}

    for header, (part, content_range) in cases.items():
        for answer in fronts.both("GET", "/static/data.bin", {"Range": header}):
            assert (answer.status, answer.body, answer.get("content-range")) == (206, part, content_range), header
            assert answer.get("content-length") == str(len(part))


def test_a_range_past_the_end_is_416_with_the_size_on_both(fronts):
    size = len(fronts.files["/static/data.bin"])

    for answer in fronts.both("GET", "/static/data.bin", {"Range": f"bytes={size}-"}):
        assert (answer.status, answer.get("content-range")) == (416, f"bytes */{size}")


def test_the_gz_sibling_is_sent_as_is_to_a_gzip_client(fronts):
    gz = fronts.files["/static/style.css.gz"]

    for answer in fronts.both("GET", "/static/style.css", {"Accept-Encoding": "gzip"}):
        assert answer.status == 200
        assert answer.get("content-encoding") == "gzip"
        assert answer.body == gz
        assert answer.get("content-length") == str(len(gz))
        assert answer.get("etag") == etag_of(gz)
        assert answer.get("vary") == "Accept-Encoding"
        assert answer.get("content-type") == "text/css; charset=utf-8"


def test_an_if_range_with_the_current_tag_gets_the_range(fronts):
    data = fronts.files["/static/data.bin"]

    for answer in fronts.both("GET", "/static/data.bin", {"Range": "bytes=0-9", "If-Range": etag_of(data)}):
        assert (answer.status, answer.body) == (206, data[:10])


HELLO_ETAG = etag_of(b"hello static\n")
PRECONDITIONS = [
    ({"If-Match": HELLO_ETAG}, 200),
    ({"If-Match": "*"}, 200),
    ({"If-Match": '"nope"'}, 412),
    ({"If-Unmodified-Since": LAST_MODIFIED}, 200),
    ({"If-Unmodified-Since": BEFORE}, 412),
]


@pytest.mark.parametrize(("headers", "status"), PRECONDITIONS, ids=[str(h) for h, _ in PRECONDITIONS])
def test_if_match_and_if_unmodified_since_are_evaluated_on_both(fronts, headers, status):
    # RFC 9110 13.1.1 and 13.1.4: an origin server MUST evaluate these before performing the method;
    # nginx does (412 when they fail), and docs/proxy.md lists no difference here
    by_nginx, by_wsgistack = fronts.both("GET", "/static/hello.txt", headers)

    assert by_nginx.status == status
    assert by_wsgistack.status == by_nginx.status


@pytest.mark.parametrize("target", ["/static/missing.txt", "/static/sub/missing/", "/static/hello.txt/",
                                    "/static/emptydir/"])
def test_static_refusals_have_the_same_status(fronts, target):
    by_nginx, by_wsgistack = fronts.both("GET", target)

    assert by_wsgistack.status == by_nginx.status
    assert 400 <= by_nginx.status < 500


# --- documented differences: asserted as documented -----------------------------------------------------------

TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/./../secret.txt",
    "/static//../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/%2e%2e/site/secret.txt",
    "/static/leak.txt",
    "/static/leakdir/secret.txt",
]
DOTFILES = ["/static/.env", "/static/%2eenv", "/static/.git/config", "/static/sub/../.env"]


@pytest.mark.parametrize("target", TRAVERSALS + DOTFILES)
def test_neither_front_leaks_what_is_outside_the_root_or_hidden(fronts, target):
    by_nginx, by_wsgistack = fronts.both("GET", target)

    assert SECRET not in by_nginx.body and SECRET not in by_wsgistack.body
    # nginx: 400/403/404, except where it normalised the path out of /static/ and proxied the raw URI, so the
    # upstream answers for itself (Flask's 308 that merges the slashes of '/static//../secret.txt')
    assert by_nginx.status >= 300, by_nginx
    # docs/proxy.md: 404 rather than 403; a path that climbs above the root is a 400 in both
    assert by_wsgistack.status == (400 if by_nginx.status == 400 else 404), by_wsgistack


def test_a_directory_without_its_slash_is_301_in_nginx_and_403_in_wsgistack(fronts):
    by_nginx, by_wsgistack = fronts.both("GET", "/static/sub")

    assert by_nginx.status == 301
    assert by_nginx.get("location").endswith("/static/sub/")
    assert by_wsgistack.status == 403
    assert by_wsgistack.get("location") is None


def test_several_ranges_are_multipart_in_nginx_and_the_whole_file_in_wsgistack(fronts):
    # docs/proxy.md: "A single Range answered by 206"; RFC 9110 lets a server ignore the others
    by_nginx, by_wsgistack = fronts.both("GET", "/static/hello.txt", {"Range": "bytes=0-1,5-6"})

    assert by_nginx.status == 206
    assert by_nginx.get("content-type").startswith("multipart/byteranges")
    assert (by_wsgistack.status, by_wsgistack.body) == (200, b"hello static\n")
