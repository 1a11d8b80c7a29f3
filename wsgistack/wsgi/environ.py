"""Builds the PEP 3333 environ of one request from its parsed head and the connection it came on."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from wsgistack.http.errors import HTTPError
from wsgistack.http.parser import RequestHead
from wsgistack.http.target import split_target
from wsgistack.http.trust import ProxyTrust
from wsgistack.wsgi.file_wrapper import FileWrapper

_SPECIAL = {"CONTENT_TYPE", "CONTENT_LENGTH"}
# Field name -> environ key ("User-Agent" -> "HTTP_USER_AGENT"): clients send the same few names, spelled
# the same way, on every request. Bounded like every per-request memory: a client inventing names empties it.
_ENVIRON_KEYS: dict[str, str] = {}
_KEYS_MAX = 1024


def _environ_key(name: str) -> str:
    key = name.upper().replace("-", "_")
    if key not in _SPECIAL:
        key = "HTTP_" + key
    if len(_ENVIRON_KEYS) >= _KEYS_MAX:
        _ENVIRON_KEYS.clear()
    _ENVIRON_KEYS[name] = key
    return key


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a connection was accepted and who is on the other end."""

    server_name: str
    server_port: str
    remote_addr: str
    remote_port: str
    url_scheme: str = "http"
    unix: bool = False


def _split_target(target: str, method: str) -> tuple[str, str]:
    if target.startswith("/"):
        path, _, query = target.partition("?")
        if "#" in target:
            path, query = path.partition("#")[0], query.partition("#")[0]
        return path, query
    try:
        # absolute-form (RFC 9112 §3.2.2): the path after scheme and authority (the parser made the
        # authority the Host); asterisk-form: "*"
        form = split_target(target, method)
    except HTTPError:  # a head that did not come through our parser
        return target.partition("?")[0], target.partition("?")[2]
    return form.path, form.query


def client_address(value: str) -> str | None:
    """The IP address in one X-Forwarded-For / Forwarded for= element, port removed; None if it is none.

    Only a real address may become REMOTE_ADDR: apps log it, put it in pages and key limits on it.
    """
    known = _client_addresses.get(value, _UNSEEN)
    if known is _UNSEEN:
        # ipaddress costs a few microseconds, a tenth of a proxied request's time in the worker: a site
        # sees few proxy-given addresses at a time, so each element is read once
        known = _read_client_address(value)
        if len(_client_addresses) >= 4096:
            _client_addresses.clear()
        _client_addresses[value] = known
    return known  # type: ignore[return-value]


def _read_client_address(value: str) -> str | None:
    value = value.strip().strip('"')
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or ":" not in host or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None  # brackets hold an IPv6 address, and nothing but a port may follow them
    elif value.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two colons or more
        host, _, port = value.partition(":")
        if not port.isdigit():
            return None
    else:
        host = value
    if "%" in host:
        return None  # a zone id is free text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


_client_addresses: dict[str, str | None] = {}
_UNSEEN = object()


def _forwarded(environ: dict[str, Any]) -> None:
    """Apply proxy headers from a trusted peer: the rightmost value is the one our proxy added."""
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded:
        last = forwarded.split(",")[-1]
        for pair in last.split(";"):
            key, _, value = pair.strip().partition("=")
            value = value.strip().strip('"')
            key = key.lower()
            if key == "for" and value:
                address = client_address(value)
                if address is not None:
                    environ["REMOTE_ADDR"] = address
            elif key == "proto" and value.lower() in ("http", "https"):
                environ["wsgi.url_scheme"] = value.lower()
    real_ip = environ.get("HTTP_X_FORWARDED_FOR")
    if real_ip:
        last = real_ip.rpartition(",")[2]
        address = _client_addresses.get(last, _UNSEEN)  # client_address's memory, asked here: a call less
        if address is _UNSEEN:
            address = client_address(last)
        if address is not None:
            environ["REMOTE_ADDR"] = address
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto:
        proto = proto.rpartition(",")[2].strip().lower()
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto


def build_environ(
    head: RequestHead,
    info: ConnectionInfo,
    wsgi_input: Any,
    errors: Any = None,
    trust: ProxyTrust | None = None,
    multithread: bool = False,
) -> dict[str, Any]:
    """The environ dict for one request, complete per PEP 3333 plus the usual server extras."""
    path, query = _split_target(head.target, head.method)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        # nothing to decode in most paths (and llhttp lets only ASCII through): the percent-decoding skipped
        "PATH_INFO": path if "%" not in path and path.isascii() else unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": head.target,
        "REQUEST_URI": head.target,
        "SERVER_PROTOCOL": f"HTTP/{head.version}",
        "SERVER_NAME": info.server_name,
        "SERVER_PORT": info.server_port,
        "REMOTE_ADDR": info.remote_addr,
        "REMOTE_PORT": info.remote_port,
        "SERVER_SOFTWARE": "wsgistack",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": info.url_scheme,
        "wsgi.input": wsgi_input,
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    keys = _ENVIRON_KEYS
    for name, value in head.headers:
        key = keys.get(name) or _environ_key(name)
        if key in environ:
            separator = "; " if key == "HTTP_COOKIE" else ","
            environ[key] = environ[key] + separator + value
        else:
            environ[key] = value
    if head.chunked:
        environ.pop("CONTENT_LENGTH", None)  # the body is chunked; wsgi.input_terminated says read to EOF
    if trust is not None and trust.trusts(info.remote_addr, info.unix):
        _forwarded(environ)
    host = environ.get("HTTP_HOST")
    if host:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = _split_host(host, environ["wsgi.url_scheme"])
    return environ


def _split_host(host: str, scheme: str) -> tuple[str, str]:
    if host.startswith("["):
        bracket = host.find("]")
        name, rest = host[: bracket + 1], host[bracket + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    # no explicit port: the scheme's default, which a proxy's X-Forwarded-Proto may have changed
    return name, port or ("443" if scheme == "https" else "80")
