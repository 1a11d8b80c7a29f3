"""http/target.py: request-target forms, Host values and the normalised path, as pure functions.

Table cases for the rules (RFC 9112 §3.2, RFC 3986, nginx's location matching), then properties: the
normalised path is a fixed point, agrees with an independent RFC 3986 §5.2.4 implementation, and survives
encode_path -> decode exactly, which is what lets the proxy forward a path the app decodes back to the one
it routed on.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgistack.http.errors import HTTPError
from wsgistack.http.target import Target, check_host, encode_path, normalize_path, split_target

# -- Host values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "a", "example.com", "example.com:80", "example.com:", "EXAMPLE.COM:08080", "127.0.0.1", "1.2.3.4:65535",
    "[::1]", "[::1]:1", "[2001:db8::8:800:200c:417a]", "[::ffff:1.2.3.4]", "[v7.a:b]", "a_b.example",
    "a~b", "a!$&'()*+;=b", "%41%42", "xn--nxasmq6b.example", "-", "a..b",
])
def test_valid_hosts(value):
    check_host(value)


@pytest.mark.parametrize("value", [
    "", ":", ":80", "a b", "a\tb", "a, b", "a,b", "u@h", "u:p@h", "@h", "x/x", "/", "h?", "h#", "h\\",
    'h"', "h<", "h>", "h{", "h|", "h^", "h`", "h%", "h%4", "h%zz", "h:x", "h:1a", "h:-1", "h:65536",
    "h:100000", "h:1:2", "[::1", "::1]", "::1", "[]", "[::1]]", "[[::1]]", "[::g]", "[1.2.3.4]",
    "[fe80::1%25eth0]", "[fe80::1%eth0]", "[::1]:x", "[::1]a", "[v1]", "[v.x]", "\u00e9.example",
])
def test_invalid_hosts(value):
    with pytest.raises(HTTPError) as caught:
        check_host(value)
    assert caught.value.status == 400


_HOST_CHAR = st.sampled_from("abcxyzABC019-._~!$&'()*+;=")


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(name=st.text(_HOST_CHAR, min_size=1, max_size=30), port=st.none() | st.integers(0, 65535))
def test_any_reg_name_with_a_port_is_valid(name, port):
    check_host(name if port is None else f"{name}:{port}")


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(name=st.text(_HOST_CHAR, max_size=20), bad=st.sampled_from(' \t/?#@,\\"<>[]{}|^`\x7f'),
       rest=st.text(_HOST_CHAR, max_size=20))
def test_a_host_with_a_character_outside_the_grammar_is_invalid(name, bad, rest):
    with pytest.raises(HTTPError):
        check_host(name + bad + rest)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(address=st.ip_addresses(v=6), port=st.none() | st.integers(0, 65535))
def test_every_ipv6_literal_is_valid(address, port):
    literal = f"[{address}]"
    check_host(literal if port is None else f"{literal}:{port}")


# -- request-target forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("target, method, expected", [
    ("/", "GET", Target("origin", "/", "")),
    ("/a/b?x=1&y", "GET", Target("origin", "/a/b", "x=1&y")),
    ("/a?b?c", "GET", Target("origin", "/a", "b?c")),
    ("/a#frag", "GET", Target("origin", "/a", "")),
    ("/a?q#frag", "GET", Target("origin", "/a", "q")),
    ("//a//b", "GET", Target("origin", "//a//b", "")),
    ("/%2e%2e/x", "GET", Target("origin", "/%2e%2e/x", "")),
    ("*", "OPTIONS", Target("asterisk", "*", "")),
    ("http://h/p?q", "GET", Target("absolute", "/p", "q", "h")),
    ("https://h:8443/p", "POST", Target("absolute", "/p", "", "h:8443")),
    ("HTTP://H", "GET", Target("absolute", "/", "", "H")),
    ("http://h?q=1", "GET", Target("absolute", "/", "q=1", "h")),
    ("http://[::1]:81/a%20b", "GET", Target("absolute", "/a%20b", "", "[::1]:81")),
    ("http://h//x", "GET", Target("absolute", "//x", "", "h")),
])
def test_split_target(target, method, expected):
    assert split_target(target, method) == expected


@pytest.mark.parametrize("target, method", [
    ("*", "GET"), ("*", "HEAD"), ("*", "POST"), ("*", "options"), ("*x", "OPTIONS"), ("", "GET"),
    ("?x", "GET"), ("a/b", "GET"), ("example.com:80", "GET"), ("http:/x", "GET"), ("http//x", "GET"),
    ("ftp://h/x", "GET"), ("file:///etc/passwd", "GET"), ("http://u@h/x", "GET"), ("http://u:p@h/x", "GET"),
    ("http://@h/x", "GET"), ("http:///x", "GET"), ("http://h:99999/x", "GET"), ("http://h:x/", "GET"),
    ("http://a b/", "GET"), ("http://a,b/", "GET"), ("http://[::1/", "GET"),
])
def test_split_target_refuses(target, method):
    with pytest.raises(HTTPError) as caught:
        split_target(target, method)
    assert caught.value.status == 400


# -- the normalised path -------------------------------------------------------------------------------


@pytest.mark.parametrize("path, expected", [
    ("/", "/"),
    ("/a", "/a"),
    ("/a/", "/a/"),
    ("/a/b/c", "/a/b/c"),
    ("//", "/"),
    ("///a", "/a"),
    ("/a//b", "/a/b"),
    ("/a///b//", "/a/b/"),
    ("/.", "/"),
    ("/./", "/"),
    ("/./a", "/a"),
    ("/a/.", "/a/"),
    ("/a/./b", "/a/b"),
    ("/a/..", "/"),
    ("/a/../", "/"),
    ("/a/../b", "/b"),
    ("/a/b/..", "/a/"),
    ("/a/b/../c", "/a/c"),
    ("/a/b/../../c", "/c"),
    ("/a/./../b", "/b"),
    ("/a//../b", "/b"),  # slashes merged first, as nginx does
    ("/x/../admin/secret", "/admin/secret"),
    ("/.a", "/.a"),
    ("/a.", "/a."),
    ("/...", "/..."),
    ("/a/.../b", "/a/.../b"),
    ("/..a/b", "/..a/b"),
    ("/a..", "/a.."),
    ("/%61dmin/secret", "/admin/secret"),
    ("/%61%64%6D%69%6E/", "/admin/"),
    ("/admin%2fsecret", "/admin/secret"),
    ("/admin%2Fsecret", "/admin/secret"),
    ("/%2Fadmin", "/admin"),
    ("/%6cogin", "/login"),
    ("/login%2f", "/login/"),
    ("/a/%2e/b", "/a/b"),
    ("/a/%2e%2e/b", "/b"),
    ("/a/%2E%2E", "/"),
    ("/a/.%2e/b", "/b"),
    ("/a%2f..%2fb", "/b"),
    ("/a%20b", "/a b"),
    ("/caf%C3%A9", "/caf\xc3\xa9"),
    ("/%25", "/%"),
    ("/%252e%252e/x", "/%2e%2e/x"),  # decoded once only
    ("/%3F%23", "/?#"),
    ("/a+b", "/a+b"),
    ("/a;p=1/b", "/a;p=1/b"),
    ("/\xe9", "/\xe9"),
])
def test_normalize_path(path, expected):
    assert normalize_path(path) == expected


@pytest.mark.parametrize("path, reason", [
    ("/a%zz", "percent"), ("/a%", "percent"), ("/a%4", "percent"), ("/%g0", "percent"), ("/%%41", "percent"),
    ("/a%2", "percent"), ("/%00", "NUL"), ("/a%00b", "NUL"), ("/..", "root"), ("/../", "root"),
    ("/../a", "root"), ("/x/../../y", "root"), ("/%2e%2e/%2e%2e/y", "root"), ("/%2e%2e", "root"),
    ("/a/b/../../..", "root"), ("/./..", "root"), ("//..", "root"), ("/a%2f..%2f..%2fb", "root"),
    ("a/b", "path"), ("", "path"), ("%2fa", "path"),
])
def test_normalize_path_refuses(path, reason):
    with pytest.raises(HTTPError) as caught:
        normalize_path(path)
    assert caught.value.status == 400
    assert reason in caught.value.reason


def reference_normalize(path: str) -> str | None:
    """RFC 3986 §5.2.4 literally, after decoding and merging slashes; None when ".." climbs above the root."""
    decoded = unquote_to_bytes(path).decode("latin-1")
    text = re.sub("/+", "/", decoded)
    output: list[str] = []
    while text:
        if text.startswith("/./") or text == "/.":
            text = "/" + text[3 if text.startswith("/./") else 2:]
        elif text.startswith("/../") or text == "/..":
            if not output:
                return None
            text = "/" + text[4 if text.startswith("/../") else 3:]
            output.pop()
        else:
            end = text.find("/", 1)
            end = len(text) if end < 0 else end
            output.append(text[:end])
            text = text[end:]
    return "".join(output) or "/"


_SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "%2e", "%2E%2e", ".%2e", "a", "admin", "%61", "%2f", "%2F", "b.c", "...",
                     "%25", "%20", "%C3%A9", "x%2f..", ";p"]),
    st.text(st.sampled_from("abz019-._~!$&'()*+,;=:@"), min_size=1, max_size=6),
)
_PATH = st.lists(_SEGMENT, max_size=8).map(lambda segments: "/" + "/".join(segments))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(path=_PATH)
def test_normalize_path_agrees_with_rfc3986_remove_dot_segments(path):
    expected = reference_normalize(path)
    if expected is None:
        with pytest.raises(HTTPError):
            normalize_path(path)
    else:
        assert normalize_path(path) == expected


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(path=_PATH)
def test_normalized_path_is_a_fixed_point(path):
    try:
        normal = normalize_path(path)
    except HTTPError:
        return
    assert normal.startswith("/")
    assert "//" not in normal
    assert "\x00" not in normal
    assert not any(segment in (".", "..") for segment in normal.split("/"))
    assert normalize_path(encode_path(normal)) == normal


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(text=st.text(st.characters(max_codepoint=255, blacklist_characters="\x00"), max_size=30))
def test_encode_path_decodes_back_exactly(text):
    path = "/" + text
    encoded = encode_path(path)
    assert unquote_to_bytes(encoded).decode("latin-1") == path
    assert re.fullmatch(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~%]*", encoded)  # no "?", "#", space or raw byte


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(path=_PATH, prefix=st.sampled_from(["/admin/", "/login", "/api/v1/"]))
def test_an_encoded_spelling_of_a_prefix_normalises_like_the_prefix(path, prefix):
    """Every byte of a prefix percent-encoded, or a detour through "x/..", reaches the same normal path."""
    try:
        plain = normalize_path(prefix + path.lstrip("/"))
    except HTTPError:
        return
    spelled = "".join("%%%02X" % ord(char) if char != "/" else char for char in prefix)
    assert normalize_path(spelled + path.lstrip("/")) == plain
    assert normalize_path("/x/.." + prefix + path.lstrip("/")) == plain
    assert normalize_path(prefix.replace("/", "//") + path.lstrip("/")) == plain


def test_plain_paths_are_returned_as_they_are():
    path = "/static/css/site.css"
    assert normalize_path(path) is path  # the common case costs one scan and no copy


def test_only_valid_hosts_are_remembered():
    for _ in range(3):
        with pytest.raises(HTTPError):
            check_host("a b")
    for number in range(3000):  # past the memory's bound: it starts over, the answers stay the same
        check_host(f"host{number}.example")
    with pytest.raises(HTTPError):
        check_host("x/x")
    check_host("host1.example")
