"""ServeContext: what every connection of one worker shares, whichever protocol serves it.

The worker base builds it; the blocking, event and tornado connection protocols read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgistack.http.parser import Limits
from wsgistack.http.trust import ProxyTrust
from wsgistack.observe.accesslog import AccessLog


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
