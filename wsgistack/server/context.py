"""ServeContext: what every connection of one worker shares, whichever protocol serves it, and the two
steps every protocol takes the same way: describing an accepted connection, and refusing a bad request.

The worker base builds the context; the blocking, event and tornado connection protocols read it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgistack.http.heads import error_reply
from wsgistack.http.parser import Limits, ParseError
from wsgistack.http.trust import ProxyTrust
from wsgistack.observe.accesslog import AccessLog, AccessRecord
from wsgistack.wsgi.environ import ConnectionInfo


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


def refusal(ctx: ServeContext, info: ConnectionInfo, error: ParseError) -> bytes:
    """The response to a request we refuse before the app sees it, logged in the access log too."""
    response, body_bytes = error_reply(error.status, error.reason)
    if ctx.access_log.enabled:
        environ = {"REMOTE_ADDR": info.remote_addr, "REQUEST_METHOD": "-", "RAW_URI": "-", "SERVER_PROTOCOL": "-"}
        ctx.access_log.write(AccessRecord(environ, error.status, body_bytes, time.time(), 0.0))
    return response


def connection_info(sock: socket.socket, peer: Any) -> ConnectionInfo:
    """Describe an accepted connection for the environ."""
    if sock.family == socket.AF_UNIX:
        return ConnectionInfo("localhost", "80", "127.0.0.1", "0", unix=True)
    local = sock.getsockname()
    return ConnectionInfo(str(local[0]), str(local[1]), str(peer[0]), str(peer[1]))
