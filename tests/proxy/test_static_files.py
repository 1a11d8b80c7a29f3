"""proxy/static.py: which file, which range and which headers StaticFiles answers, on real files under tmp_path."""

from __future__ import annotations

import errno
import gzip
import os
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsgistack.proxy.static import StaticFiles, StaticReply

MTIME = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
HELLO = b"hello world\n"
HELLO_ETAG = '"2ebc98a1-c"'  # nginx's "%x-%x" of (mtime, size)
GZ_MTIME = MTIME + 60
TEXT = "text/plain; charset=utf-8"


def build_site(base: Path) -> Path:
    """A root with files, directories, dotfiles, symlinks in and out, and a .gz sibling; a secret beside it."""
    site = base / "site"
    (site / "css").mkdir(parents=True)
    (site / "docs").mkdir()
    (site / "blog").mkdir()
    (site / ".git").mkdir()
    files = {
        "hello.txt": HELLO,
        "index.html": b"<h1>home</h1>",
        "css/a b.css": b"body {}",
        "docs/readme.txt": b"read me",
        "blog/index.html": b"<h1>blog</h1>",
        ".env": b"SECRET=1",
        ".git/config": b"[core]",
        "data.bin": bytes(range(100)),
        "empty.txt": b"",
        "\u00e9t\u00e9.txt": b"summer",
        "app.js": b"console.log('hi');" * 20,
        "plain.js": b"var a;",
    }
    for name, data in files.items():
        (site / name).write_bytes(data)
    (site / "app.js.gz").write_bytes(gzip.compress((site / "app.js").read_bytes()))
    (base / "secret.txt").write_bytes(b"top secret")
    (site / "leak.txt").symlink_to(base / "secret.txt")
    (site / "leakdir").symlink_to(base)
    (site / "alias.txt").symlink_to("hello.txt")
    for path in [*site.rglob("*"), base / "secret.txt"]:
        if not path.is_symlink():
            os.utime(path, (MTIME, MTIME))
    os.utime(site / "app.js.gz", (GZ_MTIME, GZ_MTIME))
    return site


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return build_site(tmp_path)


@pytest.fixture
def static(site: Path) -> StaticFiles:
    return StaticFiles(site)


def header(reply: StaticReply, name: str) -> str | None:
    """The value of a response header (names compared case-insensitively), None when absent."""
    values = [value for key, value in reply.headers if key.lower() == name.lower()]
    assert len(values) <= 1, reply.headers
    return values[0] if values else None


def get(static: StaticFiles, path: str, method: str = "GET", **fields: str) -> StaticReply:
    """reply() with request headers given as keyword arguments (if_none_match -> If-None-Match)."""
    headers = [(name.replace("_", "-"), value) for name, value in fields.items()]
    return static.reply(method, path, headers)


def assert_refused(reply: StaticReply, status: int) -> None:
    assert reply.status == status
    assert reply.path is None and reply.length == 0
    assert header(reply, "Content-Type") == TEXT
    assert header(reply, "Content-Length") == str(len(reply.body))
    assert reply.body.startswith(str(status).encode())


# --- a plain file -------------------------------------------------------------------------------------------

def test_file_is_served_with_its_headers(static: StaticFiles, site: Path) -> None:
    reply = get(static, "hello.txt")
    assert (reply.status, reply.path, reply.offset, reply.length, reply.body) == (
        200, os.path.realpath(site / "hello.txt"), 0, len(HELLO), b"")
    assert reply.headers == [("Content-Type", TEXT), ("Content-Length", "12"), ("Last-Modified", DATE),
                             ("ETag", HELLO_ETAG), ("Accept-Ranges", "bytes")]


def test_cache_control_is_added_when_configured(site: Path) -> None:
    reply = get(StaticFiles(site, cache_control="public, max-age=3600"), "hello.txt")
    assert header(reply, "Cache-Control") == "public, max-age=3600"


def test_path_is_percent_decoded(static: StaticFiles, site: Path) -> None:
    reply = get(static, "css/a%20b.css")
    assert reply.path == os.path.realpath(site / "css/a b.css")
    assert header(reply, "Content-Type") == "text/css; charset=utf-8"


def test_utf8_names_are_decoded(static: StaticFiles) -> None:
    assert get(static, "%C3%A9t%C3%A9.txt").status == 200


@pytest.mark.parametrize("path", ["%ff.txt", "%C3.txt", "\udcff.txt"])
def test_undecodable_path_is_400(static: StaticFiles, path: str) -> None:
    assert_refused(get(static, path), 400)


def test_repeated_slashes_are_merged_and_stay_under_the_root(static: StaticFiles, site: Path) -> None:
    assert get(static, "//hello.txt").path == os.path.realpath(site / "hello.txt")
    assert get(static, "css//a%20b.css").status == 200


@pytest.mark.parametrize(("name", "content_type"), [
    ("a.js", "application/javascript; charset=utf-8"),
    ("a.json", "application/json; charset=utf-8"),
    ("a.html", "text/html; charset=utf-8"),
    ("A.HTML", "text/html; charset=utf-8"),
    ("a.png", "image/png"),
    ("a.svg", "image/svg+xml"),
    ("a.woff2", "font/woff2"),
    ("a.tar.gz", "application/gzip"),
    ("a.unknownext", "application/octet-stream"),
    ("Makefile", "application/octet-stream"),
])
def test_content_type_from_extension(tmp_path: Path, name: str, content_type: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    assert header(get(StaticFiles(tmp_path), name), "Content-Type") == content_type


def test_missing_file_is_404(static: StaticFiles) -> None:
    assert_refused(get(static, "nope.txt"), 404)
    assert_refused(get(static, "no/such/dir.txt"), 404)
    assert_refused(get(static, "hello.txt/more"), 404)


def test_file_asked_as_a_directory_is_404(static: StaticFiles) -> None:
    assert_refused(get(static, "hello.txt/"), 404)


def test_missing_root_is_404(tmp_path: Path) -> None:
    assert_refused(get(StaticFiles(tmp_path / "absent"), "hello.txt"), 404)


def test_root_given_through_a_symlink_works(site: Path, tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to(site)
    assert get(StaticFiles(tmp_path / "current"), "hello.txt").path == os.path.realpath(site / "hello.txt")


def test_fifo_is_404_and_does_not_block(static: StaticFiles, site: Path) -> None:
    os.mkfifo(site / "pipe.txt")
    assert_refused(get(static, "pipe.txt"), 404)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_403(static: StaticFiles, site: Path) -> None:
    (site / "hello.txt").chmod(0)
    assert_refused(get(static, "hello.txt"), 403)


def test_permission_error_on_open_is_403(static: StaticFiles, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open, locked = os.open, os.path.realpath(site / "hello.txt")

    def denying_open(path: str, *args: object, **kwargs: object) -> int:
        if path == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying_open)
    assert_refused(get(static, "hello.txt"), 403)


# --- methods ------------------------------------------------------------------------------------------------

def test_head_has_the_headers_of_get_and_no_body(static: StaticFiles) -> None:
    head, full = get(static, "hello.txt", "HEAD"), get(static, "hello.txt")
    assert (head.status, head.headers) == (full.status, full.headers)
    assert (head.path, head.offset, head.length, head.body) == (None, 0, 0, b"")


def test_head_of_a_missing_file_keeps_content_length_but_no_body(static: StaticFiles) -> None:
    head, full = get(static, "nope", "HEAD"), get(static, "nope")
    assert (head.status, head.headers, head.body) == (404, full.headers, b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"])
def test_other_methods_are_405(static: StaticFiles, method: str) -> None:
    reply = get(static, "hello.txt", method)
    assert_refused(reply, 405)
    assert header(reply, "Allow") == "GET, HEAD"


# --- never outside the root ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "../secret.txt", "%2e%2e/secret.txt", "%2E%2E/secret.txt", "%2E%2E%2Fsecret.txt", "..%2fsecret.txt",
    ".%2e/secret.txt", "a/../../secret.txt", "css/../../secret.txt", "css/%2e%2e/%2e%2e/secret.txt", "..",
    "%2e%2e", "css/..", "css/%2e%2e/", "./hello.txt", "css/./a%20b.css", "%2e/hello.txt",
    "hello.txt%00", "hello.txt%00.png", "%00", "..\\secret.txt", "..%5csecret.txt", "css\\a b.css",
    "%2e%2e%5csecret.txt", "//etc/passwd", "%2Fetc%2Fpasswd", "/../secret.txt", "../../../../../etc/passwd",
])
def test_traversal_is_refused(static: StaticFiles, path: str) -> None:
    assert_refused(get(static, path), 404)


@pytest.mark.parametrize("path", [".env", ".git/config", ".git/", ".git", "%2eenv", "%2Egit%2Fconfig",
                                  "css/.hidden", ".well-known/x"])
def test_dotfiles_are_404_like_missing_files(static: StaticFiles, path: str) -> None:
    reply = get(static, path)
    assert_refused(reply, 404)
    assert reply.body == get(static, "no-such-file").body  # existence is not revealed


def test_symlink_out_of_the_root_is_404(static: StaticFiles) -> None:
    assert_refused(get(static, "leak.txt"), 404)
    assert_refused(get(static, "leakdir/secret.txt"), 404)


def test_symlink_that_leads_back_inside_is_judged_by_its_target(static: StaticFiles, site: Path) -> None:
    assert get(static, "leakdir/site/hello.txt").path == os.path.realpath(site / "hello.txt")


def test_symlink_inside_the_root_is_served(static: StaticFiles, site: Path) -> None:
    reply = get(static, "alias.txt")
    assert reply.status == 200
    assert reply.path == os.path.realpath(site / "hello.txt")
    assert header(reply, "ETag") == HELLO_ETAG


# --- directories ----------------------------------------------------------------------------------------------

def test_root_serves_its_index(static: StaticFiles, site: Path) -> None:
    for path in ("", "/"):
        reply = get(static, path)
        assert reply.status == 200 and reply.path == os.path.realpath(site / "index.html")
        assert header(reply, "Content-Type") == "text/html; charset=utf-8"


def test_directory_with_index_and_slash_serves_the_index(static: StaticFiles, site: Path) -> None:
    assert get(static, "blog/").path == os.path.realpath(site / "blog/index.html")


def test_directory_without_index_is_403_and_never_listed(static: StaticFiles) -> None:
    reply = get(static, "docs/")
    assert_refused(reply, 403)
    assert b"Directory listing is not allowed" in reply.body and b"readme" not in reply.body


def test_directory_without_trailing_slash_is_403(static: StaticFiles) -> None:
    assert_refused(get(static, "blog"), 403)


def test_custom_index_name_and_disabled_index(site: Path) -> None:
    (site / "docs/default.htm").write_bytes(b"d")
    assert get(StaticFiles(site, index="default.htm"), "docs/").status == 200
    assert_refused(get(StaticFiles(site, index=""), "blog/"), 403)


def test_index_that_is_a_directory_or_leaves_the_root_is_403(site: Path, tmp_path: Path) -> None:
    (site / "docs/index.html").mkdir()
    (site / "css/index.html").symlink_to(tmp_path / "secret.txt")
    assert_refused(get(StaticFiles(site), "docs/"), 403)
    assert_refused(get(StaticFiles(site), "css/"), 403)


# --- conditional requests -----------------------------------------------------------------------------------

def test_if_none_match_304_has_validators_only(site: Path) -> None:
    reply = get(StaticFiles(site, cache_control="no-cache"), "hello.txt", if_none_match=HELLO_ETAG)
    assert (reply.status, reply.path, reply.length, reply.body) == (304, None, 0, b"")
    assert reply.headers == [("Last-Modified", DATE), ("ETag", HELLO_ETAG), ("Cache-Control", "no-cache")]


@pytest.mark.parametrize("value", [HELLO_ETAG, f'"abc", {HELLO_ETAG}', "*", f"W/{HELLO_ETAG}",
                                   f' "x" , W/{HELLO_ETAG} '])
def test_if_none_match_matching_is_304(static: StaticFiles, value: str) -> None:
    assert get(static, "hello.txt", if_none_match=value).status == 304


def test_if_none_match_other_tag_is_200_even_if_date_would_match(static: StaticFiles) -> None:
    assert get(static, "hello.txt", if_none_match='"2ebc98a1-d"', if_modified_since=DATE).status == 200


@pytest.mark.parametrize(("value", "status"), [
    (DATE, 304),
    ("Sun, 06 Nov 1994 08:49:38 GMT", 304),
    ("Sunday, 06-Nov-94 08:49:37 GMT", 304),  # RFC 850, still to be accepted
    ("Sun, 06 Nov 1994 08:49:36 GMT", 200),
    ("yesterday", 200),
    ("", 200),
])
def test_if_modified_since(static: StaticFiles, value: str, status: int) -> None:
    assert get(static, "hello.txt", if_modified_since=value).status == status


def test_if_modified_since_compares_whole_seconds(static: StaticFiles, site: Path) -> None:
    os.utime(site / "hello.txt", ns=(MTIME * 10**9 + 900_000_000,) * 2)
    assert get(static, "hello.txt", if_modified_since=DATE).status == 304


def test_not_modified_wins_over_range_and_applies_to_head(static: StaticFiles) -> None:
    assert get(static, "data.bin", range="bytes=0-1", if_modified_since=DATE).status == 304
    assert get(static, "hello.txt", "HEAD", if_none_match=HELLO_ETAG).status == 304


# --- ranges --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "offset", "length"), [
    ("bytes=0-9", 0, 10),
    ("bytes=90-", 90, 10),
    ("bytes=-5", 95, 5),
    ("bytes=-500", 0, 100),
    ("bytes=50-1000", 50, 50),
    ("bytes=99-99", 99, 1),
    ("Bytes=0-0", 0, 1),
    ("bytes = 10 - 19", 10, 10),
])
def test_satisfiable_range_is_206(static: StaticFiles, value: str, offset: int, length: int) -> None:
    reply = get(static, "data.bin", range=value)
    assert (reply.status, reply.offset, reply.length) == (206, offset, length)
    assert header(reply, "Content-Range") == f"bytes {offset}-{offset + length - 1}/100"
    assert header(reply, "Content-Length") == str(length)


@pytest.mark.parametrize("value", ["bytes=100-", "bytes=200-300", "bytes=-0", "bytes=100-100"])
def test_unsatisfiable_range_is_416(static: StaticFiles, value: str) -> None:
    reply = get(static, "data.bin", range=value)
    assert_refused(reply, 416)
    assert header(reply, "Content-Range") == "bytes */100"


@pytest.mark.parametrize("value", ["bytes=0-1,5-6", "bytes=0-1, 50-", "bytes=5-1", "bytes=abc", "items=0-1",
                                   "bytes=-", "bytes=", "bytes=0-1-2", "bytes=\u00b2-3", "bytes=1.5-2", ""])
def test_multiple_or_invalid_range_is_ignored(static: StaticFiles, value: str) -> None:
    reply = get(static, "data.bin", range=value)
    assert (reply.status, reply.offset, reply.length) == (200, 0, 100)
    assert header(reply, "Content-Range") is None


def test_range_is_ignored_for_head_and_empty_files(static: StaticFiles) -> None:
    assert get(static, "data.bin", "HEAD", range="bytes=0-9").status == 200
    assert get(static, "empty.txt", range="bytes=-5").status == 200
    assert get(static, "empty.txt", range="bytes=0-").status == 200


@pytest.mark.parametrize(("if_range", "status"), [
    ('"2ebc98a1-64"', 206),  # data.bin: 100 bytes
    ('"2ebc98a1-65"', 200),
    ('W/"2ebc98a1-64"', 200),  # If-Range needs a strong match
    (DATE, 206),
    ("Sun, 06 Nov 1994 08:49:38 GMT", 200),
    ("not a date", 200),
])
def test_if_range(static: StaticFiles, if_range: str, status: int) -> None:
    reply = get(static, "data.bin", range="bytes=0-9", if_range=if_range)
    assert (reply.status, reply.length) == (status, 10 if status == 206 else 100)


# --- precompressed .gz siblings ------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "GZIP", "deflate,gzip"])
def test_gz_sibling_is_served_when_gzip_is_accepted(static: StaticFiles, site: Path, accept: str) -> None:
    reply = get(static, "app.js", accept_encoding=accept)
    gz = site / "app.js.gz"
    assert (reply.status, reply.path, reply.length) == (200, os.path.realpath(gz), gz.stat().st_size)
    assert header(reply, "Content-Encoding") == "gzip"
    assert header(reply, "Content-Type") == "application/javascript; charset=utf-8"
    assert header(reply, "Content-Length") == str(gz.stat().st_size)
    assert header(reply, "ETag") == f'"{GZ_MTIME:x}-{gz.stat().st_size:x}"'
    assert header(reply, "Last-Modified") == "Sun, 06 Nov 1994 08:50:37 GMT"
    assert header(reply, "Vary") == "Accept-Encoding"


@pytest.mark.parametrize("fields", [{}, {"accept_encoding": "gzip;q=0"}, {"accept_encoding": "gzip; q=0.000"},
                                    {"accept_encoding": "deflate, br"}, {"accept_encoding": "gzip;q=nope"},
                                    {"accept_encoding": "x-gzip"}])
def test_gz_sibling_unused_still_varies(static: StaticFiles, site: Path, fields: dict[str, str]) -> None:
    reply = get(static, "app.js", **fields)
    assert reply.path == os.path.realpath(site / "app.js")
    assert header(reply, "Content-Encoding") is None
    assert header(reply, "Vary") == "Accept-Encoding"


def test_range_request_gets_the_original_not_the_gz(static: StaticFiles, site: Path) -> None:
    reply = get(static, "app.js", accept_encoding="gzip", range="bytes=0-3")
    assert (reply.status, reply.path, reply.length) == (206, os.path.realpath(site / "app.js"), 4)
    assert header(reply, "Content-Encoding") is None and header(reply, "Vary") == "Accept-Encoding"


def test_no_vary_without_a_usable_sibling(static: StaticFiles, site: Path, tmp_path: Path) -> None:
    assert header(get(static, "plain.js", accept_encoding="gzip"), "Vary") is None
    (site / "hello.txt.gz").mkdir()
    (site / "data.bin.gz").symlink_to(tmp_path / "secret.txt")
    for path in ("hello.txt", "data.bin"):
        reply = get(static, path, accept_encoding="gzip")
        assert header(reply, "Vary") is None and header(reply, "Content-Encoding") is None


def test_gz_file_asked_for_directly_is_plain_gzip(static: StaticFiles) -> None:
    reply = get(static, "app.js.gz", accept_encoding="gzip")
    assert header(reply, "Content-Type") == "application/gzip" and header(reply, "Content-Encoding") is None


def test_gz_sibling_validators_drive_304(static: StaticFiles, site: Path) -> None:
    etag = f'"{GZ_MTIME:x}-{(site / "app.js.gz").stat().st_size:x}"'
    reply = get(static, "app.js", accept_encoding="gzip", if_none_match=etag)
    assert reply.status == 304 and header(reply, "Vary") == "Accept-Encoding"
    assert get(static, "app.js", if_none_match=etag).status == 200  # another representation


# --- request headers ------------------------------------------------------------------------------------------

def test_header_names_are_case_insensitive_in_lists_and_mappings(static: StaticFiles) -> None:
    assert static.reply("GET", "data.bin", [("RANGE", "bytes=0-0")]).status == 206
    assert static.reply("GET", "hello.txt", {"If-None-Match": HELLO_ETAG}).status == 304
    assert static.reply("GET", "hello.txt", {"iF-nOnE-mAtCh": HELLO_ETAG}).status == 304


def test_repeated_range_headers_count_as_several_ranges(static: StaticFiles) -> None:
    assert static.reply("GET", "data.bin", [("Range", "bytes=0-1"), ("Range", "bytes=5-6")]).status == 200


# Issue 10 item 1: the old regex backtracked in cubic time on this shape (N = 600 held the loop for ~2 s).
@pytest.mark.parametrize("shape", [
    "bytes=" + " " * N + "-" + " " * N + "!" for N in (600, 4000)
] + [
    "bytes=" + " " * 8000 + "-!",
    "bytes" + " " * 8000 + "=0-1!",
    "bytes=" + "1" * 4000 + " " * 4000 + "!",
    "bytes=" + "-" * 8100,
])
def test_a_pathological_range_is_parsed_in_linear_time(static: StaticFiles, shape: str) -> None:
    assert len("Range") + len(shape) <= 8190  # within the default field limit, so it reaches the parser
    started = time.perf_counter()
    reply = get(static, "data.bin", range=shape)
    elapsed = time.perf_counter() - started
    assert (reply.status, reply.length) == (200, 100)  # not one valid range: ignored (RFC 9110 14.2)
    assert elapsed < 0.05, f"{elapsed:.3f} s for a {len(shape)}-byte Range"


@pytest.mark.parametrize(("value", "status", "offset", "length"), [
    ("bytes=" + "9" * 5000 + "-", 416, 0, 0),  # int() alone refuses more than 4,300 digits
    ("bytes=0-" + "9" * 5000, 206, 0, 100),
    ("bytes=-" + "9" * 5000, 206, 0, 100),
    ("bytes=" + "0" * 5000 + "5-" + "0" * 3000 + "9", 206, 5, 5),
    ("bytes=\t10-19\t", 206, 10, 10),
])
def test_long_range_positions_are_read_without_error(static: StaticFiles, value: str, status: int,
                                                     offset: int, length: int) -> None:
    reply = get(static, "data.bin", range=value)
    assert reply.status == status
    if status == 206:
        assert (reply.offset, reply.length) == (offset, length)


# --- property: whatever the path, no exception and nothing outside the root ----------------------------------

@pytest.fixture(scope="module")
def shared_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("property"))


FRAGMENTS = st.sampled_from(["/", "..", ".", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%", "%ff", "%C3%A9",
                             "leak.txt", "leakdir", "site", "secret.txt", "hello.txt", "css", "blog", ".env",
                             "index.html", "a b", "%20", "~", ":", "\u00e9", "\udcff"])


# Directories then a leaf, so the escape routes of build_site (leak.txt, leakdir/...) come up often.
WALKS = st.builds(lambda steps, leaf: "/".join([*steps, leaf]),
                  st.lists(st.sampled_from(["..", "%2e%2e", ".", "", "leakdir", "site", "css", "blog", "%2F"]),
                           max_size=4),
                  st.sampled_from(["leak.txt", "secret.txt", "hello.txt", "index.html", "", "app.js"]))


@settings(max_examples=400, deadline=None)
@given(path=st.one_of(st.text(), st.lists(FRAGMENTS, max_size=12).map("".join), WALKS),
       method=st.sampled_from(["GET", "HEAD"]))
@example(path="leak.txt", method="GET")
@example(path="leakdir/secret.txt", method="GET")
@example(path="%2e%2e/secret.txt", method="GET")
def test_any_path_never_raises_and_never_leaves_the_root(shared_site: Path, path: str, method: str) -> None:
    root = os.path.realpath(shared_site)
    reply = StaticFiles(shared_site).reply(method, path, {"Accept-Encoding": "gzip"})
    assert reply.status in (200, 400, 403, 404)
    if reply.path is not None:
        assert reply.path.startswith(root + os.sep) and os.path.isfile(reply.path)
        assert os.path.realpath(reply.path) == reply.path


def test_running_out_of_file_descriptors_is_503_not_404(static: StaticFiles, monkeypatch) -> None:
    def no_descriptor(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "open", no_descriptor)
    reply = get(static, "hello.txt")
    assert reply.status == 503  # the file exists: 404 would be a lie a cache could keep
    monkeypatch.undo()
    assert get(static, "hello.txt").status == 200  # nothing wrong was remembered
