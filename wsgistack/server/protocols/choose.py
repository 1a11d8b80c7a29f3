"""Which connection code serves a listener's protocol (--protocol): http, uwsgi or fastcgi.

The workers ask here rather than name a protocol module, so each protocol's module is imported only when
chosen. Every blocking connection class has HTTPConnection's face (serve, close, closed, sock, fileno,
last_active, parser.started); every event protocol has EventHTTPProtocol's (the ConnectionRegistry's calls).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from wsgistack.http.heads import request_head


@functools.cache  # asked once per connection by the sync worker
def blocking_connection(protocol: str) -> Any:
    """The class serving one connection with blocking calls (sync, thread and gevent workers)."""
    if protocol == "uwsgi":
        from wsgistack.server.protocols.uwsgi import UwsgiConnection

        return UwsgiConnection
    if protocol == "fastcgi":
        from wsgistack.server.protocols.fastcgi import FastCGIConnection

        return FastCGIConnection
    from wsgistack.server.protocols.http import HTTPConnection

    return HTTPConnection


@functools.cache
def event_protocol(protocol: str) -> Any:
    """The asyncio protocol serving one connection on the event worker's loop."""
    if protocol == "uwsgi":
        from wsgistack.server.protocols.uwsgi_event import EventUwsgiProtocol

        return EventUwsgiProtocol
    if protocol == "fastcgi":
        from wsgistack.server.protocols.fastcgi_event import EventFastCGIProtocol

        return EventFastCGIProtocol
    from wsgistack.server.protocols.http_event import EventHTTPProtocol

    return EventHTTPProtocol


def probe_exchange(protocol: str, path: str) -> tuple[bytes, Callable[[bytes], tuple[int, bytes]]]:
    """A GET of `path` in `protocol` (a new worker's probe of its own health endpoint; readiness checks and
    deploy's smoke requests of app servers): the request's bytes, and the function that reads the answer's
    bytes, up to the server's close, as (status, body)."""
    if protocol == "uwsgi":
        from wsgistack.gateway import uwsgi

        return uwsgi.health_request(path), uwsgi.read_health_answer
    if protocol == "fastcgi":
        from wsgistack.gateway import fastcgi

        return fastcgi.health_request(path), fastcgi.read_health_answer
    return request_head("GET", path, [("Host", "self-check"), ("Connection", "close")]), _read_http_answer


def _read_http_answer(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    return (int(status[0]) if status and status[0].isdigit() else 0), body
