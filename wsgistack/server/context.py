"""ServeContext: what every connection of one worker shares, whichever protocol serves it, and the three
steps every protocol takes the same way: describing an accepted connection, refusing a bad request, and
answering the health endpoint.

The worker base builds the context; the blocking, event and tornado connection protocols read it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgistack.http.heads import error_reply, reply_head
from wsgistack.http.parser import Limits, ParseError, RequestHead
from wsgistack.http.trust import ProxyTrust
from wsgistack.observe.accesslog import AccessLog, AccessRecord
from wsgistack.observe.metrics.requests import RequestRecorder
from wsgistack.wsgi.environ import ConnectionInfo, build_environ


@dataclass
class ServeContext:
    """What every connection of one worker shares: the app, the limits, the logs, the worker's state."""

    app: Callable[..., Any]
    limits: Limits
    client_timeout: float
    access_log: AccessLog
    trust: ProxyTrust
    errors: Any
    multithread: bool
    keep_alive: Callable[[], bool]  # may the next response keep the connection? (false while stopping)
    on_request: Callable[[], None]  # counts requests (max-requests)
    beat: Callable[[], None]  # says "alive" while waiting on a client (the sync worker's heartbeat)
    keep_alive_timeout: float = 5.0
    draining: bool = False  # set by the worker when its graceful stop begins: the health endpoint says 503
    # the request target answered by answer_health, compared whole with each request's (one string compare
    # per request); "" turns it off, since no request target is empty
    health_path: str = "/_wsgistack/health"
    protocol: str = "http"  # what the listeners speak: http, uwsgi or fastcgi (server/protocols/choose.py)
    # uwsgi and fastcgi: who may connect over TCP (unix-socket peers always may); None for http
    gateway_peers: ProxyTrust | None = None
    metrics: RequestRecorder | None = None  # with --metrics-bind: counts into the worker's shared slot


def begin_request(ctx: ServeContext) -> None:
    """A request is about to reach the app: counted for --max-requests and as active in the metrics."""
    ctx.on_request()
    if ctx.metrics is not None:
        ctx.metrics.started()


def end_request(ctx: ServeContext, environ: dict[str, Any], status: int, sent: int, started: float,
                clock: float, failed: bool) -> AccessRecord | None:
    """A request the app answered: counted in the metrics; its access-log record (None when that log is
    off). `started` is the wall clock at its arrival, `clock` the monotonic one."""
    elapsed = time.monotonic() - clock
    if ctx.metrics is not None:
        length = environ.get("CONTENT_LENGTH")
        ctx.metrics.finished(environ["REQUEST_METHOD"], status, environ.get("SCRIPT_NAME", ""), elapsed,
                             int(length) if length and length.isdigit() else 0, sent, failed)
    if ctx.access_log.enabled:
        return AccessRecord(environ, status, sent, started, elapsed)
    return None


def peer_allowed(ctx: ServeContext, info: ConnectionInfo) -> bool:
    """Whether a uwsgi or FastCGI peer may send requests (--protocol-allow-from); always true over http."""
    peers = ctx.gateway_peers
    if peers is None or peers.trusts(info.remote_addr, unix=info.unix):
        return True
    if ctx.metrics is not None:
        ctx.metrics.refused("peer_not_allowed")
    return False


def refusal(ctx: ServeContext, info: ConnectionInfo, error: ParseError) -> bytes:
    """The response to a request we refuse before the app sees it, logged in the access log too."""
    response, body_bytes = error_reply(error.status, error.reason)
    if ctx.metrics is not None:
        ctx.metrics.refused("bad_request")
    if ctx.access_log.enabled:
        environ = {"REMOTE_ADDR": info.remote_addr, "REQUEST_METHOD": "-", "RAW_URI": "-", "SERVER_PROTOCOL": "-"}
        ctx.access_log.write(AccessRecord(environ, error.status, body_bytes, time.time(), 0.0))
    return response


def connection_info(sock: socket.socket, peer: Any) -> ConnectionInfo | None:
    """Describe an accepted connection for the environ; None when the client already reset it (a loop
    transport then has no peer address to give)."""
    if sock.family == socket.AF_UNIX:
        return ConnectionInfo("localhost", "80", "127.0.0.1", "0", unix=True)
    if not peer:
        return None
    local = sock.getsockname()
    return ConnectionInfo(str(local[0]), str(local[1]), str(peer[0]), str(peer[1]))


_PLAIN = ("Content-Type", "text/plain; charset=utf-8")
_NO_STORE = ("Cache-Control", "no-store")
_HEALTH = {  # (draining, GET or HEAD) -> status line, body, extra fields
    (False, True): ("200 OK", b"ready\n", ()),
    (True, True): ("503 Service Unavailable", b"draining\n", ()),
    (False, False): ("405 Method Not Allowed", b"method not allowed: GET or HEAD\n", (("Allow", "GET, HEAD"),)),
}
_HEALTH[(True, False)] = _HEALTH[(False, False)]


def answer_health(ctx: ServeContext, info: ConnectionInfo, head: RequestHead, keep_alive: bool) -> tuple[bytes, bool]:
    """The health endpoint's response, without the app: 200 `ready` while the worker serves, 503 `draining`
    once its graceful stop began, 405 to methods other than GET and HEAD; and whether the connection stays.

    Logged in the access log like any request, as nginx and gunicorn log every request they answer: a probe
    that arrives (or stops arriving) is worth seeing when a readiness check fails.
    """
    started, clock = time.time(), time.monotonic()
    status_text, body, extra = _HEALTH[(ctx.draining, head.method in ("GET", "HEAD"))]
    keep_alive = keep_alive and not ctx.draining and ctx.keep_alive()
    fields = [_PLAIN, ("Content-Length", str(len(body))), _NO_STORE, *extra]
    data = reply_head(status_text, fields, keep_alive, head.version)
    if head.method != "HEAD":
        data += body
    if ctx.access_log.enabled:
        environ = build_environ(head, info, None, ctx.errors, ctx.trust, ctx.multithread)
        sent = 0 if head.method == "HEAD" else len(body)
        ctx.access_log.write(AccessRecord(environ, int(status_text[:3]), sent, started, time.monotonic() - clock))
    return data, keep_alive
