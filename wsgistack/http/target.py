"""What a request-target and a Host value mean (RFC 9112 §3.2, RFC 3986), as pure functions over str.

The parser uses it to refuse what RFC 9112 says a server must refuse (invalid Host, userinfo in an
absolute-form target, `*` outside OPTIONS) and to take an absolute-form target's authority as the Host.
The proxy uses it to route on a normalised path, as nginx matches locations: percent-escapes decoded
(all of them; a decoded "/" is a separator, the same rule as serve's PATH_INFO, which decodes %2F to "/"),
"." and ".." resolved, repeated slashes merged; an invalid escape, a NUL or a climb above the root is a 400.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import quote, unquote_to_bytes

from wsgistack.http.errors import HTTPError

# RFC 3986 reg-name without "," (RFC 9110 §5.3: two Host lines joined by an intermediary look like "a,b")
_REG_NAME = r"(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})*"
_IP_LITERAL = r"\[[^\[\]/?#@\s]*\]"
_AUTHORITY = re.compile(rf"(?P<host>{_REG_NAME}|{_IP_LITERAL})(?::(?P<port>[0-9]*))?")
_IP_FUTURE = re.compile(r"v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(?::[0-9]{1,4})?")  # the everyday case, checked first
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # pchar without pct-encoded, plus "/" (RFC 3986 §3.3)


class Target(NamedTuple):
    """A request-target split into its parts; `path` and `query` still percent-encoded."""

    form: str  # "origin", "absolute" or "asterisk"
    path: str
    query: str
    authority: str | None = None  # absolute-form only: the host[:port] that replaces Host


valid_hosts: set[str] = set()  # a site sees few Host values: checking each once cost 4% of a request's parse


def check_host(value: str) -> None:
    """Raise HTTPError(400) unless `value` is a valid, non-empty Host: uri-host [":" port] (RFC 9112 §3.2)."""
    if value in valid_hosts:
        return
    _check_host(value)
    if len(valid_hosts) >= 1024:
        valid_hosts.clear()
    valid_hosts.add(value)


def _check_host(value: str) -> None:
    if _PLAIN_HOST.fullmatch(value):
        return
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        raise HTTPError(400, "Invalid Host header")
    host, port = match["host"], match["port"]
    if not host:
        # an http(s) URI with an empty host is invalid (RFC 9110 §4.2.1); nginx refuses it too
        raise HTTPError(400, "Empty Host header")
    if host.startswith("["):
        inner = host[1:-1]
        if not _IP_FUTURE.fullmatch(inner):
            try:
                ipaddress.IPv6Address(inner)
            except ValueError:
                raise HTTPError(400, "Invalid Host header") from None
            if "%" in inner:
                raise HTTPError(400, "Invalid Host header")  # a zone id is never part of a URI host
    if port and (len(port) > 5 or int(port) > 65535):
        raise HTTPError(400, "Invalid port in Host header")


def split_target(target: str, method: str) -> Target:
    """The form and parts of a request-target; HTTPError(400) for a form RFC 9112 §3.2 does not allow."""
    if target.startswith("/"):
        path, query = _split_query(target)
        return Target("origin", path, query)
    if target == "*":
        if method != "OPTIONS":
            raise HTTPError(400, "The asterisk-form is only for OPTIONS")  # RFC 9112 §3.2.4
        return Target("asterisk", "*", "")
    match = _SCHEME.match(target)
    if match is None:
        raise HTTPError(400, "Invalid request target")
    if match[1].lower() not in ("http", "https"):
        raise HTTPError(400, "Unsupported scheme in request target")
    authority = match[2]
    if "@" in authority:
        raise HTTPError(400, "Userinfo in request target")  # RFC 9112 §3.2.1 / RFC 9110 §4.2.4
    check_host(authority)
    path, query = _split_query(target[match.end():])
    return Target("absolute", path if path.startswith("/") else "/" + path, query, authority)


def _split_query(rest: str) -> tuple[str, str]:
    path, _, query = rest.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


def normalize_path(path: str) -> str:
    """The path as the proxy matches it: decoded, dot segments resolved, slashes merged; else HTTPError(400).

    Decoding comes first, so %2F is a separator and %2E%2E is "..", as in nginx. The result is a str of
    latin-1 code points, one per decoded byte, like PATH_INFO.
    """
    if not path.startswith("/"):
        raise HTTPError(400, "Invalid path")
    if "%" in path:
        if _BAD_ESCAPE.search(path):
            raise HTTPError(400, "Invalid percent-encoding in path")
        path = unquote_to_bytes(path).decode("latin-1")
        if "\x00" in path:
            raise HTTPError(400, "NUL in path")
    if "//" not in path and "/." not in path:
        return path
    parts = path.split("/")
    segments: list[str] = []
    for part in parts[1:-1]:
        if part == "..":
            if not segments:
                raise HTTPError(400, "Path climbs above the root")
            segments.pop()
        elif part and part != ".":
            segments.append(part)
    last = parts[-1]
    trailing = last in ("", ".", "..")
    if last == "..":
        if not segments:
            raise HTTPError(400, "Path climbs above the root")
        segments.pop()
    elif not trailing:
        segments.append(last)
    return "/" + "/".join(segments) + ("/" if trailing and segments else "")


def encode_path(path: str) -> str:
    """A normalised path back in origin-form: decoding it again gives `path` exactly."""
    return quote(path.encode("latin-1"), safe=_PATH_SAFE)
