"""Active health checks: a GET to each server of an upstream every `interval`, as nginx Plus's health_check.

A server that fails `fails` checks in a row is taken out (`unhealthy`) until `passes` checks in a row
succeed. A check is a real HTTP request on its own connection, so a server that accepts connections but
answers 500s or hangs is caught, which passive checks only notice when users' requests fail. A passing
check also ends a passive down time at once.

`watch_return` looks for the return of a server that passive health took out after its connects failed:
it tries a bare connect now and then, and the first that succeeds puts the server back in rotation, instead
of leaving it out for the rest of `fail_timeout` after it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from wsgistack.http.heads import request_head
from wsgistack.http.parser import EndOfMessage, ParseError
from wsgistack.http.response_parser import ResponseHead
from wsgistack.proxy.pool import UpstreamError
from wsgistack.proxy.upstream import Upstream, UpstreamServer

log = logging.getLogger("wsgistack.proxy")


class HealthChecker:
    """Runs the checks of every upstream that has `health_check` set, until stopped."""

    def __init__(self, upstreams: list[Upstream]):
        self.upstreams = [upstream for upstream in upstreams if upstream.settings.health_check is not None]
        self.tasks: list[asyncio.Task[None]] = []
        self._streaks: dict[int, int] = {}  # id(server) -> consecutive results (+ good, - bad)

    def start(self) -> None:
        """One task per checked server."""
        loop = asyncio.get_running_loop()
        for upstream in self.upstreams:
            for server in upstream.servers:
                self.tasks.append(loop.create_task(self._watch(upstream, server)))

    def stop(self) -> None:
        """Cancel the checks (on reload a new checker takes over)."""
        for task in self.tasks:
            task.cancel()
        self.tasks = []

    async def _watch(self, upstream: Upstream, server: UpstreamServer) -> None:
        check = upstream.settings.health_check
        assert check is not None
        while True:
            healthy, reason = await self.probe(upstream, server)
            self._record(server, healthy, reason, check.fails, check.passes)
            await asyncio.sleep(check.interval)

    def _record(self, server: UpstreamServer, healthy: bool, reason: str, fails: int, passes: int) -> None:
        streak = self._streaks.get(id(server), 0)
        streak = max(streak, 0) + 1 if healthy else min(streak, 0) - 1
        self._streaks[id(server)] = streak
        if healthy and server.unhealthy and streak >= passes:
            server.unhealthy = False
            server.down_until = 0.0
            log.info("upstream server %s passed its health check: back in rotation", server.name)
        elif healthy and server.down_until:
            server.down_until = 0.0  # a check just passed: passive health's down time is over
        elif not healthy and not server.unhealthy and -streak >= fails:
            server.unhealthy = True
            log.warning("upstream server %s failed its health check (%s): out of rotation", server.name, reason)

    async def probe(self, upstream: Upstream, server: UpstreamServer) -> tuple[bool, str]:
        """One check: (healthy, why not)."""
        check = upstream.settings.health_check
        assert check is not None
        host = server.name if server.settings.address.kind == "tcp" else "localhost"
        request = request_head("GET", check.path, [("Host", host), ("User-Agent", "wsgistack-health-check"),
                                                   ("Connection", "close")])
        connection = None
        try:
            async with asyncio.timeout(check.timeout):
                connection = await server.pool.connect()
                connection.begin("GET")
                connection.write(request)
                event = await connection.next_event(check.timeout)
                if not isinstance(event, ResponseHead):
                    return False, event.reason if isinstance(event, ParseError) else "no response"
                status = event.status
                while not isinstance(event, (EndOfMessage, ParseError)):
                    event = await connection.next_event(check.timeout)  # read to the end: a clean exchange
        except TimeoutError:
            return False, "timed out"
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "unhealthy", with its reason
            return False, getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        finally:
            if connection is not None:
                connection.close()
        if not 200 <= status < 400:
            return False, f"status {status}"
        return True, ""


# how often a down server's return is looked for: soon at first (a restart takes a second or so), then
# every half second, a bare connect each time
_FIRST_LOOK = 0.05
_LOOK_EVERY = 0.5


def watch_return(server: UpstreamServer) -> None:
    """Look for the return of a server just taken out after failed connects (one watcher per server).

    Between looks the watcher is a timer, and a task only while its connect is in progress, so a proxy that
    stops meanwhile leaves no pending task behind.
    """
    if server.watch is None:
        server.watch = asyncio.get_running_loop().call_later(_FIRST_LOOK, _look, server, _FIRST_LOOK)


def _look(server: UpstreamServer, delay: float) -> None:
    if time.monotonic() >= server.down_until:
        server.watch = None  # back by its time, or by a request's connect or a health check meanwhile
        return
    server.watch = asyncio.get_running_loop().create_task(_connect(server, delay))  # held: tasks are weak


async def _connect(server: UpstreamServer, delay: float) -> None:
    try:
        async with asyncio.timeout(server.pool.connect_timeout or None):
            connection = await server.pool.open()
    except (UpstreamError, TimeoutError):
        delay = min(delay * 2, _LOOK_EVERY)
        server.watch = asyncio.get_running_loop().call_later(delay, _look, server, delay)
        return
    connection.transport.close()  # type: ignore[union-attr]  # unused: a clean close, not a reset
    connection.closed = True
    server.watch = None
    server.record_connected()
