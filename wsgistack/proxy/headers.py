"""What the proxy changes in the headers that pass through it (nginx's proxy_set_header and friends).

Towards the upstream: hop-by-hop fields go (and any field the client's Connection header names),
X-Forwarded-For/-Proto/-Host/-Port are set — extending the incoming ones only when the
client is a trusted proxy — and every request carries an X-Request-ID. Host is kept as the client sent it.

What the proxy adds must still fit in the upstream's limits: a head that would carry more fields than
`wsgistack serve` accepts by default (100), or a field longer than its 8190 bytes (a long X-Forwarded-For
extended by one more address), is refused here, so the client gets the proxy's own 431 and the upstream never
sees a request it would refuse.
"""

from __future__ import annotations

import ipaddress
import random
import re

from wsgistack.http.parser import Limits
from wsgistack.http.response import Framing, choose_framing, closing_fields

_random = random.Random()

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-authenticate", "proxy-authorization"})
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
                        "x-real-ip", "x-request-id", "forwarded", "content-length", "expect", "host"})
_SPECIAL = HOP_BY_HOP | _FORWARDED  # request fields the proxy drops or rewrites
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UPSTREAM_LIMITS = Limits()  # what `wsgistack serve` accepts by default (0 would be no limit)
# Host, X-Forwarded-For/-Proto/-Host/-Port and X-Request-ID: always sent, whatever the client sent
_ADDED_FIELDS = 6
# the most lines (request line and kept fields) and the longest values that still fit those limits
_ROOM_FOR_FIELDS = (_UPSTREAM_LIMITS.fields or 1 << 30) + 1 - _ADDED_FIELDS
_ROOM_FOR_XFF = (_UPSTREAM_LIMITS.field_size or 1 << 30) - len("X-Forwarded-For")
_ROOM_FOR_XFH = (_UPSTREAM_LIMITS.field_size or 1 << 30) - len("X-Forwarded-Host")


class UpstreamHeadTooLarge(Exception):
    """The head the proxy would send upstream breaks the upstream's default limits; the client gets 431."""


class Trust:
    """Which clients may tell us about the client before them (X-Forwarded-*, X-Request-ID)."""

    def __init__(self, networks: tuple[str, ...]):
        self.networks = [ipaddress.ip_network(item, strict=False) for item in networks]
        self._known: dict[str, bool] = {}

    def trusts(self, client_ip: str) -> bool:
        """True for a peer inside one of the configured networks."""
        if not self.networks:
            return False
        known = self._known.get(client_ip)
        if known is None:
            try:
                address = ipaddress.ip_address(client_ip)
                known = any(address in network for network in self.networks)
            except ValueError:
                known = False
            if len(self._known) > 4096:
                self._known.clear()
            self._known[client_ip] = known
        return known


def request_id(incoming: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a new random one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return "%032x" % _random.getrandbits(128)  # not a secret: the PRNG saves a getrandom() syscall per request


def upstream_request_head(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    *,
    client_ip: str,
    scheme: str,
    server_port: str,
    trusted: bool,
    request_id: str,
    body_length: int | None,
    default_host: str,
) -> bytes:
    """The request head sent upstream (HTTP/1.1, keep-alive, Content-Length framing)."""
    out = [f"{method} {target} HTTP/1.1\r\n"]
    kept: list[tuple[str, str]] = []  # (lower-case name, line): filtered again if Connection names fields
    connection_named: set[str] = set()
    forwarded_for = proto = host = port = original_host = None
    for name, value in headers:
        lower = name.lower()
        if lower in _SPECIAL:
            if lower == "host":
                original_host = value
            elif lower == "connection":
                connection_named.update(token.strip().lower() for token in value.split(","))
            elif lower == "x-forwarded-for":
                forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            elif lower == "x-forwarded-proto":
                proto = value
            elif lower == "x-forwarded-host":
                host = value
            elif lower == "x-forwarded-port":
                port = value
            continue
        kept.append((lower, f"{name}: {value}\r\n"))
    out += [line for lower, line in kept if lower not in connection_named] if connection_named \
        else [line for _, line in kept]
    if trusted and forwarded_for:
        forwarded_for = f"{forwarded_for}, {client_ip}"
    else:
        forwarded_for = client_ip
        proto = host = port = None
    if len(out) + (body_length is not None) > _ROOM_FOR_FIELDS:
        raise UpstreamHeadTooLarge("Too many request header fields")
    if len(forwarded_for) > _ROOM_FOR_XFF or len(host or original_host or default_host) > _ROOM_FOR_XFH:
        raise UpstreamHeadTooLarge("Request header field too large")
    out.append(f"Host: {original_host or default_host}\r\nX-Forwarded-For: {forwarded_for}\r\n"
               f"X-Forwarded-Proto: {proto or scheme}\r\nX-Forwarded-Host: {host or original_host or default_host}"
               f"\r\nX-Forwarded-Port: {port or server_port}\r\n"
               f"X-Request-ID: {request_id}\r\n")
    if body_length is not None:
        out.append(f"Content-Length: {body_length}\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1")


def response_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's response headers without hop-by-hop fields (the proxy frames the body itself)."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return [(name, value) for name, value in headers
            if name.lower() not in HOP_BY_HOP and name.lower() not in named]


def client_response_head(status: int, reason: str, headers: list[tuple[str, str]], method: str, version: str,
                         keep_alive: bool, rid: str) -> tuple[bytes, Framing, bool, str | None]:
    """The head sent to the client for an upstream's response, its body framing, keep-alive after it, and
    the app's X-Accel-Buffering word ("yes", "no", lower-cased; None without one).

    Hop-by-hop fields are dropped here (and those a Connection field names, through response_headers), and
    X-Accel-Buffering, as nginx does: it is a word to the proxy, not to the client.

    Unlike the server's build_head this does not re-check names and values: llhttp already refused any
    response whose fields are not tokens and clean values, and this runs once per proxied request.
    """
    out = [f"HTTP/1.1 {status} {reason}\r\n"]
    length = None
    has_date = has_server = has_rid = False
    buffering = None
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == "connection" and value.lower() not in ("close", "keep-alive"):
                return client_response_head(status, reason, response_headers(headers), method, version,
                                            keep_alive, rid)  # rare: it names more fields to drop
            continue
        if lower == "content-length":
            if length is not None:
                continue
            length = int(value)
        elif lower == "date":
            has_date = True
        elif lower == "server":
            has_server = True
        elif lower == "x-request-id":
            has_rid = True
        elif lower == "x-accel-buffering":
            if buffering is None:
                buffering = value.strip().lower()
            continue
        out.append(f"{name}: {value}\r\n")
    framing = choose_framing(status, method, length, version)
    keep_alive = keep_alive and framing.mode != "close"
    if not has_rid:
        out.append(f"X-Request-ID: {rid}\r\n")
    out.append(closing_fields(framing, keep_alive, version, has_date, has_server))
    out.append("\r\n")
    return "".join(out).encode("latin-1"), framing, keep_alive, buffering
